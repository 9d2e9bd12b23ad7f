#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A configuration mistake, said in one sentence naming the file and the key.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A TOML table read key by key with typed accessors. Every accessor names the file and the key in
/// its error; `finish()` rejects keys nobody asked for, so a misspelt option is an error, not a
/// silently ignored line.
public final class ConfigFile {
    public let path: String
    let table: TOMLTable
    let prefix: String
    private var asked: Set<String> = []

    /// Reads and parses a TOML file (at most 1 MiB).
    public convenience init(path: String) throws(ConfigError) {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError("cannot read config file \(path)") }
        guard data.count <= 1 << 20 else { throw ConfigError("\(path) is \(data.count) bytes; a config file may be at most 1 MiB") }
        guard let text = String(data: data, encoding: .utf8) else { throw ConfigError("\(path) is not UTF-8 text") }
        try self.init(text: text, path: path)
    }

    public init(text: String, path: String) throws(ConfigError) {
        do {
            table = try TOML.parse(text)
        } catch {
            throw ConfigError("\(path): \(error)")
        }
        self.path = path
        prefix = ""
    }

    init(table: TOMLTable, path: String, prefix: String) {
        self.table = table
        self.path = path
        self.prefix = prefix
    }

    private func value(_ key: String) -> TOMLValue? {
        asked.insert(key)
        return table[key]
    }

    private func wrong(_ key: String, _ expected: String) -> ConfigError {
        ConfigError("\(path): \(prefix)\(key) must be \(expected)")
    }

    public func string(_ key: String) throws(ConfigError) -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.string else { throw wrong(key, "a string") }
        return s
    }

    public func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.int, range.contains(i) else { throw wrong(key, "an integer in \(range.lowerBound)...\(range.upperBound)") }
        return i
    }

    /// A number (integer or float) in `range`.
    public func double(_ key: String, in range: ClosedRange<Double>) throws(ConfigError) -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = v.double ?? v.int.map(Double.init), d.isFinite, range.contains(d) else {
            throw wrong(key, "a number in \(range.lowerBound)...\(range.upperBound)")
        }
        return d
    }

    public func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.bool else { throw wrong(key, "true or false") }
        return b
    }

    /// An array of strings.
    public func strings(_ key: String) throws(ConfigError) -> [String]? {
        guard let v = value(key) else { return nil }
        guard let a = v.array, a.allSatisfy({ $0.string != nil }) else { throw wrong(key, "an array of strings") }
        return a.compactMap(\.string)
    }

    /// A table (`[key]`), read with its own accessors.
    public func table(_ key: String) throws(ConfigError) -> ConfigFile? {
        guard let v = value(key) else { return nil }
        guard let t = v.table else { throw wrong(key, "a table ([\(key)])") }
        return ConfigFile(table: t, path: path, prefix: "\(prefix)\(key).")
    }

    /// An array of tables (`[[key]]`), each read with its own accessors.
    public func tables(_ key: String) throws(ConfigError) -> [ConfigFile] {
        guard let v = value(key) else { return [] }
        guard let a = v.array else { throw wrong(key, "an array of tables ([[\(key)]])") }
        var out: [ConfigFile] = []
        for (i, element) in a.enumerated() {
            guard let t = element.table else { throw wrong(key, "an array of tables ([[\(key)]])") }
            out.append(ConfigFile(table: t, path: path, prefix: "\(prefix)\(key)[\(i + 1)]."))
        }
        return out
    }

    /// Throws for any key that was never asked for.
    public func finish() throws(ConfigError) {
        let unknown = table.keys.filter { !asked.contains($0) }.sorted()
        guard unknown.isEmpty else {
            throw ConfigError("\(path): unknown key\(unknown.count > 1 ? "s" : "") " + unknown.map { prefix + $0 }.joined(separator: ", "))
        }
    }
}

/// Where a daemon listens.
public enum ListenAddress {
    /// "HOST:PORT" or ":PORT" (all interfaces) or "PORT" (loopback).
    public static func parse(_ text: String, path: String) throws(ConfigError) -> (host: String, port: Int) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let host = parts.count == 2 ? (parts[0].isEmpty ? "0.0.0.0" : String(parts[0])) : "127.0.0.1"
        guard parts.count <= 2, let port = Int(parts.last ?? ""), (0...65535).contains(port) else {
            throw ConfigError("\(path): listen address \(text) is not HOST:PORT (e.g. 0.0.0.0:8470)")
        }
        return (host, port)
    }

    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}
