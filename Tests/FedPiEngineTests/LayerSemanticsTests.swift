import CKernels
import XCTest

@testable import FedPiEngine

/// Forward passes against the PyTorch definitions, written out as plain loops.
final class LayerSemanticsTests: XCTestCase {
    /// torch.nn.functional.conv2d with weight (OC, C, KH, KW), evaluated on an NHWC input.
    func testConv2DMatchesDirectConvolution() {
        for (padding, pad) in [(Conv2D.Padding.valid, 0), (.same, 1)] {
            let n = 2, h = 7, w = 6, c = 3, oc = 5, ks = 3
            let conv = Conv2D("conv", inputChannels: c, outputChannels: oc, kernelSize: ks, padding: padding)
            let store = bindRandomParameters(conv, seed: 1)
            var g = SeededGenerator(seed: 2)
            let x = (0..<(n * h * w * c)).map { _ in g.nextUnitFloat() * 2 - 1 }
            let y = conv.forward(Tensor(shape: [n, h, w, c], values: x), training: false)
            let oh = h + 2 * pad - ks + 1, ow = w + 2 * pad - ks + 1
            XCTAssertEqual(y.shape, [n, oh, ow, oc])
            let weight = store.values(of: "conv.weight")!, bias = store.values(of: "conv.bias")!
            for b in 0..<n {
                for i in 0..<oh {
                    for j in 0..<ow {
                        for o in 0..<oc {
                            var s = Double(bias[o])
                            for ci in 0..<c {
                                for kh in 0..<ks {
                                    for kw in 0..<ks {
                                        let ih = i + kh - pad, iw = j + kw - pad
                                        guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
                                        s += Double(weight[((o * c + ci) * ks + kh) * ks + kw]) * Double(x[((b * h + ih) * w + iw) * c + ci])
                                    }
                                }
                            }
                            XCTAssertEqual(y.data[((b * oh + i) * ow + j) * oc + o], Float(s), accuracy: 1e-4)
                        }
                    }
                }
            }
        }
    }

    /// Chunked im2col (batch larger than one chunk) gives the same result as one sample at a time.
    func testConv2DChunkingDoesNotChangeResults() {
        let conv = Conv2D("conv", inputChannels: 32, outputChannels: 8, kernelSize: 3)
        _ = bindRandomParameters(conv, seed: 3)
        let n = 12, h = 24, w = 24, c = 32  // 22*22*288*12 floats > columnBudget: several chunks
        XCTAssertGreaterThan(22 * 22 * 288 * n, Conv2D.columnBudget)
        var g = SeededGenerator(seed: 4)
        let x = (0..<(n * h * w * c)).map { _ in g.nextUnitFloat() - 0.5 }
        let whole = conv.forward(Tensor(shape: [n, h, w, c], values: x), training: false).array
        let per = h * w * c, outPer = 22 * 22 * 8
        for b in [0, 5, 11] {
            let single = conv.forward(Tensor(shape: [1, h, w, c], values: Array(x[(b * per)..<((b + 1) * per)])), training: false).array
            for i in 0..<outPer { XCTAssertEqual(whole[b * outPer + i], single[i], accuracy: 1e-5) }
        }
    }

    /// mnist-cnn pools before its second ReLU; that must be the same function, with the same
    /// gradients, as PyTorch's ReLU-then-pool, including windows whose values are all ≤ 0.
    func testPoolThenReLUEqualsReLUThenPool() {
        var g = SeededGenerator(seed: 21)
        let shape = [2, 6, 6, 3]
        var x = (0..<216).map { _ in g.nextUnitFloat() * 2 - 1 }
        for i in 0..<36 { x[i] = -abs(x[i]) - 0.1 }  // whole non-positive windows
        let dyValues = (0..<54).map { _ in g.nextUnitFloat() - 0.5 }
        func run(_ layers: [Layer]) -> (y: [Float], dx: [Float]) {
            var t = Tensor(shape: shape, values: x)
            for l in layers { t = l.forward(t, training: true) }
            let y = t.array
            var d: Tensor = Tensor(shape: t.shape, values: dyValues)
            for l in layers.reversed() { d = l.backward(d, inputGradient: true)! }
            return (y, d.array)
        }
        let pytorch = run([ReLU(), MaxPool2D()]), fedpi = run([MaxPool2D(), ReLU()])
        XCTAssertEqual(pytorch.y, fedpi.y)
        XCTAssertEqual(pytorch.dx, fedpi.dx)
        XCTAssertGreaterThan(fedpi.dx.filter { $0 != 0 }.count, 10)
    }

