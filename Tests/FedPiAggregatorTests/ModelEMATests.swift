import FedPiData
import FedPiEngine
import FedPiFederation
import FedPiTesting
import FedPiTraining
import FedPiWire
import Foundation
import Logging
import XCTest

@testable import FedPiAggregator

/// `model_ema`: the served model is the moving average of the global models, evaluation sees it,
/// and a run resumed from its files (also after a kill between the checkpoint and the average) ends
/// bit for bit where an uninterrupted one does.
final class ModelEMATests: XCTestCase {
    var train: LabeledImages!
    var shards: [[Int]] = []

    override func setUpWithError() throws {
        let s = IDXFixtures.syntheticImages(count: 480, seed: 5)
        train = try LabeledImages(height: 28, width: 28, pixels: s.pixels, labels: s.labels)
        shards = try Partition.classGroups(labels: train.labels.map(Int.init), groups: [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    }

    func federation(_ model: Model, ema: Float) -> Federation {
        var config = TrainingConfig()
        config.batchSize = 32
        let workers = shards.enumerated().map { LocalWorker(node: "pi-\($0.offset + 1)", model: "mnist-mlp", data: train, indices: $0.element) }
        let f = Federation(model: model, strategy: FedOpt(.fedavgm), workers: workers, minNodes: 2, config: config)
        f.modelEMA = ema
        return f
    }

    func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func testTheServedModelIsTheMovingAverageAndIsWhatIsEvaluated() async throws {
        let ema: Float = 0.6
        let f = federation(try ModelZoo.make("mnist-mlp", seed: 3), ema: ema)
        var expected = f.model.parameters.flatValues
        var evaluated: [[Float]] = []
        f.evaluate = { model in
            evaluated.append(model.parameters.flatValues)
            return nil
        }
        for r in 1...3 {
            try await f.runRound(r)
            let global = f.model.parameters.flatValues
            for i in 0..<global.count { expected[i] = ema * expected[i] + (1 - ema) * global[i] }
            XCTAssertTrue(f.average == expected, "round \(r): off by \(maxDifference(f.average, expected))")
            XCTAssertTrue(evaluated.last == expected, "round \(r): the evaluation does not see the average")
            XCTAssertGreaterThan(maxDifference(expected, global), 1e-4, "round \(r): the average is the global model")
        }
        XCTAssertTrue(f.servedModel.parameters.flatValues == expected)
        XCTAssertFalse(f.servedModel === f.model)

        let off = federation(try ModelZoo.make("mnist-mlp", seed: 3), ema: 0)
        try await off.runRound(1)
        XCTAssertTrue(off.average.isEmpty)
        XCTAssertTrue(off.servedModel === off.model)
    }

    func testAResumedRunEndsBitForBitAlsoAfterAKillBetweenCheckpointAndAverage() async throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("fedpi-ema-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        var config = FleetConfig()
        config.model = "mnist-mlp"
        config.stateDir = state
        config.modelEMA = 0.5
        let aggregator = Aggregator(config: config, logger: Logger(label: "test"))

        let straight = federation(try ModelZoo.make("mnist-mlp", seed: 4), ema: 0.5)
        for r in 1...4 { try await straight.runRound(r) }

        let first = federation(try ModelZoo.make("mnist-mlp", seed: 4), ema: 0.5)
        try await first.runRound(1)
        let averageOfRound1 = ModelFile.encode(weightsOf: first.servedModel, round: 1)
        try await first.runRound(2)
        let checkpoint = ModelFile.encode(weightsOf: first.model, round: 2)
        let optimizer = ServerOptimizerFile.encode((first.strategy as! FedOpt).state, rule: .fedavgm, round: 2)
        let averageOfRound2 = ModelFile.encode(weightsOf: first.servedModel, round: 2)

        // killed after checkpoint 2 (round 1's average on disk), and killed after both
        for (name, file) in [("kill between the two writes", averageOfRound1), ("both written", averageOfRound2)] {
            try FileIO.writeAtomically(file, to: aggregator.averagePath)
            let model = try ModelZoo.make("mnist-mlp", seed: 99)
            model.parameters.load(try ModelFile.decode(checkpoint, expecting: model.parameters.entries, model: "mnist-mlp").values)
            let resumed = federation(model, ema: 0.5)
            (resumed.strategy as! FedOpt).state = try ServerOptimizerFile.decode(optimizer, rule: .fedavgm, round: 2,
                                                                                  parameters: model.parameterCount)
            try aggregator.resumeAverage(resumed, round: 2)
            XCTAssertTrue(resumed.average == first.average, "\(name): off by \(maxDifference(resumed.average, first.average))")
            for r in 3...4 { try await resumed.runRound(r) }
            XCTAssertTrue(resumed.model.parameters.flatValues == straight.model.parameters.flatValues, name)
            XCTAssertTrue(resumed.average == straight.average, "\(name): off by \(maxDifference(resumed.average, straight.average))")
        }

        // an average of another round starts again from the checkpoint; a damaged one is refused
        let model = try ModelZoo.make("mnist-mlp", seed: 99)
        let stale = federation(model, ema: 0.5)
        try FileIO.writeAtomically(ModelFile.encode(weightsOf: model, round: 7), to: aggregator.averagePath)
        try aggregator.resumeAverage(stale, round: 2)
        XCTAssertTrue(stale.average.isEmpty)
        try FileManager.default.removeItem(atPath: aggregator.averagePath)
        try aggregator.resumeAverage(stale, round: 2)
        XCTAssertTrue(stale.average.isEmpty)
        var damaged = averageOfRound2
        damaged[damaged.count - 3] ^= 0x10
        try FileIO.writeAtomically(damaged, to: aggregator.averagePath)
        XCTAssertThrowsError(try aggregator.resumeAverage(stale, round: 2)) {
            XCTAssertTrue("\($0)".contains("cannot resume the moving average"), "\($0)")
        }
    }

    func testTheFleetFileSetsAndBoundsModelEMA() throws {
        let nodes = "\n[[nodes]]\nname = \"pi-1\"\nurl = \"http://127.0.0.1:8470\"\n"
        XCTAssertEqual(try FleetConfig(text: nodes).modelEMA, Double(Federation.defaultModelEMA))
        XCTAssertEqual(try FleetConfig(text: "model_ema = 0\n" + nodes).modelEMA, 0)
        XCTAssertEqual(try FleetConfig(text: "model_ema = 0.8\n" + nodes).modelEMA, 0.8)
        for bad in ["1", "-0.1", "1e9", "\"half\""] {
            XCTAssertThrowsError(try FleetConfig(text: "model_ema = \(bad)\n" + nodes), bad) {
                XCTAssertTrue("\($0)".contains("model_ema"), "\($0)")
            }
        }
    }
}
