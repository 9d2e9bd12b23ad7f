import FedPiData
import FedPiEngine
import FedPiTesting
import FedPiWire
import XCTest

@testable import FedPiFederation
import FedPiTraining

/// The server optimizers against numbers worked out by hand, their state kept only for accepted
/// rounds, its file refused when it does not fit, and a run resumed from a checkpoint and that file
/// ending bit for bit where an uninterrupted one does.
final class ServerOptimizerTests: XCTestCase {
    func update(_ d: [Float], examples: Int = 1) -> NodeUpdate { NodeUpdate(node: "n", delta: d, examples: examples) }

    func testFedAvgMAccumulatesMomentum() {
        var o = FedOpt.Options()
        o.serverLR = 1
        o.momentum = 0.9
        let s = FedOpt(.fedavgm, options: o)
        let w1 = s.aggregate(global: [0, 0], updates: [update([1, 2]), update([1, 0])])  // mean delta [1, 1]
        XCTAssertEqual(w1, [1, 1])
        let w2 = s.aggregate(global: w1, updates: [update([1, 1])])
        XCTAssertEqual(w2[0], 1 + 1.9, accuracy: 1e-6)  // v = 0.9 * 1 + 1
        XCTAssertEqual(s.state.step, 2)
    }

    func testAdamAndYogiFirstStepsWithBiasCorrection() {
        var o = FedOpt.Options()
        o.serverLR = 0.5
        o.beta1 = 0.9
        o.beta2 = 0.99
        o.tau = 1e-3
        for rule in [FedOpt.Rule.fedadam, .fedyogi] {
            let s = FedOpt(rule, options: o)
            // step 1, delta 2: m = 0.2, v = 0.04, eta_1 = 0.5 * sqrt(0.01) / 0.1 = 0.5; w = 0.5 * 0.2 / (0.2 + 1e-3)
            let w = s.aggregate(global: [1], updates: [update([2])])
            XCTAssertEqual(w[0], 1 + 0.5 * 0.2 / (0.2 + 1e-3), accuracy: 1e-6, rule.rawValue)
        }
        // step 2 with delta 0 tells them apart: Adam's v decays, Yogi's v moves by (1-b2)·d²·sign(v-d²) = +0 too,
        // so use delta 1: Adam v = 0.99*0.04 + 0.01*1 = 0.0496; Yogi v = 0.04 - 0.01*1*sign(0.04-1) = 0.05
        let adam = FedOpt(.fedadam, options: o), yogi = FedOpt(.fedyogi, options: o)
        for s in [adam, yogi] {
            _ = s.aggregate(global: [0], updates: [update([2])])
            _ = s.aggregate(global: [0], updates: [update([1])])
        }
        XCTAssertEqual(adam.state.v[0], 0.0496, accuracy: 1e-6)
        XCTAssertEqual(yogi.state.v[0], 0.05, accuracy: 1e-6)
        XCTAssertEqual(adam.state.m[0], 0.9 * 0.2 + 0.1, accuracy: 1e-6)
    }

    func testARejectedRoundLeavesTheStateAsItWas() {
        let s = FedOpt(.fedadam)
        _ = s.aggregate(global: [0, 0], updates: [update([1, 1])])
        let before = s.state
        let fold = s.fold(global: [0, 0])
        fold.add(update([5, 5]))
        _ = fold.result()  // not committed: the federation rejected the new model
        XCTAssertEqual(s.state, before)
    }

    func testStateFileRoundTripsAndRefusesWhatDoesNotFit() throws {
        let s = FedOpt.State(step: 7, m: [1, -2, 3.5], v: [0.25, 0, 9])
        let bytes = ServerOptimizerFile.encode(s, rule: .fedyogi, round: 12)
        XCTAssertEqual(try ServerOptimizerFile.decode(bytes, rule: .fedyogi, round: 12, parameters: 3), s)
        let momentum = ServerOptimizerFile.encode(FedOpt.State(step: 1, v: [1, 2, 3]), rule: .fedavgm, round: 1)
        XCTAssertEqual(try ServerOptimizerFile.decode(momentum, rule: .fedavgm, round: 1, parameters: 3).v, [1, 2, 3])
        for (rule, round, parameters, reason) in [(FedOpt.Rule.fedadam, 12, 3, "fedyogi"), (.fedyogi, 11, 3, "round 12"),
                                                 (.fedyogi, 12, 4, "not 4 f32 values")] {
            XCTAssertThrowsError(try ServerOptimizerFile.decode(bytes, rule: rule, round: round, parameters: parameters)) {
                XCTAssertTrue("\($0)".contains(reason), "\($0)")
            }
        }
        var damaged = bytes
        damaged[damaged.count - 2] ^= 0x40
        XCTAssertThrowsError(try ServerOptimizerFile.decode(damaged, rule: .fedyogi, round: 12, parameters: 3)) {
            XCTAssertTrue("\($0)".contains("checksum"), "\($0)")
        }
    }

