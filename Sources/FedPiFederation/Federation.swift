import FedPiEngine
import FedPiWire

/// What happened in one round; failures are kept beside the results.
public struct RoundRecord: Sendable {
    public var round: Int
    /// True when enough updates arrived and the global model moved.
    public var completed: Bool
    public var participants: [String]
    public var failures: [NodeFailure]
    public var testAccuracy: Double?
    public var testLoss: Double?
    public var seconds: Double
    public var bytesDown: Int
    public var bytesUp: Int
}

/// The round logic of the aggregator, independent of transport: dispatch the global model to every
/// worker, validate what comes back, aggregate with the strategy when at least `minNodes` updates are
/// usable, otherwise record the round as failed and leave the model unchanged.
public final class Federation: @unchecked Sendable {
    public let model: Model
    public let strategy: Strategy
    public let workers: [WorkerClient]
    public let minNodes: Int
    public var config: TrainingConfig
    /// Central evaluation of the global model after each round (nil: none).
    public var evaluate: ((Model) throws -> EvaluationResult)?
    /// Called with every record as soon as its round ends.
    public var onRound: ((RoundRecord) -> Void)?
    public private(set) var history: [RoundRecord] = []

    public init(model: Model, strategy: Strategy, workers: [WorkerClient], minNodes: Int, config: TrainingConfig) {
        self.model = model
        self.strategy = strategy
        self.workers = workers
        self.minNodes = max(1, minNodes)
        self.config = config
    }

    /// Round 0: the initial model's evaluation, nothing trained.
    public func evaluateInitial() throws -> RoundRecord {
        let e = try evaluate?(model)
        let record = RoundRecord(round: 0, completed: true, participants: [], failures: [],
                                 testAccuracy: e?.accuracy, testLoss: e?.loss, seconds: 0, bytesDown: 0, bytesUp: 0)
        history.append(record)
        onRound?(record)
        return record
    }

    /// Runs round `round` with every worker, one after another (in-process workers share the cores).
    @discardableResult
    public func runRound(_ round: Int) async throws -> RoundRecord {
        let clock = ContinuousClock(), start = clock.now
        let layout = model.parameters.entries
        let global = model.parameters.flatValues
        // The master stays f32; it travels as f16 unless updates are f32 too.
        let downEncoding: Encoding = config.encoding == .f32 ? .f32 : .f16
        let payload = global.withUnsafeBufferPointer {
            ModelFile.encode($0, layout: layout, model: model.id, encoding: downEncoding, round: round)
        }
        var config = self.config
        config.proximalMu = strategy.proximalMu
        var updates: [NodeUpdate] = [], failures: [NodeFailure] = []
        for worker in workers {
            do {
                let bytes = try await worker.train(round: round, global: payload, config: config)
                updates.append(try Federation.validate(bytes, from: worker.node, round: round, model: model))
            } catch let error as WireError {
                failures.append(NodeFailure(node: worker.node, reason: "update rejected: \(error)"))
            } catch {
                failures.append(NodeFailure(node: worker.node, reason: "\(error)"))
            }
        }
        let completed = updates.count >= minNodes
        if completed { model.parameters.load(strategy.aggregate(global: global, updates: updates)) }
        let e = completed ? try evaluate?(model) : nil
        let d = (clock.now - start).components
        let record = RoundRecord(
            round: round, completed: completed, participants: updates.map(\.node), failures: failures,
            testAccuracy: e?.accuracy, testLoss: e?.loss,
            seconds: Double(d.seconds) + Double(d.attoseconds) * 1e-18,
            bytesDown: payload.count * workers.count, bytesUp: updates.reduce(0) { $0 + $1.bytes })
        history.append(record)
        onRound?(record)
        return record
    }

    /// Decodes an update and checks that it is a delta for this round and model, with finite values
    /// of the right names and shapes.
    static func validate(_ bytes: [UInt8], from node: String, round: Int, model: Model) throws -> NodeUpdate {
        let (delta, header) = try ModelFile.decode(bytes, expecting: model.parameters.entries, model: model.id)
        guard header.kind == .delta else { throw WireError("expected a delta, got \(header.kind.rawValue)") }
        guard header.round == round else { throw WireError("update is for round \(header.round), this is round \(round)") }
        guard header.examples > 0 else { throw WireError("update claims 0 training examples") }
        return NodeUpdate(node: node, delta: delta, examples: header.examples, bytes: bytes.count)
    }
}