    func testFlattenUsesPyTorchChannelMajorOrder() {
        // NHWC value encodes (h, w, c); the flat vector must be ordered c, h, w
        let h = 2, w = 3, c = 4
        var x: [Float] = []
        for i in 0..<h { for j in 0..<w { for k in 0..<c { x.append(Float(k * 100 + i * 10 + j)) } } }
        let y = Flatten().forward(Tensor(shape: [1, h, w, c], values: x), training: false)
        var expected: [Float] = []
        for k in 0..<c { for i in 0..<h { for j in 0..<w { expected.append(Float(k * 100 + i * 10 + j)) } } }
        XCTAssertEqual(y.array, expected)
    }

    func testMaxPoolValuesAndFirstMaximumWins() {
        let pool = MaxPool2D()
        // one 4x4 channel: windows [1 2;5 6] [3 4;7 8] [9 9;9 9] [0 -1;-2 -3]
        let x: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 0, -1, 9, 9, -2, -3]
        let y = pool.forward(Tensor(shape: [1, 4, 4, 1], values: x), training: false)
        XCTAssertEqual(y.array, [6, 8, 9, 0])
        let dx = pool.backward(Tensor(shape: [1, 2, 2, 1], values: [1, 2, 3, 4]), inputGradient: true)!.array
        XCTAssertEqual(dx, [0, 0, 0, 0, 0, 1, 0, 2, 3, 0, 4, 0, 0, 0, 0, 0])
    }

    /// The vectorised channel path (8 at a time, then a scalar tail) against a plain loop: 11 channels,
    /// values from 4 levels so windows tie often (the first maximum must win), odd sizes (floor mode
    /// leaves a row and a column out; their gradient must be 0), windows of 2 and 3.
    func testMaxPoolMatchesPlainLoopAcrossChannelBlocks() {
        var g = SeededGenerator(seed: 9)
        let (n, h, w, c) = (2, 7, 9, 11)
        let x = (0..<(n * h * w * c)).map { _ in Float(Int(g.nextUnitFloat() * 4)) - 1.5 }
        for size in [2, 3] {
            let oh = h / size, ow = w / size
            var expectedY = [Float](), expectedDx = [Float](repeating: 0, count: x.count)
            let dy = (0..<(n * oh * ow * c)).map { Float($0 % 13) + 1 }
            var o = 0
            for b in 0..<n {
                for i in 0..<oh {
                    for j in 0..<ow {
                        for ch in 0..<c {
                            var best = -Float.infinity, at = 0
                            for di in 0..<size {
                                for dj in 0..<size {
                                    let idx = ((b * h + i * size + di) * w + j * size + dj) * c + ch
                                    if x[idx] > best { best = x[idx]; at = idx }
                                }
                            }
                            expectedY.append(best)
                            expectedDx[at] = dy[o]
                            o += 1
                        }
                    }
                }
            }
            let pool = MaxPool2D("pool", size: size)
            XCTAssertEqual(pool.forward(Tensor(shape: [n, h, w, c], values: x), training: true).array, expectedY, "size \(size)")
            let dx = pool.backward(Tensor(shape: [n, oh, ow, c], values: dy), inputGradient: true)!.array
            XCTAssertEqual(dx, expectedDx, "size \(size)")
        }
    }

    /// ReLU backward passes the gradient where the output is > 0 and zeroes it where it is 0 (as
    /// PyTorch's threshold_backward does); 13 values cover the 8-wide path and the scalar tail.
    /// Flatten's transpose: 4×4 shuffled blocks plus the row and column edges that do not fill one.
    func testTransposeAtEverySizeRemainder() {
        for (rows, cols) in [(144, 64), (5, 7), (8, 4), (3, 3), (1, 9), (9, 1), (6, 10)] {
            let src = (0..<(rows * cols)).map { Float($0) }
            var dst = [Float](repeating: -1, count: rows * cols)
            fedpi_transpose(src, rows, cols, &dst)
            var expected = dst
            for r in 0..<rows { for c in 0..<cols { expected[c * rows + r] = src[r * cols + c] } }
            XCTAssertEqual(dst, expected, "\(rows)×\(cols)")
        }
    }

    func testTensorReserveKeepsValues() {
        let t = Tensor(shape: [3], values: [1, 2, 3])
        t.reserve(2)
        XCTAssertEqual(t.capacity, 3)
        t.reserve(1000)
        XCTAssertGreaterThanOrEqual(t.capacity, 1000)
        XCTAssertEqual(t.shape, [3])
        XCTAssertEqual(t.array, [1, 2, 3])
    }

    func testReLUBackwardKeepsGradientOnlyWhereOutputIsPositive() {
        let relu = ReLU()
        let x: [Float] = [1, -2, 0, 3, -0.5, 4, 5, -6, 7, 0, -8, 9, 0.25]
        let y = relu.forward(Tensor(shape: [1, 13], values: x), training: true).array
        XCTAssertEqual(y, x.map { max($0, 0) })
        let dy = (1...13).map { Float($0) * 10 }
        let dx = relu.backward(Tensor(shape: [1, 13], values: dy), inputGradient: true)!.array
        XCTAssertEqual(dx, zip(x, dy).map { $0 > 0 ? $1 : 0 })
    }

    func testDropoutKeepsExpectationAndIsIdentityInEvaluation() {
        let d = Dropout("d", rate: 0.25, seed: 1)
        let x = [Float](repeating: 1, count: 100_000)
        let y = d.forward(Tensor(shape: [1, x.count], values: x), training: true).array
        let zeros = y.filter { $0 == 0 }.count
        XCTAssertEqual(Double(zeros) / Double(x.count), 0.25, accuracy: 0.01)
        XCTAssertEqual(y.reduce(0, +) / Float(x.count), 1, accuracy: 0.02)
        XCTAssertTrue(y.allSatisfy { $0 == 0 || abs($0 - 4.0 / 3.0) < 1e-6 })
        let e = d.forward(Tensor(shape: [1, 4], values: [1, 2, 3, 4]), training: false).array
        XCTAssertEqual(e, [1, 2, 3, 4])
    }

    /// The C mask kernel draws the generator's stream field by field like a plain loop would: for an
    /// 8-bit rate (0.25, vector path) and a 16-bit one (0.3), lengths that are not multiples of 8, and
    /// over successive calls (the state it hands back continues the stream). Backward replays the mask.
    func testDropoutMaskIsTheGeneratorStreamFieldByField() {
        for (rate, bits) in [(Float(0.25), 8), (0.3, 16)] {
            let d = Dropout("d", rate: rate, seed: 7)
            var reference = SeededGenerator(seed: 7, stream: "dropout.d")
            let keep = 1 - rate
            let threshold = UInt64((Double(keep) * Double(1 << bits)).rounded())
            for count in [1003, 8, 5, 64] {
                let x = (0..<count).map { Float($0 % 17) - 8.5 }  // no zeros, so the mask shows in y
                let y = d.forward(Tensor(shape: [1, count], values: x), training: true).array
                var expected = [Float](), fieldsLeft = 0, draw: UInt64 = 0
                for v in x {
                    if fieldsLeft == 0 { draw = reference.next(); fieldsLeft = 64 / bits }
                    expected.append((draw & ((1 << UInt64(bits)) - 1)) < threshold ? v * (1 / keep) : 0)
                    draw >>= UInt64(bits)
                    fieldsLeft -= 1
                }
                XCTAssertEqual(y, expected, "rate \(rate), \(count) elements")
                let dx = d.backward(Tensor(shape: [1, count], values: [Float](repeating: 1, count: count)), inputGradient: true)!.array
                XCTAssertEqual(dx, expected.map { $0 == 0 ? 0 : 1 / keep }, "backward mask, rate \(rate)")
            }
        }
    }
}

