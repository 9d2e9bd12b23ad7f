import CZlib

/// An IDX file (the MNIST format): a 4-byte magic `00 00 <type> <rank>`, `rank` big-endian UInt32
/// dimensions, then the data. FedPi reads unsigned-byte files, raw or gzip-compressed.
public struct IDXArray: Sendable {
    /// Dimensions of what was kept (the first is the number of selected records).
    public let dimensions: [Int]
    public let bytes: [UInt8]
    /// Records (first dimension) in the file, selected or not.
    public var fileRecords: Int
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
    /// With `records` (ascending indices along the first dimension) only those records are kept; the
    /// rest are streamed past, so memory holds the selection, not the file. The whole file is
    /// validated either way.
    public static func read(path: String, byteLimit: Int = defaultByteLimit, records: [Int]? = nil) throws -> IDXArray {
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

        func truncated(_ n: Int) -> IDXError {
            fail("truncated: header \(dims.map(String.init).joined(separator: "x")) promises \(total) data bytes, file has \(n)")
        }
        let bytes: [UInt8]
        var outDims = dims
        if let records {
            let per = dims[0] > 0 ? total / dims[0] : 0
            guard zip(records, records.dropFirst()).allSatisfy({ $0 < $1 }), records.allSatisfy({ (0..<dims[0]).contains($0) }) else {
                throw fail("selected records must be ascending and within 0..<\(dims[0])")
            }
            outDims[0] = records.count
            let chunkRecords = max(1, (1 << 20) / max(per, 1))
            var scratch = [UInt8](repeating: 0, count: chunkRecords * per)
            var out = [UInt8](repeating: 0, count: records.count * per)
            var next = 0, record = 0, consumed = 0
            while record < dims[0] {
                let count = min(chunkRecords, dims[0] - record)
                let n = try scratch.withUnsafeMutableBytes { try readFully($0.baseAddress!, count * per) }
                consumed += n
                guard n == count * per else { throw truncated(consumed) }
                while next < records.count, records[next] < record + count {
                    let from = (records[next] - record) * per
                    out.withUnsafeMutableBufferPointer { o in
                        scratch.withUnsafeBufferPointer { (o.baseAddress! + next * per).update(from: $0.baseAddress! + from, count: per) }
                    }
                    next += 1
                }
                record += count
            }
            bytes = out
        } else {
            bytes = try [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
                let n = try readFully(buffer.baseAddress!, total)
                initialized = n
                guard n == total else { throw truncated(n) }
            }
        }
        var extra: UInt8 = 0
        if try readFully(&extra, 1) != 0 {
            throw fail("has bytes after the \(total) data bytes its header \(dims.map(String.init).joined(separator: "x")) describes")
        }
        return IDXArray(dimensions: outDims, bytes: bytes, fileRecords: dims[0])
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
