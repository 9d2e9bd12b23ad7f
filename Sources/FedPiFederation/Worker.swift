import FedPiEngine
import FedPiWire

/// What the aggregator tells a worker to do with the global model it sends.
public struct TrainingConfig: Sendable {
    public var epochs = 1
    public var batchSize = 64
    public var learningRate: Float = 0.01
    public var momentum: Float = 0.9
    public var proximalMu: Float = 0
    /// Encoding of the update the worker returns (always a delta).
    public var encoding: Encoding = .f16
    public var seed: UInt64 = 1
    public init() {}
}

/// The aggregator's only view of a worker: HTTP in production, in memory for `fedpi simulate` and tests.
public protocol WorkerClient: AnyObject, Sendable {
    var node: String { get }
    /// Trains on the encoded global model for `round` and returns the encoded update (a safetensors
    /// delta with FedPi metadata). Throws when the node cannot deliver.
    func train(round: Int, global: [UInt8], config: TrainingConfig) async throws -> [UInt8]
}

/// A worker in this process: its own shard of a data set, the same code path as a board's worker
/// (decode the global model, train, encode the delta).
public final class LocalWorker: WorkerClient, @unchecked Sendable {
    public let node: String
    let modelID: String
    let data: BatchProvider
    let indices: [Int]

    public init(node: String, model: String, data: BatchProvider, indices: [Int]) {
        self.node = node
        self.modelID = model
        self.data = data
        self.indices = indices
    }

    public func train(round: Int, global: [UInt8], config: TrainingConfig) async throws -> [UInt8] {
        let model = try ModelZoo.make(modelID, seed: config.seed)
        let (start, _) = try ModelFile.decode(global, expecting: model.parameters.entries, model: modelID)
        model.parameters.load(start)
        // every round and node gets its own shuffling and dropout stream
        let seed = config.seed &* 1_000_003 &+ UInt64(round) &* 7919 &+ UInt64(abs(node.hashValueStable))
        let trainer = Trainer(model: model, options: TrainingOptions(
            epochs: config.epochs, batchSize: config.batchSize, learningRate: config.learningRate,
            optimizer: .sgd(momentum: config.momentum), seed: seed, proximalMu: config.proximalMu))
        try trainer.train(on: data, indices: indices)
        let delta = ModelFile.delta(model.parameters.flatValues, from: start)
        return delta.withUnsafeBufferPointer {
            ModelFile.encode($0, layout: model.parameters.entries, model: modelID, encoding: config.encoding, kind: .delta,
                             round: round, examples: indices.count, seed: seed)
        }
    }
}

extension String {
    /// FNV-1a: stable across runs (Swift's hashValue is randomly seeded per process).
    var hashValueStable: Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return Int(truncatingIfNeeded: h >> 1)
    }
}