final class WinogradTests: XCTestCase {
    /// Winograd and im2col agree on outputs, input gradients and weight gradients, for valid and same
    /// padding, even and odd output sizes, and channel counts that are not multiples of 8; with the
    /// AVX2 kernels (where the CPU has them) and with the portable ones the Pi runs.
    func testWinogradMatchesIm2col() {
        for portable in [false, true] {
            fedpi_kernels_prefer_portable(portable ? 1 : 0)
            defer { fedpi_kernels_prefer_portable(0) }
            if portable { XCTAssertEqual(fedpi_kernels_avx2(), 0, "the portable kernels are not in use") }
            compareWinogradWithIm2col(portable: portable)
        }
    }

    private func compareWinogradWithIm2col(portable: Bool) {
        let cases: [(n: Int, h: Int, w: Int, c: Int, oc: Int, padding: Conv2D.Padding)] = [
            (2, 26, 26, 32, 64, .valid), (3, 7, 6, 3, 10, .valid), (2, 5, 8, 9, 5, .same), (1, 4, 4, 16, 8, .same), (2, 3, 3, 8, 8, .valid),
        ]
        for k in cases {
            var g = SeededGenerator(seed: UInt64(k.h * 100 + k.c))
            let x = (0..<(k.n * k.h * k.w * k.c)).map { _ in g.nextUnitFloat() * 2 - 1 }
            let results = [Conv2D.Algorithm.im2col, .winograd].map { algorithm in
                let conv = Conv2D("conv", inputChannels: k.c, outputChannels: k.oc, kernelSize: 3, padding: k.padding)
                conv.algorithm = algorithm
                XCTAssertEqual(conv.usesWinograd, algorithm == .winograd)
                return convolutionPasses(conv, input: Tensor(shape: [k.n, k.h, k.w, k.c], values: x))
            }
            // Rounding, not logic: F(4×4, 3×3)'s transform constants (up to 8 in Aᵀ, ⅙ and 1⁄24 in G)
            // give a float32 error of about 8.6e-7 of Σ|x·w| against float64 (im2col: 1.7e-7, measured
            // in numpy on this 26×26×32→64 case). With this test's unscaled ±1 weights Σ|x·w| is ~72
            // per output, so up to ~1.2e-4 of max(1, |y|) is expected; a wrong transform errs by ~1.
            assertConvolutionsAgree(results[0], results[1], within: 5e-4, "\(k), portable kernels: \(portable)")
        }
    }

