import FedPiData
import FedPiEngine
import FedPiTesting
import FedPiWire
import XCTest

@testable import FedPiFederation
import FedPiTraining

/// A worker that answers with a fixed delta (or a broken file, or an error).
final class FakeWorker: WorkerClient, @unchecked Sendable {
    enum Behaviour { case delta(Float, examples: Int), nan, wrongRound, fails, hangs }
    let node: String
    let behaviour: Behaviour
    var calls = 0
    init(_ node: String, _ behaviour: Behaviour) {
        self.node = node
        self.behaviour = behaviour
    }
    struct Unreachable: Error, CustomStringConvertible { var description: String { "connection refused" } }

    func train(round: Int, global: [UInt8], config: TrainingConfig) async throws -> [UInt8] {
        calls += 1
        let model = try ModelZoo.make("mnist-mlp")
        _ = try ModelFile.decode(global, expecting: model.parameters.entries, model: "mnist-mlp")
        var value: Float = 0, examples = 10, r = round
        switch behaviour {
        case .delta(let v, let e): value = v; examples = e
        case .nan: value = .nan
        case .wrongRound: r = round + 5
        case .fails: throw Unreachable()
        case .hangs: try await Task.sleep(for: .seconds(600))
        }
        let delta = [Float](repeating: value, count: model.parameterCount)
        return delta.withUnsafeBufferPointer {
            ModelFile.encode($0, layout: model.parameters.entries, model: "mnist-mlp", encoding: .f32, kind: .delta, round: r, examples: examples)
        }
    }
}

final class FederationTests: XCTestCase {
    func testAnUpdateFarLargerThanTheOthersIsRejectedInTheFirstRoundAndLater() async throws {
        let f = try federation([FakeWorker("pi-1", .delta(0.01, examples: 10)), FakeWorker("pi-2", .delta(0.012, examples: 10)),
                                FakeWorker("evil", .delta(100, examples: 10))], minNodes: 2)
        let before = f.model.parameters.flatValues
        let r1 = try await f.runRound(1)
        XCTAssertTrue(r1.completed)
        XCTAssertEqual(r1.participants.map(\.node), ["pi-1", "pi-2"])
        XCTAssertEqual(r1.failures.map(\.node), ["evil"])
        XCTAssertTrue(r1.failures[0].reason.contains("max_norm_ratio"), r1.failures[0].reason)
        for (a, b) in zip(f.model.parameters.flatValues, before) { XCTAssertEqual(a - b, 0.011, accuracy: 1e-5) }
        // later rounds screen against the last round's median as updates arrive
        XCTAssertNotNil(f.referenceNorm)
        let r2 = try await f.runRound(2)
        XCTAssertEqual(r2.failures.map(\.node), ["evil"])
        // screening off: the large update counts
        f.maxNormRatio = nil
        let r3 = try await f.runRound(3)
        XCTAssertEqual(r3.participants.count, 3)
    }

    func testAnAggregateBeyondTheWireEncodingIsRejectedAndTheModelKept() async throws {
        var config = TrainingConfig()
        config.encoding = .f16
        let f = Federation(model: try ModelZoo.make("mnist-mlp", seed: 1), strategy: FedAvg(),
                           workers: [FakeWorker("pi-1", .delta(1e5, examples: 10)), FakeWorker("pi-2", .delta(1e5, examples: 10))],
                           minNodes: 2, config: config)
        let before = f.model.parameters.flatValues
        let r = try await f.runRound(1)
        XCTAssertFalse(r.completed)
        XCTAssertTrue(r.failures.contains { $0.reason.contains("f16's range") }, "\(r.failures)")
        XCTAssertEqual(f.model.parameters.flatValues, before)
    }

    func federation(_ workers: [WorkerClient], minNodes: Int) throws -> Federation {
        var config = TrainingConfig()
        config.encoding = .f32
        return Federation(model: try ModelZoo.make("mnist-mlp", seed: 1), strategy: FedAvg(), workers: workers, minNodes: minNodes, config: config)
    }

