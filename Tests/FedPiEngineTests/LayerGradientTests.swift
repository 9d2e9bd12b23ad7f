import XCTest

@testable import FedPiEngine

final class LayerGradientTests: XCTestCase {
    /// Random values in ±[0.1, 1]: away from ReLU's kink by much more than the step.
    func awayFromZero(_ n: Int, seed: UInt64) -> [Float] {
        var g = SeededGenerator(seed: seed)
        return (0..<n).map { _ in
            let v = 0.1 + 0.9 * g.nextUnitFloat()
            return g.next() & 1 == 0 ? v : -v
        }
    }

    func testDense() {
        GradientCheck().check(Dense("fc", inputs: 7, outputs: 5), inputShape: [3, 7]) { awayFromZero(21, seed: 1) }
    }

    func testConv2DValid() {
        GradientCheck().check(Conv2D("conv", inputChannels: 3, outputChannels: 4, kernelSize: 3), inputShape: [2, 6, 5, 3]) {
            awayFromZero(2 * 6 * 5 * 3, seed: 2)
        }
    }

    func testConv2DSamePadding() {
        GradientCheck().check(Conv2D("conv", inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: .same),
                              inputShape: [2, 5, 4, 2]) { awayFromZero(2 * 5 * 4 * 2, seed: 3) }
        GradientCheck().check(Conv2D("conv5", inputChannels: 1, outputChannels: 2, kernelSize: 5, padding: .same),
                              inputShape: [1, 6, 6, 1]) { awayFromZero(36, seed: 4) }
    }

    func testMaxPool() {
        // distinct values 0.05 apart in a shuffled order: no ties, no argmax change within ±step
        var g = SeededGenerator(seed: 5)
        var values: [Float] = (0..<144).map { i in Float(i) * 0.05 - 3 }
        for i in stride(from: values.count - 1, to: 0, by: -1) { values.swapAt(i, Int(g.next() % UInt64(i + 1))) }
        GradientCheck(step: 1e-3).check(MaxPool2D("pool", size: 2), inputShape: [2, 4, 6, 3]) { values }
        // odd sizes: the last row/column is dropped (floor mode) and gets zero gradient
        GradientCheck(step: 1e-3).check(MaxPool2D("pool", size: 2), inputShape: [1, 5, 5, 1]) { Array(values.prefix(25)) }
    }

    func testReLU() {
        GradientCheck(step: 1e-3).check(ReLU(), inputShape: [4, 10]) { awayFromZero(40, seed: 6) }
    }

    func testDropout() {
        let layer = Dropout("drop", rate: 0.4, seed: 1)
        // the same mask for every evaluation of f
        GradientCheck().check(layer, inputShape: [3, 20], makeInput: { awayFromZero(60, seed: 7) }, before: { layer.reseed(99) })
    }

    func testFlatten() {
        GradientCheck().check(Flatten(), inputShape: [2, 3, 4, 5]) { awayFromZero(120, seed: 8) }
    }

    func testSoftmaxCrossEntropy() {
        var g = SeededGenerator(seed: 9)
        let n = 4, c = 6
        let logits = (0..<(n * c)).map { _ in g.nextUnitFloat() * 4 - 2 }
        let labels: [Int32] = [0, 5, 2, 2]
        func loss(_ l: [Float]) -> Double {
            labels.withUnsafeBufferPointer { SoftmaxCrossEntropy.evaluate(logits: Tensor(shape: [n, c], values: l), labels: $0).lossSum / Double(n) }
        }
        let grad = Tensor(shape: [0])
        _ = labels.withUnsafeBufferPointer { SoftmaxCrossEntropy.evaluate(logits: Tensor(shape: [n, c], values: logits), labels: $0, gradient: grad) }
        let h: Float = 1e-2
        for i in 0..<(n * c) {
            var p = logits, m = logits
            p[i] += h; m[i] -= h
            let numeric = Float((loss(p) - loss(m)) / Double(2 * h))
            XCTAssertEqual(grad.data[i], numeric, accuracy: 1e-3, "d/dlogit[\(i)]")
        }
        // hand-worked value: two equal logits, label 0 → loss ln 2, accuracy 1 (first max wins)
        let r = [Int32(0)].withUnsafeBufferPointer { SoftmaxCrossEntropy.evaluate(logits: Tensor(shape: [1, 2], values: [3, 3]), labels: $0) }
        XCTAssertEqual(r.lossSum, 0.693147, accuracy: 1e-5)
        XCTAssertEqual(r.correct, 1)
    }

