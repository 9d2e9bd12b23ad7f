/// A TOML value: what FedPi's config files use of the language. Tables keep their keys in file order.
public indirect enum TOMLValue: Equatable, Sendable {
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])
    case table(TOMLTable)

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var int: Int? { if case .integer(let i) = self { i } else { nil } }
    public var double: Double? { if case .float(let d) = self { d } else { nil } }
    public var bool: Bool? { if case .boolean(let b) = self { b } else { nil } }
    public var array: [TOMLValue]? { if case .array(let a) = self { a } else { nil } }
    public var table: TOMLTable? { if case .table(let t) = self { t } else { nil } }
}

public struct TOMLTable: Equatable, Sendable {
    public private(set) var keys: [String] = []
    private var values: [String: TOMLValue] = [:]

    public init() {}
    public subscript(key: String) -> TOMLValue? { values[key] }

    /// Adds a key; false when it is already there.
    mutating func insert(_ key: String, _ value: TOMLValue) -> Bool {
        guard values[key] == nil else { return false }
        keys.append(key)
        values[key] = value
        return true
    }

    mutating func replace(_ key: String, _ value: TOMLValue) { values[key] = value }
}

/// Where and why a TOML text does not parse.
public struct TOMLError: Error, CustomStringConvertible, Equatable {
    public let line: Int
    public let message: String
    public var description: String { "line \(line): \(message)" }
}

