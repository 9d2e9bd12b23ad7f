import FedPiData
import FedPiTesting
import XCTest

@testable import FedPiEngine

final class TrainingTests: XCTestCase {
    func synthetic(_ n: Int, seed: UInt64) throws -> LabeledImages {
        let s = IDXFixtures.syntheticImages(count: n, seed: seed)
        return try LabeledImages(height: 28, width: 28, pixels: s.pixels, labels: s.labels)
    }

    func testMLPLearnsSyntheticDataAndLossFalls() throws {
        let train = try synthetic(1000, seed: 1), test = try synthetic(300, seed: 2)
        let model = try ModelZoo.make("mnist-mlp", seed: 3)
        let before = try Trainer.evaluate(model, on: test)
        let summaries = try Trainer(model: model, options: .init(epochs: 3, batchSize: 32, learningRate: 0.01, optimizer: .sgd(momentum: 0.9)))
            .train(on: train)
        let after = try Trainer.evaluate(model, on: test)
        XCTAssertLessThan(before.accuracy, 0.3)
        XCTAssertGreaterThan(after.accuracy, 0.95)
        XCTAssertLessThan(summaries.last!.loss, summaries.first!.loss)
        XCTAssertLessThan(after.loss, before.loss / 4)
    }

    func testTrainingIsDeterministicForASeed() throws {
        let data = try synthetic(200, seed: 4)
        func run(_ seed: UInt64) throws -> [Float] {
            let model = try ModelZoo.make("mnist-cnn", seed: 1)
            try Trainer(model: model, options: .init(epochs: 1, batchSize: 50, learningRate: 0.01, optimizer: .adam, seed: seed)).train(on: data)
            return model.parameters.flatValues
        }
        let a = try run(1)
        XCTAssertEqual(a, try run(1))
        XCTAssertNotEqual(a, try run(2))  // other shuffling and dropout
    }

    /// Two cores with micro-batches of 8 take the same step as one pass over the whole batch
    /// (mnist-mlp has no dropout, so only float summation order differs).
    func testLanesAndMicroBatchesGiveTheSameStep() throws {
        let data = try synthetic(150, seed: 6)
        func run(lanes: Int, micro: Int) throws -> [Float] {
            let model = try ModelZoo.make("mnist-mlp", seed: 2)
            try Trainer(model: model, options: .init(epochs: 1, batchSize: 50, learningRate: 0.05, optimizer: .sgd(momentum: 0.9),
                                                     lanes: lanes, microBatch: micro)).train(on: data)
            return model.parameters.flatValues
        }
        let whole = try run(lanes: 1, micro: 50), split = try run(lanes: 2, micro: 8), three = try run(lanes: 3, micro: 7)
        let initial = try ModelZoo.make("mnist-mlp", seed: 2).parameters.flatValues
        XCTAssertGreaterThan(zip(whole, initial).map { abs($0 - $1) }.max()!, 1e-3)  // it did move
        XCTAssertLessThan(zip(whole, split).map { abs($0 - $1) }.max()!, 1e-5)
        XCTAssertLessThan(zip(whole, three).map { abs($0 - $1) }.max()!, 1e-5)
        // evaluation on several cores counts every sample once
        let model = try ModelZoo.make("mnist-mlp", seed: 2)
        let one = try Trainer.evaluate(model, on: data, microBatch: 7, lanes: 1)
        let two = try Trainer.evaluate(model, on: data, microBatch: 7, lanes: 2)
        XCTAssertEqual(one.count, 150)
        XCTAssertEqual(two.count, 150)
        XCTAssertEqual(one.accuracy, two.accuracy)
        XCTAssertEqual(one.loss, two.loss, accuracy: 1e-9)
    }

    /// The CNN's micro-batches share one batch's cached weight transforms (Winograd filters, packed
    /// conv1 weight) and sum their weight gradients in the working layout until the batch ends. The
    /// Trainer's steps, whole or in micro-batches, equal plain forward/backward/step calls with no
    /// batch brackets (nothing cached, nothing deferred): so no stale transform survives a step.
    /// One lane, so dropout draws the same masks in all three.
    func testCNNMicroBatchesGiveTheSameStepAsUncachedPasses() throws {
        let data = try synthetic(72, seed: 11)
        func run(micro: Int) throws -> [Float] {
            let model = try ModelZoo.make("mnist-cnn", seed: 4)
            try Trainer(model: model, options: .init(epochs: 1, batchSize: 24, learningRate: 0.05, optimizer: .sgd(momentum: 0.9),
                                                     seed: 1, lanes: 1, microBatch: micro)).train(on: data)
            return model.parameters.flatValues
        }
        func plain() throws -> [Float] {
            let model = try ModelZoo.make("mnist-cnn", seed: 4)
            let threads = GEMM.singleThreaded(if: true)  // as the Trainer's one lane does: same BLAS sums
            defer { GEMM.threads = threads }
            model.reseedDropout(1)
            let sgd = SGD(learningRate: 0.05, momentum: 0.9)
            var order = Array(0..<data.count), shuffler = SeededGenerator(seed: 1, stream: "shuffle")
            Trainer.shuffle(&order, using: &shuffler)
            let input = Tensor(shape: [0]), gradient = Tensor(shape: [0])
            var labels: [Int32] = []
            for start in stride(from: 0, to: order.count, by: 24) {
                model.parameters.zeroGradients()
                data.fillBatch(order[start..<(start + 24)], normalization: model.normalization, into: input, labels: &labels)
                let logits = model.forward(input, training: true)
                _ = labels.withUnsafeBufferPointer {
                    SoftmaxCrossEntropy.evaluate(logits: logits, labels: $0, gradient: gradient, gradientScale: 1 / 24)
                }
                model.backward(gradient)
                sgd.step(model.parameters)
            }
            return model.parameters.flatValues
        }
        let reference = try plain(), whole = try run(micro: 24), split = try run(micro: 5)
        let initial = try ModelZoo.make("mnist-cnn", seed: 4).parameters.flatValues
        XCTAssertGreaterThan(zip(reference, initial).map { abs($0 - $1) }.max()!, 1e-3)  // it did move
        XCTAssertLessThan(zip(reference, whole).map { abs($0 - $1) }.max()!, 1e-5)
        // five-sample micro-batches sum the gradient in another order: 1.3e-5 measured after 3 steps,
        // against moves of over 1e-3 (which a transform left from the step before would show)
        XCTAssertLessThan(zip(reference, split).map { abs($0 - $1) }.max()!, 5e-5)
    }