    /// FedRS and FedLC: the gradient of the adjusted loss matches finite differences, for present and
    /// absent classes; hand-worked values for both.
    func testSkewAwareLossGradients() {
        var g = SeededGenerator(seed: 11)
        let n = 5, c = 6
        let counts = [5, 0, 20, 1, 0, 7]
        let logits = (0..<(n * c)).map { _ in g.nextUnitFloat() * 4 - 2 }
        let labels: [Int32] = [0, 2, 3, 5, 2]
        for adjustment in [LogitAdjustment.fedRS(counts: counts, alpha: 0.3), .fedRS(counts: counts, alpha: 0),
                           .fedLC(counts: counts, tau: 1.5), .fedLC(counts: counts, tau: 0),
                           .weighted(nil, counts: counts), .weighted(.fedLC(counts: counts, tau: 1), counts: counts)] {
            func loss(_ l: [Float]) -> Double {
                labels.withUnsafeBufferPointer {
                    SoftmaxCrossEntropy.evaluate(logits: Tensor(shape: [n, c], values: l), labels: $0, adjustment: adjustment).lossSum / Double(n)
                }
            }
            let grad = Tensor(shape: [0])
            let r = labels.withUnsafeBufferPointer {
                SoftmaxCrossEntropy.evaluate(logits: Tensor(shape: [n, c], values: logits), labels: $0, gradient: grad, adjustment: adjustment)
            }
            XCTAssertTrue(r.lossSum.isFinite)
            let h: Float = 1e-2
            for i in 0..<(n * c) {
                var p = logits, m = logits
                p[i] += h; m[i] -= h
                let numeric = Float((loss(p) - loss(m)) / Double(2 * h))
                XCTAssertEqual(grad.data[i], numeric, accuracy: 1e-3, "\(adjustment) d/dlogit[\(i)]")
            }
        }
        func one(_ logits: [Float], _ adjustment: LogitAdjustment) -> Double {
            [Int32(0)].withUnsafeBufferPointer {
                SoftmaxCrossEntropy.evaluate(logits: Tensor(shape: [1, logits.count], values: logits), labels: $0, adjustment: adjustment).lossSum
            }
        }
        // FedRS α = 0: the absent class's logit 3 counts as 0 → ln(1 + e^-3)
        XCTAssertEqual(one([3, 3], .fedRS(counts: [1, 0], alpha: 0)), log(1 + exp(-3.0)), accuracy: 1e-5)
        // FedLC τ = 2, counts 16 and 1: offsets 2·16^-1/4 = 1 and 2 → logits 2 and 1 → ln(1 + e^-1)
        XCTAssertEqual(one([3, 3], .fedLC(counts: [16, 1], tau: 2)), log(1 + exp(-1.0)), accuracy: 1e-5)
        // FedLC, the other class absent: the label is alone in the softmax → loss 0
        XCTAssertEqual(one([3, 9], .fedLC(counts: [4, 0], tau: 1)), 0, accuracy: 1e-6)
        // balanced class weights, counts 1 and 3: w = 4/(2·1) = 2 and 4/(2·3) = 2/3; label 0 → 2·ln 2
        XCTAssertEqual(LogitAdjustment.balancedWeights(counts: [1, 3, 0]), [2, 2.0 / 3, 1])
        XCTAssertEqual(one([3, 3], .weighted(nil, counts: [1, 3])), 2 * log(2.0), accuracy: 1e-5)
        // the weights average 1 over the node's samples
        let w = LogitAdjustment.balancedWeights(counts: counts)
        XCTAssertEqual(zip(w, counts).reduce(0) { $0 + $1.0 * Float($1.1) } / Float(counts.reduce(0, +)), 1, accuracy: 1e-6)
    }

    /// A whole small network, gradient of the real loss with respect to every parameter.
    func testWholeNetworkThroughLoss() throws {
        try checkWholeNetwork([
            Conv2D("conv1", inputChannels: 1, outputChannels: 2, kernelSize: 3, padding: .same),
            ReLU(), MaxPool2D(), Conv2D("conv2", inputChannels: 2, outputChannels: 3, kernelSize: 2),
            Flatten(), Dense("fc", inputs: 12, outputs: 3),
        ])
    }

