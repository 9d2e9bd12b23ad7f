import CHalf
import CZlib
import FedPiEngine

// Every file FedPi writes (safetensors, the wire's f16/f32/i8 payloads) is little-endian and is copied
// to and from memory as is: x86-64 and arm64 are both little-endian; a big-endian host stops here.
#if _endian(big)
#error("FedPi's file and wire formats are read and written as little-endian memory: big-endian hosts are not supported")
#endif

/// Float conversions between f32 master weights and the wire's element types; all loops over memory.
public enum Codecs {
    /// f32 → little-endian binary16 bytes (round to nearest even), ≥ 1 G elements/s with F16C or on arm64.
    public static func f16Bytes(_ values: UnsafeBufferPointer<Float>) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: values.count * 2) { out, n in
            out.withMemoryRebound(to: UInt16.self) { f16(values, into: $0.baseAddress!) }
            n = values.count * 2
        }
    }

    /// f32 → binary16 into a caller's buffer of `values.count` halves.
    public static func f16(_ values: UnsafeBufferPointer<Float>, into out: UnsafeMutablePointer<UInt16>) {
        fedpi_f32_to_f16(values.baseAddress, out, values.count)
    }

    public static func floats(fromF16 bytes: ArraySlice<UInt8>, into out: UnsafeMutablePointer<Float>) {
        bytes.withUnsafeBytes { raw in
            let count = raw.count / 2
            guard count > 0, let base = raw.baseAddress else { return }
            if Int(bitPattern: base) % 2 == 0 {
                fedpi_f16_to_f32(base.assumingMemoryBound(to: UInt16.self), out, count)
            } else {
                let copy = [UInt16](unsafeUninitializedCapacity: count) { b, n in
                    memcpy(b.baseAddress!, base, count * 2)
                    n = count
                }
                fedpi_f16_to_f32(copy, out, count)
            }
        }
    }

    public static func f32Bytes(_ values: UnsafeBufferPointer<Float>) -> [UInt8] {
        Array(UnsafeRawBufferPointer(values))  // little-endian hosts only (x86_64, arm64)
    }

    public static func floats(fromF32 bytes: ArraySlice<UInt8>, into out: UnsafeMutablePointer<Float>) {
        bytes.withUnsafeBytes { raw in
            if let base = raw.baseAddress { _ = memcpy(out, base, raw.count) }
        }
    }

    /// bfloat16: the top half of an f32 (round to nearest even on encode).
    public static func bf16Bytes(_ values: UnsafeBufferPointer<Float>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * 2)
        for (i, v) in values.enumerated() {
            var b = v.bitPattern
            if v.isNaN { b |= 0x0040_0000 } else { b &+= 0x7FFF &+ ((b >> 16) & 1) }
            out[2 * i] = UInt8(truncatingIfNeeded: b >> 16)
            out[2 * i + 1] = UInt8(truncatingIfNeeded: b >> 24)
        }
        return out
    }

    public static func floats(fromBF16 bytes: ArraySlice<UInt8>, into out: UnsafeMutablePointer<Float>) {
        var i = 0, j = bytes.startIndex
        while j < bytes.endIndex {
            out[i] = Float(bitPattern: UInt32(bytes[j]) << 16 | UInt32(bytes[j + 1]) << 24)
            i += 1
            j += 2
        }
    }

    /// Symmetric 8-bit quantisation with one scale per row (`rows` equal runs of `values`, a tensor's
    /// first dimension): q = round_stochastic(v / scale), scale = max|row| / 127, so E[q·scale] = v
    /// (unbiased, which averaging across workers needs). A scale per row rather than per tensor keeps
    /// one large row (one busy unit of fc1) from coarsening the steps of all the others.
    public static func i8Bytes(_ values: UnsafeBufferPointer<Float>, rows: Int = 1, using g: inout SeededGenerator) -> (bytes: [UInt8], scales: [Float]) {
        let rows = max(1, rows), width = values.count / rows
        precondition(width * rows == values.count, "i8 rows must divide the tensor")
        var out = [UInt8](repeating: 0, count: values.count), scales = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            let row = UnsafeBufferPointer(rebasing: values[(r * width)..<((r + 1) * width)])
            var maxAbs: Float = 0
            for v in row { maxAbs = max(maxAbs, abs(v)) }
            guard maxAbs > 0, maxAbs.isFinite else { continue }
            scales[r] = maxAbs / 127
            let inverse = 127 / maxAbs
            for (i, v) in row.enumerated() {
                let q = (v * inverse + g.nextUnitFloat()).rounded(.down)
                out[r * width + i] = UInt8(bitPattern: Int8(max(-127, min(127, q))))
            }
        }
        return (out, scales)
    }

    /// Dequantises `bytes` with one scale per row (`scales.count` equal runs; one scale: the whole tensor).
    public static func floats(fromI8 bytes: ArraySlice<UInt8>, scales: [Float], into out: UnsafeMutablePointer<Float>) {
        let width = bytes.count / max(1, scales.count)
        var i = 0
        for b in bytes {
            out[i] = Float(Int8(bitPattern: b)) * scales[i / max(1, width)]
            i += 1
        }
    }

    /// CRC-32 (zlib's polynomial) of the chunks in order, as 8 lowercase hex digits.
    public static func crc32Hex(_ chunks: [ArraySlice<UInt8>]) -> String {
        var crc: UInt = 0
        for chunk in chunks {
            chunk.withUnsafeBufferPointer { b in
                var p = b.baseAddress, left = b.count
                while left > 0, let q = p {
                    let n = min(left, 1 << 30)
                    crc = CZlib.crc32(crc, q, UInt32(n))
                    p = q + n
                    left -= n
                }
            }
        }
        let h = String(crc, radix: 16)
        return String(repeating: "0", count: 8 - h.count) + h
    }

    /// Whether the fast f16 path (F16C on x86, native on arm64) is in use.
    public static var hardwareF16: Bool { fedpi_f16_hardware() != 0 }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