    func testProgressIsReportedPerBatch() throws {
        let data = try synthetic(100, seed: 5)
        var seen: [Int] = []
        try Trainer(model: try ModelZoo.make("mnist-mlp"), options: .init(epochs: 2, batchSize: 30)).train(on: data) { p in
            seen.append(p.runSamples)
            XCTAssertEqual(p.runTotal, 200)
        }
        XCTAssertEqual(seen, [30, 60, 90, 100, 130, 160, 190, 200])
    }

    /// local_steps: training stops after that many steps, inside an epoch or across epochs, and the
    /// progress totals say so.
    func testMaxStepsCapsTraining() throws {
        let data = try synthetic(100, seed: 5)
        for (steps, expected) in [(2, [30, 60]), (5, [30, 60, 90, 100, 130]), (50, [30, 60, 90, 100, 130, 160, 190, 200])] {
            var seen: [Int] = [], totals: Set<Int> = []
            let summaries = try Trainer(model: try ModelZoo.make("mnist-mlp"), options: .init(epochs: 2, batchSize: 30, maxSteps: steps))
                .train(on: data) { p in
                    seen.append(p.runSamples)
                    totals.insert(p.runTotal)
                }
            XCTAssertEqual(seen, expected, "maxSteps \(steps)")
            XCTAssertEqual(totals, [expected.last!], "maxSteps \(steps)")
            XCTAssertEqual(summaries.count, expected.last! > 100 ? 2 : 1)
        }
    }

    /// FedLC with a class the node lacks: that class's weights get no gradient from the loss (it is out
    /// of the softmax), while plain cross-entropy pushes them down.
    func testSkewAwareLossLeavesAbsentClassesAlone() throws {
        let all = try synthetic(200, seed: 6)
        let present = (0..<all.count).filter { all.label(at: $0) < 5 }
        var counts = [Int](repeating: 0, count: 10)
        for i in present { counts[all.label(at: i)] += 1 }
        func absentBiasChange(_ adjustment: LogitAdjustment?) throws -> Float {
            let model = try ModelZoo.make("mnist-mlp", seed: 2)
            let entry = model.parameters.entries.last!  // the last layer's bias
            let before = Array(model.parameters.flatValues[entry.offset..<(entry.offset + entry.count)])
            try Trainer(model: model, options: .init(epochs: 1, batchSize: 20, optimizer: .sgd(momentum: 0), logitAdjustment: adjustment))
                .train(on: all, indices: present)
            let after = Array(model.parameters.flatValues[entry.offset..<(entry.offset + entry.count)])
            return (5..<10).map { abs(after[$0] - before[$0]) }.max()!
        }
        XCTAssertEqual(try absentBiasChange(.fedLC(counts: counts, tau: 1)), 0)
        XCTAssertGreaterThan(try absentBiasChange(nil), 1e-3)
        XCTAssertGreaterThan(try absentBiasChange(.fedRS(counts: counts, alpha: 0.5)), 0)
    }

    func testRejectsLabelsTheModelCannotPredict() throws {
        let data = try LabeledImages(height: 28, width: 28, pixels: [UInt8](repeating: 0, count: 784 * 2), labels: [3, 12])
        XCTAssertThrowsError(try Trainer(model: try ModelZoo.make("mnist-mlp"), options: .init()).train(on: data)) { error in
            XCTAssertTrue(String(describing: error).contains("label 12"), "\(error)")
        }
    }

    /// Real learning on a small Fashion-MNIST subset (from the Debian package the test command installs):
    /// the CNN, 3,000 samples, one epoch, must pass 70% on 1,000 test images (chance is 10%).
    func testCNNLearnsFashionMNISTSubset() throws {
        let dir = MNISTDirectory(IDXFixtures.fashionMNIST)
        let train = try dir.load(.train), test = try dir.load(.test)
        let model = try ModelZoo.make("mnist-cnn", seed: 1)
        try Trainer(model: model, options: .init(epochs: 1, batchSize: 32, learningRate: 0.01, optimizer: .sgd(momentum: 0.9)))
            .train(on: train, indices: Array(0..<3000))
        let result = try Trainer.evaluate(model, on: test, indices: Array(0..<1000))
        print("fashion-mnist subset: test accuracy \(result.accuracy)")
        XCTAssertGreaterThan(result.accuracy, 0.70)
    }
}