    func testBadUpdatesAreRejectedWithReasonsAndTheRoundGoesOn() async throws {
        let f = try federation([FakeWorker("pi-1", .delta(0.5, examples: 1)), FakeWorker("pi-2", .delta(1.0, examples: 3)),
                                FakeWorker("pi-3", .nan), FakeWorker("pi-4", .wrongRound), FakeWorker("pi-5", .fails)], minNodes: 2)
        let before = f.model.parameters.flatValues
        let r = try await f.runRound(1)
        XCTAssertTrue(r.completed)
        XCTAssertEqual(r.participants.map(\.node), ["pi-1", "pi-2"])
        XCTAssertEqual(r.failures.map(\.node), ["pi-3", "pi-4", "pi-5"])
        XCTAssertTrue(r.failures[0].reason.contains("values must be finite"), r.failures[0].reason)
        XCTAssertTrue(r.failures[1].reason.contains("round 6"), r.failures[1].reason)
        XCTAssertEqual(r.failures[2].reason, "connection refused")
        // FedAvg: (0.5·1 + 1.0·3)/4 = 0.875 added to every parameter
        for (a, b) in zip(f.model.parameters.flatValues, before) { XCTAssertEqual(a - b, 0.875, accuracy: 1e-5) }
    }

    func testTooFewUpdatesLeaveTheModelUnchanged() async throws {
        let f = try federation([FakeWorker("pi-1", .delta(1, examples: 1)), FakeWorker("pi-2", .fails)], minNodes: 2)
        let before = f.model.parameters.flatValues
        let r = try await f.runRound(1)
        XCTAssertFalse(r.completed)
        XCTAssertEqual(f.model.parameters.flatValues, before)
        XCTAssertEqual(f.history.count, 1)
    }

