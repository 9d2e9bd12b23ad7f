import CHalf
import XCTest

@testable import FedPiWire

final class Float16Tests: XCTestCase {
    /// Every one of the 65,536 half values converts exactly like Swift's own Float16, on both paths.
    func testAllHalfValuesDecodeExactly() {
        let all = (0...0xFFFF).map { UInt16($0) }
        var fast = [Float](repeating: 0, count: all.count), portable = fast
        fedpi_f16_to_f32(all, &fast, all.count)
        fedpi_f16_to_f32_portable(all, &portable, all.count)
        for (i, h) in all.enumerated() {
            let expected = Float(Float16(bitPattern: h))
            if expected.isNaN {
                XCTAssertTrue(fast[i].isNaN && portable[i].isNaN, "0x\(String(h, radix: 16))")
            } else {
                XCTAssertEqual(fast[i].bitPattern, expected.bitPattern, "fast 0x\(String(h, radix: 16))")
                XCTAssertEqual(portable[i].bitPattern, expected.bitPattern, "portable 0x\(String(h, radix: 16))")
            }
        }
    }

    /// Rounding to nearest even, overflow to infinity, subnormals, signed zeros, NaN: like Float16(x).
    func testEncodeMatchesSwiftFloat16() {
        var values: [Float] = [0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e9, .infinity, -.infinity, .nan,
                               0x1p-14, 0x1p-24, 0x1p-25, 0x1.8p-25, 0x1p-26, 5.96e-8, 6.1e-5, 1.00048828125, 1.0009765625,
                               Float.leastNonzeroMagnitude, Float.greatestFiniteMagnitude]
        // every half midpoint (ties) and neighbours, plus random floats of every exponent
        for h in stride(from: 0, to: 0x7C00, by: 7) {
            let a = Float(Float16(bitPattern: UInt16(h))), b = Float(Float16(bitPattern: UInt16(h + 1)))
            values += [(a + b) / 2, (a + b) / 2 + 1e-12, a.nextUp, -((a + b) / 2)]
        }
        var g = SeededGenerator(seed: 1)
        for _ in 0..<100_000 { values.append(Float(bitPattern: UInt32(truncatingIfNeeded: g.next()))) }
        var fast = [UInt16](repeating: 0, count: values.count), portable = fast
        fedpi_f32_to_f16(values, &fast, values.count)
        fedpi_f32_to_f16_portable(values, &portable, values.count)
        for (i, v) in values.enumerated() {
            let expected = Float16(v)
            if expected.isNaN {
                XCTAssertTrue(Float16(bitPattern: fast[i]).isNaN && Float16(bitPattern: portable[i]).isNaN)
            } else {
                XCTAssertEqual(fast[i], expected.bitPattern, "fast \(v)")
                XCTAssertEqual(portable[i], expected.bitPattern, "portable \(v)")
            }
        }
    }

    func testBFloat16RoundTrip() {
        let values: [Float] = [0, 1, -2.5, 3.14159, 1e-30, 1e30, 65504]
        let bytes = values.withUnsafeBufferPointer { Codecs.bf16Bytes($0) }
        var back = [Float](repeating: 0, count: values.count)
        Codecs.floats(fromBF16: bytes[...], into: &back)
        for (a, b) in zip(values, back) { XCTAssertEqual(a, b, accuracy: abs(a) * 0x1p-8) }
        XCTAssertEqual(back[1], 1)
        XCTAssertEqual(back[2], -2.5)
    }
}

import FedPiEngine
