import FedPiEngine
import FedPiTraining
import FedPiWire

/// The aggregator's only view of a worker: HTTP in production, in memory for `fedpi simulate` and tests.
public protocol WorkerClient: AnyObject, Sendable {
    var node: String { get }
    /// Trains on the encoded global model for `round` and returns the encoded update (a safetensors
    /// delta with FedPi metadata). Throws when the node cannot deliver.
    func train(round: Int, global: [UInt8], config: TrainingConfig) async throws -> [UInt8]
}

/// A worker in this process: its own shard of a data set, the same code path as a board's worker.
public final class LocalWorker: WorkerClient, @unchecked Sendable {
    public let node: String
    let job: LocalTraining

    public init(node: String, model: String, data: BatchProvider, indices: [Int]) {
        self.node = node
        job = LocalTraining(node: node, model: model, data: data, indices: indices)
    }

    public func train(round: Int, global: [UInt8], config: TrainingConfig) async throws -> [UInt8] {
        try job.run(round: round, global: { global }, config: config)
    }
}
