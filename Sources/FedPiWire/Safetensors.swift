/// Element types of the safetensors format that FedPi reads and writes.
public enum DType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", i8 = "I8", u8 = "U8"

    public var size: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .i8, .u8: return 1
        }
    }
}

/// One tensor of a safetensors file: its bytes are `payload[dataRange]`, little-endian.
public struct TensorRecord: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var dataRange: Range<Int>
    public var elementCount: Int { shape.reduce(1, *) }
}

/// Bounds on untrusted files; anything larger is rejected before it is allocated.
public struct WireLimits: Sendable {
    public var maxHeaderBytes = 1 << 20
    public var maxFileBytes = 512 << 20
    public var maxTensors = 4096
    public var maxRank = 8
    public init() {}
}

/// Why a file or message was rejected, in words a person can act on.
public struct WireError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The safetensors layout: 8-byte little-endian header length N, N bytes of JSON header
/// (`{"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {string: string}}`), then the data.
public struct SafetensorsFile: Sendable {
    public var metadata: [String: String]
    /// In payload order.
    public var tensors: [TensorRecord]
    /// Everything after the header.
    public var payload: ArraySlice<UInt8>

    public func tensor(_ name: String) -> TensorRecord? { tensors.first { $0.name == name } }

    public func bytes(of t: TensorRecord) -> ArraySlice<UInt8> {
        payload[(payload.startIndex + t.dataRange.lowerBound)..<(payload.startIndex + t.dataRange.upperBound)]
    }

    /// Validates and indexes `bytes`. Every size is checked before anything is allocated, the offsets
    /// must tile the payload exactly, and each failure says what is wrong.
    public static func decode(_ bytes: [UInt8], limits: WireLimits = .init()) throws(WireError) -> SafetensorsFile {
        guard bytes.count <= limits.maxFileBytes else {
            throw WireError("file is \(bytes.count) bytes, more than the \(limits.maxFileBytes >> 20) MiB limit")
        }
        guard bytes.count >= 8 else { throw WireError("truncated: \(bytes.count) bytes, the header length alone needs 8") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n >= 2, n <= UInt64(limits.maxHeaderBytes) else {
            throw WireError("header length \(n) is outside 2...\(limits.maxHeaderBytes) bytes")
        }
        let headerEnd = 8 + Int(n)
        guard headerEnd <= bytes.count else {
            throw WireError("truncated: header claims \(n) bytes but only \(bytes.count - 8) follow the length")
        }
        let json: JSON
        do { json = try JSON.parse(bytes[8..<headerEnd]) } catch { throw WireError("header is not valid JSON: \(error)") }
        guard case .object(let members) = json else { throw WireError("header is not a JSON object") }
        guard members.count <= limits.maxTensors + 1 else { throw WireError("header lists \(members.count) entries, more than \(limits.maxTensors)") }

        var metadata: [String: String] = [:]
        var tensors: [TensorRecord] = []
        for (name, value) in members {
            if name == "__metadata__" {
                guard case .object(let pairs) = value else { throw WireError("__metadata__ is not an object") }
                for (k, v) in pairs {
                    guard case .string(let s) = v else { throw WireError("metadata value of \"\(k)\" is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard !name.isEmpty else { throw WireError("a tensor has an empty name") }
            tensors.append(try record(name, value, limits))
        }
        tensors.sort { ($0.dataRange.lowerBound, $0.dataRange.upperBound) < ($1.dataRange.lowerBound, $1.dataRange.upperBound) }
        let payloadSize = bytes.count - headerEnd
        var expected = 0
        for t in tensors {
            if t.dataRange.lowerBound > expected {
                throw WireError("gap in the data: bytes \(expected)..<\(t.dataRange.lowerBound) belong to no tensor (before \(t.name))")
            }
            if t.dataRange.lowerBound < expected { throw WireError("tensor \(t.name) overlaps the tensor before it") }
            expected = t.dataRange.upperBound
        }
        guard expected == payloadSize else {
            throw expected > payloadSize
                ? WireError("truncated: tensors need \(expected) data bytes, the file has \(payloadSize)")
                : WireError("\(payloadSize - expected) bytes after the last tensor belong to no tensor")
        }
        return SafetensorsFile(metadata: metadata, tensors: tensors, payload: bytes[headerEnd...])
    }

    private static func record(_ name: String, _ value: JSON, _ limits: WireLimits) throws(WireError) -> TensorRecord {
        guard case .object(let fields) = value else { throw WireError("tensor \(name): entry is not an object") }
        var dtype: DType?, shape: [Int]?, offsets: [Int]?
        for (key, v) in fields {
            switch key {
            case "dtype":
                guard case .string(let s) = v else { throw WireError("tensor \(name): dtype is not a string") }
                guard let d = DType(rawValue: s) else {
                    throw WireError("tensor \(name): dtype \(s) is not supported (F32, F16, BF16, I8, U8)")
                }
                dtype = d
            case "shape", "data_offsets":
                guard case .array(let items) = v else { throw WireError("tensor \(name): \(key) is not an array") }
                let ints = items.compactMap(\.integer)
                guard ints.count == items.count else { throw WireError("tensor \(name): \(key) holds something other than non-negative integers") }
                if key == "shape" { shape = ints } else { offsets = ints }
            default:
                throw WireError("tensor \(name): unexpected field \"\(key)\"")
            }
        }
        guard let dtype, let shape, let offsets else { throw WireError("tensor \(name): needs dtype, shape and data_offsets") }
        guard shape.count <= limits.maxRank else { throw WireError("tensor \(name): rank \(shape.count) is above \(limits.maxRank)") }
        var count = 1
        for d in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, p <= limits.maxFileBytes else { throw WireError("tensor \(name): shape \(shape) is absurdly large") }
            count = p
        }
        guard offsets.count == 2, offsets[0] <= offsets[1] else {
            throw WireError("tensor \(name): data_offsets must be [begin, end] with begin <= end")
        }
        guard offsets[1] - offsets[0] == count * dtype.size else {
            throw WireError("tensor \(name): shape \(shape) of \(dtype.rawValue) needs \(count * dtype.size) bytes, data_offsets give \(offsets[1] - offsets[0])")
        }
        return TensorRecord(name: name, dtype: dtype, shape: shape, dataRange: offsets[0]..<offsets[1])
    }

    /// Writes tensors (in the given order) and metadata; the header is padded with spaces to a
    /// multiple of 8 bytes so the data is aligned, as the reference implementation does.
    public static func encode(_ tensors: [(name: String, dtype: DType, shape: [Int], data: [UInt8])], metadata: [String: String]) -> [UInt8] {
        var members: [(key: String, value: JSON)] = []
        if !metadata.isEmpty {
            members.append(("__metadata__", .object(metadata.sorted { $0.key < $1.key }.map { ($0.key, JSON.string($0.value)) })))
        }
        var offset = 0
        for t in tensors {
            precondition(t.data.count == t.shape.reduce(1, *) * t.dtype.size, "tensor \(t.name): data does not match shape")
            members.append((t.name, .object([
                ("dtype", .string(t.dtype.rawValue)),
                ("shape", .array(t.shape.map { .number(String($0)) })),
                ("data_offsets", .array([.number(String(offset)), .number(String(offset + t.data.count))])),
            ])))
            offset += t.data.count
        }
        var header = Array(JSON.object(members).serialized.utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        let n = UInt64(header.count)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
        out += header
        for t in tensors { out += t.data }
        return out
    }
}
