#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Reading and writing the small PEM files of the fleet, with errors that name the file.
public enum IdentityFiles {
    /// PEM files are a few KB; anything larger is not one.
    static let maxBytes = 1 << 20

    public static func readText(_ path: String, what: String) throws(IdentityError) -> String {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            throw IdentityError("\(what) \(path): no such file (or not readable)")
        }
        if let size = attributes[.size] as? Int, size > maxBytes { throw IdentityError("\(what) \(path): \(size) bytes is too large for a PEM file") }
        guard let data = FileManager.default.contents(atPath: path) else { throw IdentityError("\(what) \(path): not readable") }
        return String(decoding: data, as: UTF8.self)
    }

    /// Writes `text` to `path` through a temporary file and a rename; `mode` 0600 for keys.
    public static func write(_ text: String, to path: String, mode: mode_t = 0o644) throws(IdentityError) {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw IdentityError("cannot write \(path): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        fchmod(fd, mode)
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw IdentityError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// "2027-03-14" (UTC).
    public static func day(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
    }
}

/// PEM text of DER bytes.
public enum PEMText {
    public static func certificate(_ der: [UInt8]) -> String {
        let base64 = Data(der).base64EncodedString()
        var lines: [Substring] = []
        var rest = Substring(base64)
        while !rest.isEmpty {
            lines.append(rest.prefix(64))
            rest = rest.dropFirst(64)
        }
        return "-----BEGIN CERTIFICATE-----\n" + lines.joined(separator: "\n") + "\n-----END CERTIFICATE-----\n"
    }
}