    /// Three in-process workers with the classic class split learn a model none of them could alone.
    func testSimulatedFederationLearnsFromClassGroups() async throws {
        let s = IDXFixtures.syntheticImages(count: 1500, seed: 3), t = IDXFixtures.syntheticImages(count: 300, seed: 4)
        let train = try LabeledImages(height: 28, width: 28, pixels: s.pixels, labels: s.labels)
        let test = try LabeledImages(height: 28, width: 28, pixels: t.pixels, labels: t.labels)
        let shards = try Partition.classGroups(labels: train.labels.map(Int.init), groups: [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]])
        let workers = shards.enumerated().map { LocalWorker(node: "pi-\($0.offset + 1)", model: "mnist-mlp", data: train, indices: $0.element) }
        var config = TrainingConfig()
        config.batchSize = 32
        let f = Federation(model: try ModelZoo.make("mnist-mlp", seed: 2), strategy: FedAvg(), workers: workers, minNodes: 3, config: config)
        f.evaluate = { try Trainer.evaluate($0, on: test) }
        let start = try await f.evaluateInitial()
        for r in 1...4 { try await f.runRound(r) }
        let end = f.history.last!
        XCTAssertTrue(f.history.dropFirst().allSatisfy(\.completed))
        XCTAssertLessThan(start.testAccuracy!, 0.3)
        XCTAssertGreaterThan(end.testAccuracy!, 0.9, "federated model should know all 10 classes")
        XCTAssertGreaterThan(end.bytesUp, 0)
        XCTAssertLessThan(Double(end.bytesUp), 3 * 0.51 * 4 * 199_210, "f16 updates")
    }

    /// FedProx's proximal term keeps a worker's weights nearer the global model.
    func testProximalTermShrinksTheUpdate() async throws {
        let s = IDXFixtures.syntheticImages(count: 300, seed: 5)
        let data = try LabeledImages(height: 28, width: 28, pixels: s.pixels, labels: s.labels)
        let worker = LocalWorker(node: "pi-1", model: "mnist-mlp", data: data, indices: Array(0..<300))
        let model = try ModelZoo.make("mnist-mlp", seed: 1)
        let global = model.parameters.flatValues.withUnsafeBufferPointer {
            ModelFile.encode($0, layout: model.parameters.entries, model: "mnist-mlp", encoding: .f32)
        }
        func updateNorm(mu: Float) async throws -> Double {
            var c = TrainingConfig()
            c.proximalMu = mu
            c.epochs = 3
            c.encoding = .f32
            let (delta, _) = try ModelFile.decode(try await worker.train(round: 1, global: global, config: c),
                                                  expecting: model.parameters.entries, model: "mnist-mlp")
            return Aggregation.norm(delta)
        }
        let plain = try await updateNorm(mu: 0), prox = try await updateNorm(mu: 1)
        XCTAssertLessThan(prox, plain * 0.9)
    }

    func testConcurrentRoundEndsAtTheDeadlineWithTheNodesThatAnswered() async throws {
        let f = try federation([FakeWorker("pi-1", .delta(1, examples: 1)), FakeWorker("pi-2", .hangs), FakeWorker("pi-3", .delta(3, examples: 1))],
                               minNodes: 2)
        f.concurrent = true
        f.roundTimeout = .milliseconds(300)
        let before = f.model.parameters.flatValues
        let clock = ContinuousClock(), start = clock.now
        let r = try await f.runRound(1)
        XCTAssertLessThan(clock.now - start, .seconds(30), "the hanging worker must be cancelled")
        XCTAssertTrue(r.completed)
        XCTAssertEqual(Set(r.participants.map(\.node)), ["pi-1", "pi-3"])
        XCTAssertEqual(r.failures.map(\.node), ["pi-2"])
        XCTAssertTrue(r.failures[0].reason.contains("deadline"), r.failures[0].reason)
        for (a, b) in zip(f.model.parameters.flatValues, before) { XCTAssertEqual(a - b, 2, accuracy: 1e-5) }
    }

    func testDeadlineWithTooFewUpdatesLeavesTheModelUnchanged() async throws {
        let f = try federation([FakeWorker("pi-1", .delta(1, examples: 1)), FakeWorker("pi-2", .hangs)], minNodes: 2)
        f.concurrent = true
        f.roundTimeout = .milliseconds(200)
        let before = f.model.parameters.flatValues
        let r = try await f.runRound(4, attempt: 2)
        XCTAssertFalse(r.completed)
        XCTAssertEqual(r.attempt, 2)
        XCTAssertEqual(f.model.parameters.flatValues, before)
    }

    func testStreamingFoldsMatchTheWholeListAggregation() {
        var g = SeededGenerator(seed: 3)
        let global = (0..<50).map { _ in Float.random(in: -1...1, using: &g) }
        let updates = (0..<4).map { i in
            NodeUpdate(node: "n\(i)", delta: (0..<50).map { _ in Float.random(in: -1...1, using: &g) }, examples: i * 7 + 1)
        }
        let strategies: [Strategy] = [FedAvg(), FedAvg(clipNorm: 0.5), FedProx(mu: 0.1), AsyncMerge(a: 2, b: 1), FedMedian(), FedTrimmedMean(trim: 1)]
        for s in strategies {
            let fold = s.fold(global: global)
            for u in updates { fold.add(u) }
            let streamed = fold.result(), whole = s.aggregate(global: global, updates: updates)
            for (a, b) in zip(streamed, whole) { XCTAssertEqual(a, b, accuracy: 1e-6, s.name) }
        }
        // the weighted mean by hand for one coordinate
        let total = updates.reduce(0) { $0 + Double($1.examples) }
        let expect = Double(global[0]) + updates.reduce(0) { $0 + Double($1.delta[0]) * Double($1.examples) } / total
        XCTAssertEqual(Double(FedAvg().aggregate(global: global, updates: updates)[0]), expect, accuracy: 1e-5)
    }

    func testTrainingConfigTravelsInMetadataAndBadValuesAreRejected() throws {
        var c = TrainingConfig()
        c.epochs = 3
        c.batchSize = 32
        c.learningRate = 0.05
        c.momentum = 0.5
        c.proximalMu = 0.01
        c.encoding = .i8
        c.seed = 99
        c.loss = .fedRS(alpha: 0.25)
        c.localSteps = 40
        let back = try TrainingConfig(metadata: c.metadata)
        XCTAssertEqual(back.loss, .fedRS(alpha: 0.25))
        XCTAssertEqual(back.localSteps, 40)
        c.loss = .fedLC(tau: 0.5)
        XCTAssertEqual(try TrainingConfig(metadata: c.metadata).loss, .fedLC(tau: 0.5))
        c.loss = .crossEntropy
        XCTAssertEqual(try TrainingConfig(metadata: c.metadata).loss, .crossEntropy)
        XCTAssertEqual(back.epochs, 3)
        XCTAssertEqual(back.batchSize, 32)
        XCTAssertEqual(back.learningRate, 0.05)
        XCTAssertEqual(back.momentum, 0.5)
        XCTAssertEqual(back.proximalMu, 0.01)
        XCTAssertEqual(back.encoding, .i8)
        XCTAssertEqual(back.seed, 99)
        XCTAssertEqual(try TrainingConfig(metadata: [:]).epochs, 1, "missing entries keep the defaults")
        for (key, value) in [("epochs", "0"), ("epochs", "x"), ("batch_size", "100000"), ("lr", "nan"), ("lr", "-1"), ("momentum", "1"),
                             ("mu", "inf"), ("encoding", "f64"), ("seed", "-3"), ("loss", "focal"), ("fedrs_alpha", "1.5"),
                             ("fedrs_alpha", "nan"), ("fedlc_tau", "-1"), ("local_steps", "0"), ("local_steps", "99999999999")] {
            XCTAssertThrowsError(try TrainingConfig(metadata: ["train." + key: value]), "\(key)=\(value)") { error in
                XCTAssertTrue("\(error)".contains("train.\(key)"), "\(error)")
            }
        }
    }

    /// The task's loss reaches local training with this node's own class counts: under FedLC a node
    /// holding classes 0-4 returns a delta of exactly 0 for the other classes' output bias, under plain
    /// cross-entropy it does not; local_steps limits the samples trained.
    func testLocalTrainingUsesTheNodesOwnClassCounts() throws {
        let s = IDXFixtures.syntheticImages(count: 300, seed: 7)
        let data = try LabeledImages(height: 28, width: 28, pixels: s.pixels, labels: s.labels)
        let mine = (0..<data.count).filter { data.label(at: $0) < 5 }
        let net = try ModelZoo.make("mnist-mlp", seed: 1)
        let global = ModelFile.encode(weightsOf: net, round: 0)
        let bias = net.parameters.entries.last!
        func outputBiasDelta(_ loss: LocalLoss, steps: Int? = nil) throws -> (absent: Float, present: Float, trained: Int) {
            var config = TrainingConfig()
            config.encoding = .f32
            config.loss = loss
            config.localSteps = steps
            config.batchSize = 10
            var trained = 0
            let bytes = try LocalTraining(node: "pi-1", model: "mnist-mlp", data: data, indices: mine, lanes: 1)
                .run(round: 1, global: { global }, config: config) { trained = $0.runSamples }
            let delta = try ModelFile.decode(bytes, expecting: net.parameters.entries, model: "mnist-mlp").values
            let b = delta[bias.offset..<(bias.offset + bias.count)].map(abs)
            return (b[5...].max()!, b[..<5].max()!, trained)
        }
        let lc = try outputBiasDelta(.fedLC(tau: 1))
        XCTAssertEqual(lc.absent, 0)
        XCTAssertGreaterThan(lc.present, 0)
        XCTAssertEqual(lc.trained, mine.count)
        XCTAssertGreaterThan(try outputBiasDelta(.crossEntropy).absent, 1e-4)
        XCTAssertEqual(try outputBiasDelta(.crossEntropy, steps: 3).trained, 30)
    }

    func testGlobalPayloadCarriesTheConfigAndIsDeterministic() throws {
        let f = try federation([], minNodes: 1)
        let a = f.globalPayload(round: 3), b = f.globalPayload(round: 3)
        XCTAssertEqual(a, b, "the same round and model must encode to the same bytes (workers compare them)")
        let (_, header) = try ModelFile.decode(a, expecting: f.model.parameters.entries, model: "mnist-mlp")
        XCTAssertEqual(header.round, 3)
        XCTAssertEqual(header.metadata["train.encoding"], "f32")
        XCTAssertEqual(try TrainingConfig(metadata: header.metadata).batchSize, 64)
    }
}