    /// The direct one-channel kernel (conv1) against im2col: outputs, input gradients and weight and
    /// bias gradients, for 3×3 (the unrolled path) and 5×5 kernels, channel counts with and without a
    /// remainder of 8, AVX2 and portable.
    func testDirectOneChannelConvolutionMatchesIm2col() {
        let cases: [(n: Int, h: Int, w: Int, ks: Int, oc: Int)] = [(2, 28, 28, 3, 32), (3, 7, 6, 3, 10), (2, 9, 8, 5, 12), (1, 3, 3, 3, 3)]
        for portable in [false, true] {
            fedpi_kernels_prefer_portable(portable ? 1 : 0)
            defer { fedpi_kernels_prefer_portable(0) }
            for k in cases {
                var g = SeededGenerator(seed: UInt64(k.h * 10 + k.ks))
                let x = (0..<(k.n * k.h * k.w)).map { _ in g.nextUnitFloat() * 2 - 1 }
                let results = [Conv2D.Algorithm.im2col, .direct].map { algorithm in
                    let conv = Conv2D("conv", inputChannels: 1, outputChannels: k.oc, kernelSize: k.ks)
                    conv.algorithm = algorithm
                    XCTAssertEqual(conv.usesDirect, algorithm == .direct)
                    return convolutionPasses(conv, input: Tensor(shape: [k.n, k.h, k.w, 1], values: x))
                }
                // the same products summed in another order (and fused on AVX2): float rounding only
                assertConvolutionsAgree(results[0], results[1], within: 1e-5, "\(k), portable kernels: \(portable)")
            }
        }
    }

