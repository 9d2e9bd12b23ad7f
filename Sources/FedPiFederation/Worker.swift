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
    /// SCAFFOLD (experiment): the fleet's control variate, shared by the in-process workers.
    public var scaffold: ControlVariates?
    var mine: [Float] = []

    public init(node: String, model: String, data: BatchProvider, indices: [Int]) {
        self.node = node
        job = LocalTraining(node: node, model: model, data: data, indices: indices)
    }

    public func train(round: Int, global: [UInt8], config: TrainingConfig) async throws -> [UInt8] {
        guard let scaffold else { return try job.run(round: round, global: { global }, config: config) }
        let server = scaffold.begin(round: round)
        if mine.isEmpty { mine = [Float](repeating: 0, count: server.count) }
        let correction = server.isEmpty ? [] : zip(server, mine).map { $0 - $1 }
        return try job.run(round: round, global: { global }, config: config, correction: correction) { delta, steps in
            // option II: cᵢ⁺ = cᵢ − c + (x − yᵢ)/(K·η/(1−β)), the mean corrected gradient over the round
            let scale = (1 - config.momentum) / (Float(max(1, steps)) * config.learningRate)
            if self.mine.count != delta.count { self.mine = [Float](repeating: 0, count: delta.count) }
            var change = [Float](repeating: 0, count: delta.count)
            for i in 0..<delta.count {
                let c = i < server.count ? server[i] : 0
                let next = self.mine[i] - c - delta[i] * scale
                change[i] = next - self.mine[i]
                self.mine[i] = next
            }
            scaffold.add(change)
        }
    }
}

/// SCAFFOLD's server control variate c (Karimireddy et al. 2020), for in-process workers: each
/// worker adds its change Δcᵢ, and c moves by their sum over all N workers when the next round starts.
public final class ControlVariates: @unchecked Sendable {
    public let workers: Int
    public private(set) var server: [Float] = []
    var pending: [Float] = []
    var round = 0
    public init(workers: Int) { self.workers = workers }

    func begin(round r: Int) -> [Float] {
        if r != round {
            if !pending.isEmpty {
                if server.isEmpty { server = [Float](repeating: 0, count: pending.count) }
                let n = Float(max(1, workers))
                for i in 0..<pending.count { server[i] += pending[i] / n }
                pending = []
            }
            round = r
        }
        return server
    }

    func add(_ change: [Float]) {
        if pending.isEmpty { pending = change; return }
        for i in 0..<change.count { pending[i] += change[i] }
    }
}
