import FedPiRuntime
import FedPiTesting
import Foundation
import XCTest

final class TOMLTests: XCTestCase {
    func testValuesOfEveryKind() throws {
        let text = """
            # a comment line
            name = "pi-1"            # trailing comment
            "quoted key" = 'C:\\literal\\path'
            escaped = "tab\\tquote\\"back\\\\slash\\u00e9\\U0001F600"
            count = 1_000
            negative = -17
            hex = 0xff
            octal = 0o17
            binary = 0b101
            rate = 0.01
            exponent = -2.5e-3
            big = 1E6
            infinite = inf
            yes = true
            no = false
            empty = []
            list = [
              1, 2,   # comment inside
              3,
            ]
            nested = [[1, 2], ["a"]]
            inline = { a = 1, b = "x" }

            [server]
            port = 8470

            [[nodes]]
            name = "a"
            [[nodes]]
            name = "b"
            url = "http://127.0.0.1:1"
            """
        let t = try TOML.parse(text)
        XCTAssertEqual(t["name"]?.string, "pi-1")
        XCTAssertEqual(t["quoted key"]?.string, "C:\\literal\\path")
        XCTAssertEqual(t["escaped"]?.string, "tab\tquote\"back\\slash\u{e9}\u{1F600}")
        XCTAssertEqual(t["count"]?.int, 1000)
        XCTAssertEqual(t["negative"]?.int, -17)
        XCTAssertEqual(t["hex"]?.int, 255)
        XCTAssertEqual(t["octal"]?.int, 15)
        XCTAssertEqual(t["binary"]?.int, 5)
        XCTAssertEqual(t["rate"]?.double, 0.01)
        XCTAssertEqual(t["exponent"]?.double, -0.0025)
        XCTAssertEqual(t["big"]?.double, 1e6)
        XCTAssertEqual(t["infinite"]?.double, .infinity)
        XCTAssertEqual(t["yes"]?.bool, true)
        XCTAssertEqual(t["no"]?.bool, false)
        XCTAssertEqual(t["empty"]?.array, [])
        XCTAssertEqual(t["list"]?.array, [.integer(1), .integer(2), .integer(3)])
        XCTAssertEqual(t["nested"]?.array, [.array([.integer(1), .integer(2)]), .array([.string("a")])])
        XCTAssertEqual(t["inline"]?.table?["a"]?.int, 1)
        XCTAssertEqual(t["inline"]?.table?["b"]?.string, "x")
        XCTAssertEqual(t["server"]?.table?["port"]?.int, 8470)
        let nodes = try XCTUnwrap(t["nodes"]?.array)
        XCTAssertEqual(nodes.count, 2)
        XCTAssertEqual(nodes[0].table?["name"]?.string, "a")
        XCTAssertEqual(nodes[1].table?["url"]?.string, "http://127.0.0.1:1")
        XCTAssertEqual(nodes[1].table?.keys, ["name", "url"])
        XCTAssertEqual(t.keys.first, "name")
        XCTAssertTrue(t["nan"] == nil)
        XCTAssertTrue(try TOML.parse("x = nan")["x"]?.double?.isNaN == true)
    }

    /// The fleet file shipped for operators parses with the values its comments promise.
    func testShippedFleetExample() throws {
        let path = #filePath.components(separatedBy: "/Tests/")[0] + "/provisioning/fleet.example.toml"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let t = try TOML.parse(text)
        XCTAssertEqual(t["model"]?.string, "mnist-cnn")
        XCTAssertEqual(t["learning_rate"]?.double, 0.01)
        XCTAssertEqual(t["rounds"]?.int, 10)
        XCTAssertGreaterThanOrEqual(t["nodes"]?.array?.count ?? 0, 2)
    }

    func testErrorsNameTheLineAndTheProblem() {
        let cases: [(String, Int, String)] = [
            ("a = 1\nrounds = = 3\n", 2, "expected a value"),
            ("a = 1\na = 2\n", 2, "duplicate key 'a'"),
            ("a = \"open\n", 1, "not closed"),
            ("a = [1, 2\n", 2, "not closed"),
            ("a = [1 2]\n", 1, "expected ',' or ']'"),
            ("a = 12abc\n", 1, "expected a value"),
            ("a = 012\n", 1, "leading zero"),
            ("a = 1__0\n", 1, "not a number"),
            ("a = 99999999999999999999\n", 1, "out of the integer range"),
            ("a.b = 1\n", 1, "dotted keys"),
            ("[t]\n[t]\n", 2, "defined twice"),
            ("[t.u]\n", 1, "nested tables"),
            ("x = 1\n[[x]]\n", 2, "already defined"),
            ("a = 1 b = 2\n", 1, "one key = value per line"),
            ("d = 2024-01-01\n", 1, "dates"),
            ("s = \"\"\"\nx\n\"\"\"\n", 1, "multi-line"),
            ("s = \"\\q\"\n", 1, "unknown escape"),
            ("= 3\n", 1, "expected a key"),
            ("k\n", 1, "expected '='"),
            ("[t\n", 1, "expected ']'"),
            ("a = {b = 1, b = 2}\n", 1, "duplicate key 'b'"),
            ("a = \"x\u{01}\"\n", 1, "control character"),
            ("a =\n", 1, "expected a value"),
        ]
        for (text, line, message) in cases {
            XCTAssertThrowsError(try TOML.parse(text), text) { error in
                guard let e = error as? TOMLError else { return XCTFail("\(error) is not a TOMLError") }
                XCTAssertEqual(e.line, line, "\(text): \(e)")
                XCTAssertTrue(e.message.contains(message), "\(text): '\(e.message)' does not say '\(message)'")
            }
        }
    }

    /// Mutated and truncated config files never crash the reader: each parses or throws a TOMLError.
    func testMutatedInputNeverCrashes() {
        let seed = Array("""
            model = "mnist-cnn"
            rate = 1.5e-2
            list = [1, "two", [3], {x = 4}]
            [t]
            k = 'v' # c
            [[n]]
            u = "\\u00e9"
            """.utf8)
        let alphabet = Array("[]{}=,\"'#\n.\\0x_e+-".utf8)
        var g = SplitMix(seed: 7)
        var parsed = 0, rejected = 0
        for i in 0..<20_000 {
            var bytes = seed
            if i % 10 == 0 {
                bytes = Array(bytes.prefix(Int(g.next() % UInt64(bytes.count))))
            } else {
                for _ in 0..<(1 + Int(g.next() % 4)) {
                    let at = Int(g.next() % UInt64(bytes.count))
                    switch g.next() % 3 {
                    case 0: bytes[at] = UInt8(truncatingIfNeeded: g.next())
                    case 1: bytes.remove(at: at)
                    default: bytes.insert(alphabet[Int(g.next() % UInt64(alphabet.count))], at: at)
                    }
                    if bytes.isEmpty { bytes = [0x20] }
                }
            }
            do {
                _ = try TOML.parse(String(decoding: bytes, as: UTF8.self))
                parsed += 1
            } catch {
                rejected += 1
            }
        }
        XCTAssertEqual(parsed + rejected, 20_000)
        XCTAssertGreaterThan(rejected, 1000, "the mutations should break most documents")
        XCTAssertGreaterThan(parsed, 10, "some mutations (inside strings and comments) leave valid documents")
    }
}

/// A small seeded generator for the mutation test.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