    func testDirectGradientCheck() {
        let conv = Conv2D("conv", inputChannels: 1, outputChannels: 10, kernelSize: 3)
        XCTAssertTrue(conv.usesDirect)
        GradientCheck().check(conv, inputShape: [2, 5, 6, 1]) {
            var g = SeededGenerator(seed: 13)
            return (0..<60).map { _ in g.nextUnitFloat() * 2 - 1 }
        }
    }

    func testAutomaticChoice() {
        XCTAssertFalse(Conv2D("c", inputChannels: 1, outputChannels: 32, kernelSize: 3).usesWinograd)  // conv1
        XCTAssertTrue(Conv2D("c", inputChannels: 1, outputChannels: 32, kernelSize: 3).usesDirect)
        XCTAssertFalse(Conv2D("c", inputChannels: 1, outputChannels: 32, kernelSize: 3, padding: .same).usesDirect)
        XCTAssertFalse(Conv2D("c", inputChannels: 32, outputChannels: 64, kernelSize: 3).usesDirect)
        XCTAssertTrue(Conv2D("c", inputChannels: 32, outputChannels: 64, kernelSize: 3).usesWinograd)  // conv2
        XCTAssertFalse(Conv2D("c", inputChannels: 32, outputChannels: 64, kernelSize: 5).usesWinograd)
        let forced = Conv2D("c", inputChannels: 32, outputChannels: 64, kernelSize: 3)
        forced.algorithm = .im2col
        XCTAssertFalse((forced.replica() as! Conv2D).usesWinograd)
    }

    func testWinogradGradientCheck() {
        let conv = Conv2D("conv", inputChannels: 8, outputChannels: 8, kernelSize: 3, padding: .same)
        conv.algorithm = .winograd
        GradientCheck().check(conv, inputShape: [2, 5, 6, 8]) {
            var g = SeededGenerator(seed: 12)
            return (0..<480).map { _ in g.nextUnitFloat() * 2 - 1 }
        }
    }
}

/// Output, input gradient and parameter gradients of one forward and backward pass with random
/// parameters and a random output gradient, of which about `density` is nonzero.
private func convolutionPasses(_ conv: Conv2D, input: Tensor, density: Float = 1, inputGradient: Bool = true) -> [[Float]] {
    let store = bindRandomParameters(conv, seed: 5)
    let y = conv.forward(input, training: true)
    var gy = SeededGenerator(seed: 6)
    let dy = Tensor(shape: y.shape, values: (0..<y.count).map { _ in gy.nextUnitFloat() < density ? gy.nextUnitFloat() - 0.5 : 0 })
    let dx = conv.backward(dy, inputGradient: inputGradient)?.array ?? []
    return [y.array, dx, Array(UnsafeBufferPointer(start: store.gradients, count: store.count))]
}

/// Largest difference relative to max(1, |value|) below `bound` for each of the passes' results.
private func assertConvolutionsAgree(_ a: [[Float]], _ b: [[Float]], within bound: Float, _ context: String,
                                     file: StaticString = #filePath, line: UInt = #line) {
    for (what, (x, y)) in zip(["output", "input gradient", "parameter gradient"], zip(a, b)) {
        XCTAssertEqual(x.count, y.count, file: file, line: line)
        let worst = zip(x, y).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? 0
        XCTAssertLessThan(worst, bound, "\(what) differs for \(context)", file: file, line: line)
    }
}