    /// Four rounds straight against two rounds, a restart from the checkpoint and the optimizer file,
    /// and two more: the same weights, bit for bit.
    func testAResumedRunEndsBitForBitWhereAnUninterruptedOneDoes() async throws {
        let s = IDXFixtures.syntheticImages(count: 600, seed: 3)
        let train = try LabeledImages(height: 28, width: 28, pixels: s.pixels, labels: s.labels)
        let shards = try Partition.classGroups(labels: train.labels.map(Int.init), groups: [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]])
        var config = TrainingConfig()
        config.batchSize = 32
        func federation(_ rule: FedOpt.Rule, model: Model) -> Federation {
            let workers = shards.enumerated().map { LocalWorker(node: "pi-\($0.offset + 1)", model: "mnist-mlp", data: train, indices: $0.element) }
            return Federation(model: model, strategy: FedOpt(rule), workers: workers, minNodes: 3, config: config)
        }
        for rule in FedOpt.Rule.allCases {
            let straight = federation(rule, model: try ModelZoo.make("mnist-mlp", seed: 2))
            for r in 1...4 { try await straight.runRound(r) }

            let first = federation(rule, model: try ModelZoo.make("mnist-mlp", seed: 2))
            for r in 1...2 { try await first.runRound(r) }
            let checkpoint = ModelFile.encode(weightsOf: first.model, round: 2)
            let optimizer = ServerOptimizerFile.encode((first.strategy as! FedOpt).state, rule: rule, round: 2)

            let model = try ModelZoo.make("mnist-mlp", seed: 99)
            model.parameters.load(try ModelFile.decode(checkpoint, expecting: model.parameters.entries, model: "mnist-mlp").values)
            let resumed = federation(rule, model: model)
            (resumed.strategy as! FedOpt).state = try ServerOptimizerFile.decode(optimizer, rule: rule, round: 2, parameters: model.parameterCount)
            for r in 3...4 { try await resumed.runRound(r) }
            XCTAssertEqual(resumed.model.parameters.flatValues, straight.model.parameters.flatValues, rule.rawValue)
            XCTAssertEqual((resumed.strategy as! FedOpt).state, (straight.strategy as! FedOpt).state, rule.rawValue)
        }
    }

    /// The client learning-rate decay: round r's task carries learning_rate · decay^(r−1).
    func testLearningRateDecaysPerRoundInTheTask() throws {
        var config = TrainingConfig()
        config.learningRate = 0.1
        let f = Federation(model: try ModelZoo.make("mnist-mlp", seed: 1), strategy: FedAvg(), workers: [], minNodes: 1, config: config)
        XCTAssertEqual(f.roundConfig(3).learningRate, 0.1)
        f.learningRateDecay = 0.9
        for (round, expected) in [(1, 0.1), (2, 0.09), (3, 0.081)] {
            XCTAssertEqual(f.roundConfig(round).learningRate, Float(expected), accuracy: 1e-7)
            let sent = try SafetensorsFile.decode(f.globalPayload(round: round)).metadata
            XCTAssertEqual(try TrainingConfig(metadata: sent).learningRate, Float(expected), accuracy: 1e-7)
        }
        // With a floor the decay stops there: 0.9^6 = 0.53 > 0.5, 0.9^7 = 0.478 < 0.5.
        f.learningRateFloor = 0.5
        XCTAssertEqual(f.roundConfig(7).learningRate, 0.1 * Float(pow(0.9, 6.0)), accuracy: 1e-7)
        for round in [8, 9, 50, 1_000_000] { XCTAssertEqual(f.roundConfig(round).learningRate, 0.05, accuracy: 1e-7) }
    }
}
