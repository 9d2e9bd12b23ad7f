import FedPiEngine

/// How parameter values travel: f32 (exact), f16 (the wire default, half the bytes), i8 (a quarter,
/// one scale per row, stochastic rounding).
public enum Encoding: String, Sendable, CaseIterable {
    case f32, f16, i8

    var dtype: DType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .i8: return .i8
        }
    }
}

/// Whether a file holds model weights or an update relative to a global model (`delta = local − global`).
public enum ContentKind: String, Sendable { case weights, delta }

/// FedPi's metadata on a model or update file (all of it also readable as plain safetensors metadata).
public struct ModelFileHeader: Sendable, Equatable {
    public var model: String
    public var layout: String
    public var round: Int
    public var examples: Int
    public var encoding: Encoding
    public var kind: ContentKind
    /// An update's origin: the digest of the global model it was trained from (`global`).
    public var global: String?
    /// An update's training time in seconds, as its node reports it (`train_seconds`; nil when missing
    /// or not a finite, non-negative number).
    public var trainSeconds: Double?
    /// Every metadata entry of the file, FedPi's and any other (e.g. a training config).
    public var metadata: [String: String] = [:]
}

/// Model weights and updates as safetensors files with FedPi metadata: `format`, `model`, `layout`
/// (a hash of names and shapes), `round`, `examples`, `encoding`, `kind`, `checksum` (CRC-32 of the
/// data) and `scale.<tensor>` for i8 tensors: one scale per row of the tensor's first dimension,
/// comma-separated (one number: a single scale for the whole tensor, as FedPi wrote before).
/// Tensor names and shapes are PyTorch's.
public enum ModelFile {
    public static let format = "fedpi/1"

    /// i8 scales per tensor, the same rule for writing and reading: one per row of the first
    /// dimension, one for a vector (a bias).
    static func i8ScaleRows(_ shape: [Int]) -> Int { shape.count >= 2 ? shape[0] : 1 }

