import CZlib

/// An IDX file (the MNIST format): a 4-byte magic `00 00 <type> <rank>`, `rank` big-endian UInt32
/// dimensions, then the data. FedPi reads unsigned-byte files, raw or gzip-compressed.
public struct IDXArray: Sendable {
    public let dimensions: [Int]
    public let bytes: [UInt8]
}

/// Why an IDX file could not be read; names the file and what is wrong with it.
public struct IDXError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let problem: String
    public var description: String { "\(path): \(problem)" }
}

public enum IDX {
    /// Largest data section accepted (1 GiB); a header claiming more is rejected before allocating.
    public static let defaultByteLimit = 1 << 30

    /// Reads and validates an unsigned-byte IDX file. Gzip is detected from the content, not the name.
    public static func read(path: String, byteLimit: Int = defaultByteLimit) throws -> IDXArray {
        guard let file = gzopen(path, "rb") else {
            throw IDXError(path: path, problem: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { gzclose(file) }
        func fail(_ problem: String) -> IDXError { IDXError(path: path, problem: problem) }
        func readFully(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
            var done = 0
            while done < count {
                let chunk = UInt32(min(count - done, 1 << 30))
                let n = gzread(file, buffer + done, chunk)
                if n < 0 {
                    var code: Int32 = 0
                    let message = String(cString: gzerror(file, &code))
                    throw fail("corrupt compressed data (\(message))")
                }
                if n == 0 { break }
                done += Int(n)
            }
            return done
        }

        var magic = [UInt8](repeating: 0, count: 4)
        let got = try magic.withUnsafeMutableBytes { try readFully($0.baseAddress!, 4) }
        guard got == 4 else { throw fail("truncated: file has \(got) bytes, an IDX header needs at least 4") }
        guard magic[0] == 0, magic[1] == 0 else {
            throw fail("not an IDX file (magic \(hex(magic)), expected 00 00 08 <rank>)")
        }
        guard magic[2] == 0x08 else {
            throw fail("element type 0x\(hex([magic[2]])) is not supported; FedPi reads unsigned-byte (0x08) IDX files")
        }
        let rank = Int(magic[3])
        guard (1...4).contains(rank) else { throw fail("rank \(rank) is not supported (expected 1 to 4 dimensions)") }

        var raw = [UInt8](repeating: 0, count: 4 * rank)
        let gotDims = try raw.withUnsafeMutableBytes { try readFully($0.baseAddress!, 4 * rank) }
        guard gotDims == 4 * rank else { throw fail("truncated in the header: \(rank) dimensions need \(4 * rank) bytes, found \(gotDims)") }
        var dims: [Int] = []
        var total = 1
        for d in 0..<rank {
            let v = Int(raw[4 * d]) << 24 | Int(raw[4 * d + 1]) << 16 | Int(raw[4 * d + 2]) << 8 | Int(raw[4 * d + 3])
            dims.append(v)
            let (product, overflow) = total.multipliedReportingOverflow(by: v)
            guard !overflow, product <= byteLimit else {
                throw fail("header claims dimensions \(dims.map(String.init).joined(separator: "x"))…, more than the \(byteLimit >> 20) MiB limit")
            }
            total = product
        }

        let bytes = try [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            let n = try readFully(buffer.baseAddress!, total)
            initialized = n
            guard n == total else {
                throw fail("truncated: header \(dims.map(String.init).joined(separator: "x")) promises \(total) data bytes, file has \(n)")
            }
        }
        var extra: UInt8 = 0
        if try readFully(&extra, 1) != 0 {
            throw fail("has bytes after the \(total) data bytes its header \(dims.map(String.init).joined(separator: "x")) describes")
        }
        return IDXArray(dimensions: dims, bytes: bytes)
    }

    private static func hex(_ b: [UInt8]) -> String {
        b.map { let s = String($0, radix: 16); return s.count == 1 ? "0" + s : s }.joined(separator: " ")
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