/// The backward pass over the output gradient's nonzeros (`fedpi_conv_sparse_backward`).
final class SparseConvolutionBackwardTests: XCTestCase {
    private static let cases: [(n: Int, h: Int, w: Int, c: Int, oc: Int, ks: Int, padding: Conv2D.Padding)] = [
        (2, 26, 26, 32, 64, 3, .valid),  // conv2: whole 96-float blocks
        (1, 10, 9, 40, 16, 3, .same),    // a block and a 24-float tail, patches crossing the padding
        (3, 7, 6, 3, 10, 3, .valid),     // 9-float rows: tail only
        (2, 5, 8, 9, 5, 3, .same),
        (2, 9, 8, 4, 6, 5, .same),       // 5×5 kernel (im2col layer)
        (1, 3, 3, 8, 8, 3, .valid),      // one output pixel
    ]

    /// Forced onto the sparse pass, each case agrees with the dense pass (im2col) on input and
    /// parameter gradients, for output gradients 10% and 100% nonzero, with and without the input
    /// gradient, on the AVX2 kernels (where the CPU has them) and the portable ones.
    func testSparsePassMatchesDensePass() {
        for portable in [false, true] {
            fedpi_kernels_prefer_portable(portable ? 1 : 0)
            defer { fedpi_kernels_prefer_portable(0) }
            for k in Self.cases {
                var g = SeededGenerator(seed: UInt64(k.h * 100 + k.c))
                let x = (0..<(k.n * k.h * k.w * k.c)).map { _ in g.nextUnitFloat() * 2 - 1 }
                for density: Float in [0.1, 1] {
                    for inputGradient in [true, false] {
                        let results = [0, 1].map { limit in
                            let conv = Conv2D("conv", inputChannels: k.c, outputChannels: k.oc, kernelSize: k.ks, padding: k.padding)
                            conv.algorithm = .im2col
                            conv.sparseLimit = limit
                            let r = convolutionPasses(conv, input: Tensor(shape: [k.n, k.h, k.w, k.c], values: x),
                                                      density: density, inputGradient: inputGradient)
                            XCTAssertEqual(conv.lastBackwardWasSparse, limit == 1)
                            return r
                        }
                        // the same products summed in another order: float rounding only, up to ~1.3e-5 for
                        // conv2's 1,152-term weight-gradient sums at 100%; a wrong index errs by ~0.1–1
                        assertConvolutionsAgree(results[0], results[1], within: 5e-5,
                                                "\(k), density \(density), input gradient \(inputGradient), portable \(portable)")
                    }
                }
            }
        }
    }

    /// The default limit takes the sparse pass for a gradient 5% nonzero and declines a dense one,
    /// which then gives bit for bit what the layer gives with the sparse pass turned off; the direct
    /// one-channel kernel never takes it.
    func testLimitChoosesThePass() {
        var g = SeededGenerator(seed: 3)
        let x = (0..<(2 * 12 * 12 * 16)).map { _ in g.nextUnitFloat() - 0.5 }
        for algorithm in [Conv2D.Algorithm.winograd, .im2col] {
            let sparse = Conv2D("conv", inputChannels: 16, outputChannels: 24, kernelSize: 3)
            sparse.algorithm = algorithm
            _ = convolutionPasses(sparse, input: Tensor(shape: [2, 12, 12, 16], values: x), density: 0.05)
            XCTAssertTrue(sparse.lastBackwardWasSparse, "\(algorithm)")
            let results = [8, 0].map { limit in
                let conv = Conv2D("conv", inputChannels: 16, outputChannels: 24, kernelSize: 3)
                conv.algorithm = algorithm
                conv.sparseLimit = limit
                let r = convolutionPasses(conv, input: Tensor(shape: [2, 12, 12, 16], values: x), density: 0.5)
                XCTAssertFalse(conv.lastBackwardWasSparse, "\(algorithm)")
                return r
            }
            XCTAssertEqual(results[0], results[1], "\(algorithm): declining the sparse pass changed the result")
        }
        let direct = Conv2D("conv", inputChannels: 1, outputChannels: 8, kernelSize: 3)
        direct.sparseLimit = 1
        _ = convolutionPasses(direct, input: Tensor(shape: [1, 6, 6, 1], values: Array(x.prefix(36))), density: 0.05)
        XCTAssertFalse(direct.lastBackwardWasSparse)
    }