/// A TOML reader for configuration files, without Foundation (the worker stays free of ICU).
///
/// Reads comments, bare and quoted keys, basic strings (with escapes) and literal strings,
/// integers (decimal, 0x, 0o, 0b, with `_`), floats (with exponent, inf, nan), booleans, arrays
/// (across lines, trailing comma allowed), inline tables, `[table]` and `[[array of tables]]`
/// headers. Dotted keys, multi-line strings and dates are refused with a message that says so.
public enum TOML {
    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var parser = Parser(Array(text.utf8))
        return try parser.document()
    }

    private struct Parser {
        let bytes: [UInt8]
        var at = 0
        var line = 1

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var current: UInt8? { at < bytes.count ? bytes[at] : nil }

        func fail(_ message: String) -> TOMLError { TOMLError(line: line, message: message) }

        mutating func advance() {
            if bytes[at] == UInt8(ascii: "\n") { line += 1 }
            at += 1
        }

        mutating func skipBlanks() {
            while let c = current, c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") { advance() }
        }

        /// Blanks, comments and line breaks (inside arrays, and between statements).
        mutating func skipBlankLines() {
            while let c = current {
                if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\n") || c == UInt8(ascii: "\r") {
                    advance()
                } else if c == UInt8(ascii: "#") {
                    while let d = current, d != UInt8(ascii: "\n") { advance() }
                } else {
                    return
                }
            }
        }

        /// After a statement: blanks, an optional comment, then a line break or the end.
        mutating func endOfLine() throws(TOMLError) {
            skipBlanks()
            if current == UInt8(ascii: "#") { while let d = current, d != UInt8(ascii: "\n") { advance() } }
            if current == UInt8(ascii: "\r") { advance() }
            guard let c = current else { return }
            guard c == UInt8(ascii: "\n") else { throw fail("unexpected '\(Character(UnicodeScalar(c)))' after the value; one key = value per line") }
            advance()
        }

        mutating func document() throws(TOMLError) -> TOMLTable {
            var root = TOMLTable()
            // where key = value lines go: the root, a [table], or the last element of a [[table]]
            var section: (name: String, isArray: Bool)?
            var pending = TOMLTable()
            func close(_ root: inout TOMLTable, _ section: (name: String, isArray: Bool)?, _ table: TOMLTable) {
                guard let section else { return }
                if section.isArray, case .array(var list)? = root[section.name] {
                    list[list.count - 1] = .table(table)
                    root.replace(section.name, .array(list))
                } else {
                    root.replace(section.name, .table(table))
                }
            }
            while true {
                skipBlankLines()
                guard let c = current else { break }
                if c == UInt8(ascii: "[") {
                    let headerLine = line
                    advance()
                    let isArray = current == UInt8(ascii: "[")
                    if isArray { advance() }
                    skipBlanks()
                    let name = try key()
                    skipBlanks()
                    if current == UInt8(ascii: ".") { throw fail("nested tables ([\(name).…]) are not supported") }
                    for _ in 0..<(isArray ? 2 : 1) {
                        guard current == UInt8(ascii: "]") else { throw fail("expected ']' to close the table header [\(name)") }
                        advance()
                    }
                    try endOfLine()
                    close(&root, section, pending)
                    pending = TOMLTable()
                    if isArray {
                        switch root[name] {
                        case nil: _ = root.insert(name, .array([.table(TOMLTable())]))
                        case .array(let list)? where list.allSatisfy({ $0.table != nil }):
                            root.replace(name, .array(list + [.table(TOMLTable())]))
                        default: throw TOMLError(line: headerLine, message: "[[\(name)]] is already defined as something other than an array of tables")
                        }
                    } else {
                        guard root.insert(name, .table(TOMLTable())) else {
                            throw TOMLError(line: headerLine, message: "table [\(name)] is defined twice")
                        }
                    }
                    section = (name, isArray)
                } else {
                    let keyLine = line
                    let (k, v) = try keyValue()
                    try endOfLine()
                    if section == nil {
                        guard root.insert(k, v) else { throw TOMLError(line: keyLine, message: "duplicate key '\(k)'") }
                    } else {
                        guard pending.insert(k, v) else { throw TOMLError(line: keyLine, message: "duplicate key '\(k)' in [\(section!.name)]") }
                    }
                }
            }
            close(&root, section, pending)
            return root
        }

        mutating func keyValue() throws(TOMLError) -> (String, TOMLValue) {
            let k = try key()
            skipBlanks()
            if current == UInt8(ascii: ".") { throw fail("dotted keys (\(k).…) are not supported; write a [table] instead") }
            guard current == UInt8(ascii: "=") else { throw fail("expected '=' after the key '\(k)'") }
            advance()
            skipBlanks()
            return (k, try value())
        }

        mutating func key() throws(TOMLError) -> String {
            guard let c = current else { throw fail("expected a key, found the end of the file") }
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                let k = try quoted()
                guard !k.isEmpty else { throw fail("a key may not be empty") }
                return k
            }
            let begin = at
            while let d = current, Parser.isBare(d) { advance() }
            guard at > begin else { throw fail("expected a key, found '\(Character(UnicodeScalar(c)))'") }
            return String(decoding: bytes[begin..<at], as: UTF8.self)
        }

        static func isBare(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
        }

        mutating func value() throws(TOMLError) -> TOMLValue {
            guard let c = current else { throw fail("expected a value, found the end of the file") }
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "'"): return .string(try quoted())
            case UInt8(ascii: "["): return try array()
            case UInt8(ascii: "{"): return try inlineTable()
            default: return try scalar()
            }
        }

        mutating func array() throws(TOMLError) -> TOMLValue {
            advance()  // [
            var items: [TOMLValue] = []
            while true {
                skipBlankLines()
                guard let c = current else { throw fail("an array is not closed with ']'") }
                if c == UInt8(ascii: "]") { advance(); return .array(items) }
                items.append(try value())
                skipBlankLines()
                guard current != nil else { throw fail("an array is not closed with ']'") }
                if current == UInt8(ascii: ",") { advance(); continue }
                guard current == UInt8(ascii: "]") else { throw fail("expected ',' or ']' in an array") }
            }
        }

        mutating func inlineTable() throws(TOMLError) -> TOMLValue {
            advance()  // {
            var table = TOMLTable()
            skipBlanks()
            if current == UInt8(ascii: "}") { advance(); return .table(table) }
            while true {
                skipBlanks()
                let (k, v) = try keyValue()
                guard table.insert(k, v) else { throw fail("duplicate key '\(k)' in an inline table") }
                skipBlanks()
                if current == UInt8(ascii: ",") { advance(); continue }
                guard current == UInt8(ascii: "}") else { throw fail("expected ',' or '}' in an inline table") }
                advance()
                return .table(table)
            }
        }

        /// A basic ("…", with escapes) or literal ('…') string on one line.
        mutating func quoted() throws(TOMLError) -> String {
            let quote = bytes[at]
            if at + 2 < bytes.count, bytes[at + 1] == quote, bytes[at + 2] == quote {
                throw fail("multi-line strings are not supported")
            }
            advance()
            var out: [UInt8] = []
            while true {
                guard let c = current, c != UInt8(ascii: "\n") else { throw fail("a string is not closed on its line") }
                advance()
                if c == quote { break }
                if c == UInt8(ascii: "\\") && quote == UInt8(ascii: "\"") {
                    guard let e = current else { throw fail("a string is not closed on its line") }
                    advance()
                    switch e {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(e)
                    case UInt8(ascii: "u"), UInt8(ascii: "U"):
                        let digits = e == UInt8(ascii: "u") ? 4 : 8
                        guard at + digits <= bytes.count,
                              let code = UInt32(String(decoding: bytes[at..<(at + digits)], as: UTF8.self), radix: 16),
                              let scalar = UnicodeScalar(code) else { throw fail("bad \\\(Character(UnicodeScalar(e))) escape in a string") }
                        at += digits
                        out.append(contentsOf: Array(String(Character(scalar)).utf8))
                    default: throw fail("unknown escape \\\(Character(UnicodeScalar(e))) in a string")
                    }
                } else if c < 0x20 && c != 0x09 {
                    throw fail("control character in a string")
                } else {
                    out.append(c)
                }
            }
            guard let s = String(validating: out, as: UTF8.self) else { throw fail("a string is not valid UTF-8") }
            return s
        }

        /// true, false, an integer or a float: the bare word up to a delimiter.
        mutating func scalar() throws(TOMLError) -> TOMLValue {
            let begin = at
            while let c = current, !(c == UInt8(ascii: ",") || c == UInt8(ascii: "]") || c == UInt8(ascii: "}") || c == UInt8(ascii: "#")
                                     || c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\n") || c == UInt8(ascii: "\r")) {
                advance()
            }
            let word = String(decoding: bytes[begin..<at], as: UTF8.self)
            guard !word.isEmpty else { throw fail("expected a value") }
            switch word {
            case "true": return .boolean(true)
            case "false": return .boolean(false)
            case "inf", "+inf": return .float(.infinity)
            case "-inf": return .float(-.infinity)
            case "nan", "+nan", "-nan": return .float(.nan)
            default: break
            }
            if word.count >= 10, word.utf8.dropFirst(4).first == UInt8(ascii: "-"), word.utf8.prefix(4).allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
                throw fail("dates and times are not supported (\(word))")
            }
            guard !word.hasPrefix("_"), !word.hasSuffix("_"), !word.contains("__") else { throw fail("'\(word)' is not a number") }
            let plain = word.replacing("_", with: "")
            for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where plain.hasPrefix(prefix) {
                guard let i = Int(plain.dropFirst(2), radix: radix) else { throw fail("'\(word)' is not a number") }
                return .integer(i)
            }
            let digits = plain.drop { $0 == "+" || $0 == "-" }
            if digits.count > 1, digits.hasPrefix("0"), digits.dropFirst().first?.isNumber == true {
                throw fail("'\(word)' has a leading zero")
            }
            if let i = Int(plain) { return .integer(i) }
            if plain.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), let d = Double(plain), d.isFinite,
               plain.last?.isNumber == true, plain.first.map({ $0.isNumber || $0 == "+" || $0 == "-" }) == true {
                return .float(d)
            }
            if plain.allSatisfy({ $0.isNumber || $0 == "+" || $0 == "-" }), !plain.isEmpty {
                throw fail("'\(word)' is out of the integer range")
            }
            throw fail("expected a value (a \"string\", number, true/false or [array]), found '\(word)'")
        }
    }
}
