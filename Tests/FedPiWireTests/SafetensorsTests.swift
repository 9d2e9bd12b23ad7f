import FedPiEngine
import XCTest

@testable import FedPiWire

final class SafetensorsTests: XCTestCase {
    /// A small valid file: two tensors and metadata.
    func sample() -> [UInt8] {
        SafetensorsFile.encode([
            ("a.weight", .f32, [2, 3], Array(repeating: 0, count: 24)),
            ("a.bias", .f16, [2], [0, 0x3C, 0, 0x40]),
        ], metadata: ["k": "v"])
    }

    /// A file with a hand-written header and `payload` bytes of data.
    func file(_ header: String, payload: Int) -> [UInt8] {
        let h = Array(header.utf8)
        var out: [UInt8] = []
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: UInt64(h.count) >> (8 * UInt64(i)))) }
        return out + h + [UInt8](repeating: 0, count: payload)
    }

    func assertRejects(_ bytes: [UInt8], _ text: String, line: UInt = #line) {
        XCTAssertThrowsError(try SafetensorsFile.decode(bytes), line: line) { error in
            XCTAssertTrue(String(describing: error).contains(text), "'\(error)' lacks '\(text)'", line: line)
        }
    }

    func testRoundTrip() throws {
        let f = try SafetensorsFile.decode(sample())
        XCTAssertEqual(f.metadata, ["k": "v"])
        XCTAssertEqual(f.tensors.map(\.name), ["a.weight", "a.bias"])
        XCTAssertEqual(f.tensor("a.bias")?.shape, [2])
        XCTAssertEqual(Array(f.bytes(of: f.tensor("a.bias")!)), [0, 0x3C, 0, 0x40])
        XCTAssertEqual((sample().count - 8 - 24 - 4) % 8, 0, "header padded to 8 bytes")
    }

    func testRejectsEveryTruncation() {
        let full = sample()
        for cut in 0..<full.count {
            XCTAssertThrowsError(try SafetensorsFile.decode(Array(full[0..<cut])), "prefix of \(cut) bytes accepted")
        }
    }

    func testRejectsLyingHeaderLength() {
        var bytes = sample()
        bytes[0] = 0xFF; bytes[1] = 0xFF; bytes[2] = 0xFF; bytes[3] = 0x7F
        assertRejects(bytes, "header length")
        assertRejects([0, 0, 0, 0, 0, 0, 0, 0], "header length")
        assertRejects([200, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8), "truncated")
    }

    func testRejectsMalformedHeaders() {
        assertRejects(file("{\"a\"", payload: 0), "not valid JSON")
        assertRejects(file("[]", payload: 0), "not a JSON object")
        assertRejects(file(#"{"t":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#, payload: 8), "F64 is not supported")
        assertRejects(file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}"#, payload: 4), "unexpected field")
        assertRejects(file(#"{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, payload: 4), "non-negative integers")
        assertRejects(file(#"{"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, payload: 4), "non-negative integers")
        assertRejects(file(#"{"t":{"dtype":"F32","shape":[1]}}"#, payload: 4), "needs dtype, shape and data_offsets")
        assertRejects(file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, payload: 8), "duplicate key")
        assertRejects(file(#"{"__metadata__":{"a":1}}"#, payload: 0), "not a string")
        assertRejects(file(#"{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, payload: 4), "empty name")
        assertRejects(file(String(repeating: "[", count: 100), payload: 0), "nested deeper")
    }

    func testRejectsBadOffsets() {
        assertRejects(file(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, payload: 4), "needs 8 bytes")
        assertRejects(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#, payload: 6), "overlaps")
        assertRejects(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, payload: 8), "gap")
        assertRejects(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, payload: 12), "belong to no tensor")
        assertRejects(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, payload: 2), "truncated")
        assertRejects(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, payload: 4), "begin <= end")
        assertRejects(file(#"{"a":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}}"#, payload: 0), "absurdly large")
        assertRejects(file(#"{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}"#, payload: 1), "rank 9")
    }

    func testJSONStringsAndEscapes() throws {
        let j = try JSON.parse(Array(#" {"a\"b": ["\u00e9\ud83d\ude00", true, null, -1.5e3]} "#.utf8)[...])
        XCTAssertEqual(j, .object([("a\"b", .array([.string("é😀"), .bool(true), .null, .number("-1.5e3")]))]))
        XCTAssertEqual(try JSON.parse(Array(j.serialized.utf8)[...]), j)
        for bad in [#"{"a":1,}"#, #"{"a" 1}"#, #""\x""#, #""\ud800""#, "01x", #"{"a":1} x"#, "\"a\u{1}\""] {
            XCTAssertThrowsError(try JSON.parse(Array(bad.utf8)[...]), bad)
        }
    }

    /// Random corruption of a valid file: the decoder either accepts it or throws; never crashes,
    /// and anything it accepts still tiles exactly. (The libFuzzer target does the same at scale.)
    func testRandomMutationsNeverCrash() {
        let base = sample()
        var g = SeededGenerator(seed: 99)
        var accepted = 0
        for _ in 0..<20_000 {
            var b = base
            for _ in 0..<(1 + Int(g.next() % 4)) {
                switch g.next() % 3 {
                case 0: b[Int(g.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: g.next())
                case 1: b.removeSubrange(Int(g.next() % UInt64(b.count))..<b.count)
                default: b.insert(UInt8(truncatingIfNeeded: g.next()), at: Int(g.next() % UInt64(b.count)))
                }
                if b.isEmpty { b = [0] }
            }
            if let f = try? SafetensorsFile.decode(b) {
                accepted += 1
                XCTAssertEqual(f.tensors.reduce(0) { $0 + $1.dataRange.count }, f.payload.count)
            }
        }
        XCTAssertLessThan(accepted, 20_000)
    }
}