    /// In one batch a Winograd layer can take the sparse pass for one micro-batch and Winograd for the
    /// next; the two working layouts of the weight gradient both reach the store at `endBatch`.
    func testSparseAndWinogradPassesShareABatch() {
        var g = SeededGenerator(seed: 4)
        let x = Tensor(shape: [2, 10, 10, 16], values: (0..<(2 * 10 * 10 * 16)).map { _ in g.nextUnitFloat() - 0.5 })
        let dys = [0.05, 1].map { density in
            Tensor(shape: [2, 8, 8, 24], values: (0..<(2 * 8 * 8 * 24)).map { _ in g.nextUnitFloat() < density ? g.nextUnitFloat() - 0.5 : 0 })
        }
        func gradients(batched: Bool) -> [Float] {
            let conv = Conv2D("conv", inputChannels: 16, outputChannels: 24, kernelSize: 3)
            conv.algorithm = .winograd
            let store = bindRandomParameters(conv, seed: 9)
            if batched { conv.beginBatch() }
            var paths: [Bool] = []
            for dy in dys {
                _ = conv.forward(x, training: true)
                _ = conv.backward(dy, inputGradient: true)
                paths.append(conv.lastBackwardWasSparse)
            }
            if batched { conv.endBatch() }
            XCTAssertEqual(paths, [true, false])
            return Array(UnsafeBufferPointer(start: store.gradients, count: store.count))
        }
        let batched = gradients(batched: true), separate = gradients(batched: false)
        let worst = zip(batched, separate).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 1
        XCTAssertLessThan(worst, 1e-5)
        XCTAssertGreaterThan(separate.map(abs).max() ?? 0, 0.1)
    }
}

/// Dense's input and weight gradients over the output gradient's nonzeros (`GEMM.sparse`).
final class SparseDenseBackwardTests: XCTestCase {
    /// With the sparse products forced (limit 1) and off (limit 0), a Dense layer gives the same input
    /// and parameter gradients, alone and summed over two micro-batches of a batch, for an output
    /// gradient 20% nonzero and a dense one, and so does the default limit (3).
    func testSparseProductsMatchDenseOnes() {
        var g = SeededGenerator(seed: 8)
        let inputs = 300, outputs = 24
        let xs = (0..<2).map { _ in Tensor(shape: [5, inputs], values: (0..<(5 * inputs)).map { _ in g.nextUnitFloat() - 0.5 }) }
        for density: Float in [0.2, 1] {
            let dys = (0..<2).map { _ in
                Tensor(shape: [5, outputs], values: (0..<(5 * outputs)).map { _ in g.nextUnitFloat() < density ? g.nextUnitFloat() - 0.5 : 0 })
            }
            for batched in [false, true] {
                let results = [0, 1, 3].map { limit -> [Float] in
                    let dense = Dense("fc", inputs: inputs, outputs: outputs)
                    dense.sparseLimit = limit
                    let store = bindRandomParameters(dense, seed: 2)
                    if batched { dense.beginBatch() }
                    var dx: [Float] = []
                    for (x, dy) in zip(xs, dys) {
                        _ = dense.forward(x, training: true)
                        dx += dense.backward(dy, inputGradient: true)!.array
                    }
                    if batched { dense.endBatch() }
                    return dx + Array(UnsafeBufferPointer(start: store.gradients, count: store.count))
                }
                for (limit, r) in zip([1, 3], results.dropFirst()) {
                    let worst = zip(results[0], r).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? 1
                    XCTAssertLessThan(worst, 1e-5, "limit \(limit), density \(density), batched \(batched)")
                }
            }
        }
    }
}