    /// FNV-1a 64 of "name:d0xd1x…;" over the layout, as 16 hex digits.
    public static func layoutHash(_ layout: [ParameterInfo]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for e in layout {
            for b in "\(e.name):\(e.shape.map(String.init).joined(separator: "x"));".utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        }
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// Encodes `values` (laid out as `layout`, f32) with the given encoding.
    public static func encode(_ values: UnsafeBufferPointer<Float>, layout: [ParameterInfo], model: String, encoding: Encoding,
                              kind: ContentKind = .weights, round: Int = 0, examples: Int = 0, global: String? = nil,
                              trainSeconds: Double? = nil, seed: UInt64 = 0, extra: [String: String] = [:]) -> [UInt8] {
        var g = SeededGenerator(seed: seed, stream: "i8.rounding")
        var metadata = extra
        if let global { metadata["global"] = global }
        if let trainSeconds { metadata["train_seconds"] = String(trainSeconds) }
        metadata.merge([
            "format": format, "model": model, "layout": layoutHash(layout), "round": String(round),
            "examples": String(examples), "encoding": encoding.rawValue, "kind": kind.rawValue,
        ]) { _, fedpi in fedpi }
        var tensors: [(name: String, dtype: DType, shape: [Int], data: [UInt8])] = []
        for e in layout {
            let slice = UnsafeBufferPointer(rebasing: values[e.offset..<(e.offset + e.count)])
            let data: [UInt8]
            switch encoding {
            case .f32: data = Codecs.f32Bytes(slice)
            case .f16: data = Codecs.f16Bytes(slice)
            case .i8:
                let (bytes, scales) = Codecs.i8Bytes(slice, rows: i8ScaleRows(e.shape), using: &g)
                data = bytes
                metadata["scale." + e.name] = scales.map(\.description).joined(separator: ",")
            }
            tensors.append((e.name, encoding.dtype, e.shape, data))
        }
        metadata["checksum"] = Codecs.crc32Hex(tensors.map { $0.data[...] })
        return SafetensorsFile.encode(tensors, metadata: metadata)
    }

    /// A model's current weights as a file (read in place, no copy of the parameters).
    public static func encode(weightsOf model: Model, encoding: Encoding = .f32, round: Int = 0, examples: Int = 0,
                              seed: UInt64 = 0, extra: [String: String] = [:]) -> [UInt8] {
        encode(UnsafeBufferPointer(start: model.parameters.values, count: model.parameters.count), layout: model.parameters.entries,
               model: model.id, encoding: encoding, round: round, examples: examples, seed: seed, extra: extra)
    }

    /// The update a worker sends when `kind` is `.delta`: local − global, elementwise.
    public static func delta(_ local: [Float], from global: [Float]) -> [Float] {
        precondition(local.count == global.count, "delta of different layouts")
        return zip(local, global).map { $0 - $1 }
    }

    /// Adds a decoded delta back onto the global model it was taken against.
    public static func apply(_ delta: [Float], to global: [Float]) -> [Float] {
        precondition(delta.count == global.count, "delta of a different layout")
        return zip(global, delta).map { $0 + $1 }
    }

    /// Whether the data matches the file's `checksum` (CRC-32): true, false, or nil for a file without
    /// one (written by another tool).
    public static func checksumMatches(_ file: SafetensorsFile) -> Bool? {
        guard let c = file.metadata["checksum"] else { return nil }
        return c == Codecs.crc32Hex([file.payload])
    }

    /// Throws when the file has a checksum and its data does not match it.
    public static func verifyChecksum(_ file: SafetensorsFile) throws(WireError) {
        if checksumMatches(file) == false {
            throw WireError("checksum mismatch: metadata says \(file.metadata["checksum"]!.clipped(16)), data has \(Codecs.crc32Hex([file.payload])): the file is corrupted")
        }
    }

    /// Decodes and validates a file against the layout the receiver expects. Any file whose tensors
    /// have the layout's names and shapes is accepted (a Python-written one too); FedPi metadata, when
    /// present, must agree. Returns f32 values in layout order, all finite.
    public static func decode(_ bytes: [UInt8], expecting layout: [ParameterInfo], model: String,
                              limits: WireLimits = .init()) throws(WireError) -> (values: [Float], header: ModelFileHeader) {
        let (file, header) = try open(bytes, expecting: layout, model: model, limits: limits)
        var values = [Float](repeating: 0, count: layout.last.map { $0.offset + $0.count } ?? 0)
        try values.withUnsafeMutableBufferPointer { (out: inout UnsafeMutableBufferPointer<Float>) throws(WireError) in
            for e in layout {
                let t = try tensor(e, of: file, model: model)
                try floatValues(of: t, in: file, into: out.baseAddress! + e.offset)
                for i in e.offset..<(e.offset + e.count) where !out[i].isFinite {
                    throw WireError("tensor \(e.name) holds \(out[i]) at index \(i - e.offset); values must be finite")
                }
            }
        }
        return (values, header)
    }

    /// `w[i] -= file value i` in layout order, validating like `decode` but without holding the decoded
    /// values (f16, bf16 and f32 tensors go through a small buffer): the delta of trained weights
    /// against the global model they started from, on a board where 4.8 MB counts. On an error `w`
    /// may be partly changed.
    public static func subtract(_ bytes: [UInt8], expecting layout: [ParameterInfo], model: String,
                                from w: UnsafeMutableBufferPointer<Float>) throws(WireError) {
        let (file, _) = try open(bytes, expecting: layout, model: model, limits: .init())
        let chunk = 16_384
        var scratch = [Float](repeating: 0, count: chunk)
        try scratch.withUnsafeMutableBufferPointer { (buffer: inout UnsafeMutableBufferPointer<Float>) throws(WireError) in
            for e in layout {
                let t = try tensor(e, of: file, model: model)
                let width: Int? = switch t.dtype {
                case .f32: 4
                case .f16, .bf16: 2
                default: nil
                }
                guard let width else {
                    // i8 and u8 need the whole tensor (scales per row)
                    var whole = [Float](repeating: 0, count: e.count)
                    try whole.withUnsafeMutableBufferPointer { (all: inout UnsafeMutableBufferPointer<Float>) throws(WireError) in
                        try floatValues(of: t, in: file, into: all.baseAddress!)
                        try subtract(all, tensor: e.name, from: w.baseAddress! + e.offset)
                    }
                    continue
                }
                let bytes = file.bytes(of: t)
                for start in stride(from: 0, to: e.count, by: chunk) {
                    let n = min(chunk, e.count - start)
                    let part = bytes[(bytes.startIndex + start * width)..<(bytes.startIndex + (start + n) * width)]
                    switch t.dtype {
                    case .f32: Codecs.floats(fromF32: part, into: buffer.baseAddress!)
                    case .f16: Codecs.floats(fromF16: part, into: buffer.baseAddress!)
                    default: Codecs.floats(fromBF16: part, into: buffer.baseAddress!)
                    }
                    try subtract(UnsafeMutableBufferPointer(rebasing: buffer[0..<n]), tensor: e.name, from: w.baseAddress! + e.offset + start)
                }
            }
        }
    }

    private static func subtract(_ values: UnsafeMutableBufferPointer<Float>, tensor name: String,
                                 from w: UnsafeMutablePointer<Float>) throws(WireError) {
        for i in values.indices {
            guard values[i].isFinite else { throw WireError("tensor \(name) holds \(values[i]); values must be finite") }
            w[i] -= values[i]
        }
    }

    /// The file's tensors and header, checked against the layout: model, format, layout hash,
    /// checksum, no tensor the model does not have.
    static func open(_ bytes: [UInt8], expecting layout: [ParameterInfo], model: String,
                     limits: WireLimits) throws(WireError) -> (SafetensorsFile, ModelFileHeader) {
        let file = try SafetensorsFile.decode(bytes, limits: limits)
        let m = file.metadata
        if let other = m["model"], other != model { throw WireError("file is for model \(other), expected \(model)") }
        if let f = m["format"], f != format { throw WireError("format \(f) is not \(format)") }
        let hash = layoutHash(layout)
        if let l = m["layout"], l != hash { throw WireError("parameter layout \(l) differs from \(model)'s \(hash)") }
        try verifyChecksum(file)
        let encoding = try m["encoding"].map { (e: String) throws(WireError) -> Encoding in
            guard let v = Encoding(rawValue: e) else { throw WireError("unknown encoding \(e)") }
            return v
        } ?? .f32
        let kind = try m["kind"].map { (k: String) throws(WireError) -> ContentKind in
            guard let v = ContentKind(rawValue: k) else { throw WireError("unknown kind \(k)") }
            return v
        } ?? .weights
        func number(_ key: String) throws(WireError) -> Int {
            guard let s = m[key] else { return 0 }
            guard let v = Int(s), v >= 0 else { throw WireError("metadata \(key)=\(s.clipped(80)) is not a non-negative integer") }
            return v
        }
        let header = ModelFileHeader(model: model, layout: hash, round: try number("round"), examples: try number("examples"),
                                     encoding: encoding, kind: kind, global: m["global"],
                                     trainSeconds: m["train_seconds"].flatMap(Double.init).flatMap { $0.isFinite && $0 >= 0 ? $0 : nil },
                                     metadata: m)
        let expectedNames = Set(layout.map(\.name))
        if let extra = file.tensors.first(where: { !expectedNames.contains($0.name) }) {
            throw WireError("unexpected tensor \(extra.name) for model \(model)")
        }
        return (file, header)
    }

    /// The tensor for layout entry `e`, with the expected shape.
    static func tensor(_ e: ParameterInfo, of file: SafetensorsFile, model: String) throws(WireError) -> TensorRecord {
        guard let t = file.tensor(e.name) else { throw WireError("missing tensor \(e.name) of model \(model)") }
        guard t.shape == e.shape else {
            throw WireError("tensor \(e.name) has shape \(t.shape), expected \(e.shape) (model \(model))")
        }
        return t
    }

    /// Converts one tensor of any supported dtype to f32 (i8 needs its `scale.<name>` metadata).
    public static func floatValues(of t: TensorRecord, in file: SafetensorsFile, into out: UnsafeMutablePointer<Float>) throws(WireError) {
        let bytes = file.bytes(of: t)
        switch t.dtype {
        case .f32: Codecs.floats(fromF32: bytes, into: out)
        case .f16: Codecs.floats(fromF16: bytes, into: out)
        case .bf16: Codecs.floats(fromBF16: bytes, into: out)
        case .u8:
            var i = 0
            for b in bytes { out[i] = Float(b); i += 1 }
        case .i8:
            guard let s = file.metadata["scale." + t.name] else {
                throw WireError("i8 tensor \(t.name) has no scale.\(t.name) in the metadata")
            }
            let rows = i8ScaleRows(t.shape)
            let parts = s.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count == 1 || parts.count == rows else {
                throw WireError("i8 tensor \(t.name) has \(parts.count) scales in scale.\(t.name); expected 1 or \(rows) (one per row)")
            }
            var scales: [Float] = []
            for p in parts {
                guard let scale = Float(p), scale.isFinite, scale >= 0 else {
                    throw WireError("i8 tensor \(t.name) has an invalid scale '\(p)' in scale.\(t.name)")
                }
                scales.append(scale)
            }
            Codecs.floats(fromI8: bytes, scales: scales, into: out)
        }
    }
}