    /// Pooling straight after a convolution writes its gradient over the convolution's output
    /// (mnist-cnn's conv2 → pool → ReLU); Winograd conv with 8 channels on the way.
    func testWholeNetworkWithPoolReusingItsInput() throws {
        try checkWholeNetwork([
            Conv2D("conv1", inputChannels: 1, outputChannels: 8, kernelSize: 3, padding: .same), ReLU(),
            Conv2D("conv2", inputChannels: 8, outputChannels: 8, kernelSize: 3, padding: .same),
            MaxPool2D(), ReLU(), Flatten(), Dense("fc", inputs: 72, outputs: 3),
        ], probes: 200, step: 2e-4)
    }

    /// Overwriting the input in max-pool backward changes nothing in the results.
    func testPoolInputReuseGivesIdenticalGradients() throws {
        func gradients(reuse: Bool) throws -> [Float] {
            let pool = MaxPool2D()
            let model = try Model(id: "t", inputShape: [6, 6, 1], classes: 3, normalization: .init(mean: 0, std: 1), layers: [
                Conv2D("conv1", inputChannels: 1, outputChannels: 4, kernelSize: 3, padding: .same), pool, ReLU(),
                Flatten(), Dense("fc", inputs: 36, outputs: 3),
            ], seed: 3)
            pool.allowInputReuse(reuse)
            var g = SeededGenerator(seed: 1)
            let logits = model.forward(Tensor(shape: [2, 6, 6, 1], values: (0..<72).map { _ in g.nextUnitFloat() - 0.5 }), training: true)
            let grad = Tensor(shape: [0])
            _ = [Int32(1), 2].withUnsafeBufferPointer { SoftmaxCrossEntropy.evaluate(logits: logits, labels: $0, gradient: grad) }
            model.backward(grad)
            return model.parameters.flatValues + Array(UnsafeBufferPointer(start: model.parameters.gradients, count: model.parameterCount))
        }
        XCTAssertEqual(try gradients(reuse: true), try gradients(reuse: false))
    }

    private func checkWholeNetwork(_ layers: [Layer], probes: Int = .max, step h: Float = 1e-3, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try Model(id: "tiny", inputShape: [6, 6, 1], classes: 3, normalization: .init(mean: 0, std: 1), layers: layers, seed: 4)
        var g = SeededGenerator(seed: 10)
        let x = (0..<(2 * 36)).map { _ in g.nextUnitFloat() * 2 - 1 }
        let labels: [Int32] = [2, 0]
        func loss() -> Double {
            let logits = model.forward(Tensor(shape: [2, 6, 6, 1], values: x), training: true)
            return labels.withUnsafeBufferPointer { SoftmaxCrossEntropy.evaluate(logits: logits, labels: $0).lossSum / 2 }
        }
        let grad = Tensor(shape: [0])
        let logits = model.forward(Tensor(shape: [2, 6, 6, 1], values: x), training: true)
        _ = labels.withUnsafeBufferPointer { SoftmaxCrossEntropy.evaluate(logits: logits, labels: $0, gradient: grad) }
        model.backward(grad)
        let analytic = Array(UnsafeBufferPointer(start: model.parameters.gradients, count: model.parameterCount))
        let p = model.parameters.values
        let step = max(1, model.parameterCount / min(probes, model.parameterCount))
        var checked = 0
        for i in stride(from: 0, to: model.parameterCount, by: step) {
            let saved = p[i]
            p[i] = saved + h
            let plus = loss()
            p[i] = saved - h
            let minus = loss()
            p[i] = saved
            let numeric = Float((plus - minus) / Double(2 * h))
            XCTAssertEqual(analytic[i], numeric, accuracy: 2e-3 * max(1, abs(numeric)), "parameter \(i)", file: file, line: line)
            checked += 1
        }
        XCTAssertGreaterThan(checked, min(probes, model.parameterCount) / 2, file: file, line: line)
        XCTAssertGreaterThan(analytic.filter { $0 != 0 }.count, model.parameterCount / 2, "most gradients are zero", file: file, line: line)
    }
}
