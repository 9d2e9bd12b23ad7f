#if canImport(Glibc)
import Glibc
#endif
import FedPiEngine
import FedPiTraining
import FedPiWire

/// One node's contribution to a round.
public struct Participation: Sendable, Equatable {
    public var node: String
    public var examples: Int
    /// Size of the update as it arrived.
    public var bytes: Int
    /// From dispatch to a validated update.
    public var seconds: Double
    /// Training time the node reported (nil when it did not say).
    public var trainSeconds: Double?

    public init(node: String, examples: Int, bytes: Int, seconds: Double, trainSeconds: Double? = nil) {
        self.node = node
        self.examples = examples
        self.bytes = bytes
        self.seconds = seconds
        self.trainSeconds = trainSeconds
    }
}

/// What happened in one round; failures are kept beside the results.
public struct RoundRecord: Sendable {
    public var round: Int
    /// 1 for the first try of a round, higher when a failed round is retried.
    public var attempt: Int = 1
    /// True when enough updates arrived and the global model moved.
    public var completed: Bool
    public var participants: [Participation]
    public var failures: [NodeFailure]
    public var testAccuracy: Double?
    public var testLoss: Double?
    /// The evaluation's confusion matrix (true × predicted; nil: not known).
    public var testConfusion: [[Int]]?
    public var seconds: Double
    public var bytesDown: Int
    public var bytesUp: Int

    public init(round: Int, attempt: Int = 1, completed: Bool, participants: [Participation], failures: [NodeFailure],
                testAccuracy: Double?, testLoss: Double?, seconds: Double, bytesDown: Int, bytesUp: Int) {
        self.round = round
        self.attempt = attempt
        self.completed = completed
        self.participants = participants
        self.failures = failures
        self.testAccuracy = testAccuracy
        self.testLoss = testLoss
        self.seconds = seconds
        self.bytesDown = bytesDown
        self.bytesUp = bytesUp
    }
}

/// The round logic of the aggregator, independent of transport: dispatch the global model to the
/// chosen workers, validate what comes back as it arrives, fold it with the strategy, and when at
/// least `minNodes` updates are usable move the global model; otherwise record the round as failed
/// and leave the model unchanged.
public final class Federation: @unchecked Sendable {
    public let model: Model
    public let strategy: Strategy
    public let workers: [WorkerClient]
    public let minNodes: Int
    public var config: TrainingConfig
    /// Longest a round waits for updates; the nodes still out then count as failed (nil: no limit).
    public var roundTimeout: Duration?
    /// Remote workers train at the same time; in-process ones take turns on the shared cores.
    public var concurrent = false
    /// The workers that take part in a round (nil: all of them).
    public var select: ((_ round: Int) async -> [WorkerClient])?
    /// Evaluation of the global model after each round: central on a held-out set, or federated on
    /// the workers' own test splits (nil: none).
    /// Returning nil records the round without metrics.
    public var evaluate: ((Model) async throws -> EvaluationResult?)?
    /// Called with every record as soon as its round ends.
    public var onRound: ((RoundRecord) -> Void)?
    /// Screening: an update whose L2 norm is more than this many times the median norm of the
    /// reference updates is rejected (nil: no screening). The reference is the last completed round's
    /// accepted updates; a round without one (the first after a start) holds its updates until all
    /// are in and screens them against their own median.
    public var maxNormRatio: Double? = 10
    /// Median norm of the last completed round's accepted updates.
    public private(set) var referenceNorm: Double?
    /// Called when a node's update is accepted or rejected, for logs.
    public var onNode: ((_ round: Int, _ node: String, _ outcome: Result<Participation, NodeFailure>) -> Void)?
    public private(set) var history: [RoundRecord] = []

    public init(model: Model, strategy: Strategy, workers: [WorkerClient], minNodes: Int, config: TrainingConfig) {
        self.model = model
        self.strategy = strategy
        self.workers = workers
        self.minNodes = max(1, minNodes)
        self.config = config
    }

    /// Round 0: the initial model's evaluation, nothing trained.
    public func evaluateInitial() async throws -> RoundRecord {
        let e = try await evaluate?(model) ?? nil
        var record = RoundRecord(round: 0, completed: true, participants: [], failures: [],
                                 testAccuracy: e?.accuracy, testLoss: e?.loss, seconds: 0, bytesDown: 0, bytesUp: 0)
        record.testConfusion = e.flatMap { $0.confusion.isEmpty ? nil : $0.confusion }
        history.append(record)
        onRound?(record)
        return record
    }

    /// The workers' learning rate is multiplied by this once per round: round r trains with
    /// learning_rate · max(decay^(r−1), floor) (1: constant).
    public var learningRateDecay: Float = 1
    /// The decay stops at this fraction of the starting learning rate (0: it never stops).
    public var learningRateFloor: Float = 0

    /// The fleet file's and `fedpi simulate`'s defaults, with FedAvgM (server lr 1, momentum 0.7): the
    /// one configuration measured that meets issue 15's goals together in `fedpi simulate` (86.2 at
    /// round 10 on the 0-3/4-6/7-9 split over 5 seeds, no fall over 0.3 points after round 5, 91.4 on
    /// IID shards against FedAvg's 91.1; BENCHMARKS.md "The served model as a moving average").
    public static let defaultModelEMA: Float = 0.5
    public static let defaultLearningRateDecay: Float = 0.9
    public static let defaultLearningRateFloor: Float = 0.5

    /// The model the fleet serves (evaluated, saved, answering predictions) is an exponential moving
    /// average of the global models: after every completed round average ← ema·average + (1−ema)·global,
    /// starting from the model before the first round it folds. The workers still train from the global
    /// model. 0: the served model is the global model itself.
    public var modelEMA: Float = 0
    /// The moving average (empty: none yet, or `modelEMA` is 0); a resumed run restores it.
    public var average: [Float] = []
    /// A second network holding `average` for evaluation and saving, made when first needed.
    private var averageNet: Model?

    /// The served model: `model`, or with `modelEMA` a network holding the average.
    public var servedModel: Model {
        guard modelEMA > 0, average.count == model.parameters.count else { return model }
        let net = averageNet ?? (try? ModelZoo.make(model.id, seed: 0)) ?? model
        guard net !== model else { return model }
        averageNet = net
        net.parameters.load(average)
        return net
    }

    /// average ← ema·average + (1−ema)·next, element by element (the one formula, so a resumed run
    /// that folds the checkpoint into a saved average matches an uninterrupted one bit for bit).
    public static func foldAverage(_ average: inout [Float], _ next: [Float], ema: Float) {
        precondition(average.count == next.count)
        for i in 0..<next.count { average[i] = ema * average[i] + (1 - ema) * next[i] }
    }

    /// The training config of `round`: the strategy's proximal term, the decayed learning rate.
    public func roundConfig(_ round: Int) -> TrainingConfig {
        var c = config
        c.proximalMu = strategy.proximalMu
        if learningRateDecay != 1 {
            let factor = max(pow(Double(learningRateDecay), Double(max(0, round - 1))), Double(learningRateFloor))
            c.learningRate = max(1e-7, config.learningRate * Float(factor))
        }
        return c
    }

    /// The global model file sent for `round`: f16 (f32 when updates are f32 too), with the round's
    /// training config in its metadata.
    public func globalPayload(round: Int) -> [UInt8] {
        let config = roundConfig(round)
        let downEncoding: Encoding = config.encoding == .f32 ? .f32 : .f16
        return ModelFile.encode(weightsOf: model, encoding: downEncoding, round: round, extra: config.metadata)
    }

    /// Runs round `round` (its `attempt`-th try).
    @discardableResult
    public func runRound(_ round: Int, attempt: Int = 1) async throws -> RoundRecord {
        let clock = ContinuousClock(), start = clock.now
        let global = model.parameters.flatValues
        let payload = globalPayload(round: round)
        let config = roundConfig(round)
        let chosen = await select?(round) ?? workers
        let fold = strategy.fold(global: global)
        var participants: [Participation] = [], failures: [NodeFailure] = []
        var norms: [Double] = []
        // without a reference norm the round's updates wait here until all are in (O(nodes × model) once)
        var held: [(NodeUpdate, Participation, Double)] = []
        let reference = referenceNorm

        func record(_ node: String, _ outcome: Result<Participation, NodeFailure>) {
            switch outcome {
            case .success(let p): participants.append(p)
            case .failure(let f): failures.append(f)
            }
            onNode?(round, node, outcome)
        }

        func settle(_ node: String, _ result: Result<[UInt8], any Error>, _ seconds: Double) {
            do {
                let bytes = try result.get()
                let update = try Federation.validate(bytes, from: node, round: round, model: model)
                let participation = Participation(node: node, examples: update.examples, bytes: bytes.count, seconds: seconds,
                                                  trainSeconds: update.trainSeconds)
                let norm = Federation.norm(update.delta)
                if maxNormRatio != nil, reference == nil {
                    held.append((update, participation, norm))
                    return
                }
                if let problem = screen(norm: norm, against: reference) { throw problem }
                fold.add(update)
                norms.append(norm)
                record(node, .success(participation))
            } catch let error as WireError {
                record(node, .failure(NodeFailure(node: node, reason: "update rejected: \(error)")))
            } catch {
                record(node, .failure(NodeFailure(node: node, reason: "\(error)")))
            }
        }

        func screen(norm: Double, against reference: Double?) -> UpdateScreened? {
            guard let k = maxNormRatio, let reference, reference > 0 else { return nil }
            return norm > k * reference ? UpdateScreened(norm: norm, reference: reference, ratio: k) : nil
        }

        if concurrent {
            await withTaskGroup(of: (String, Result<[UInt8], any Error>, Double)?.self) { group in
                for worker in chosen {
                    group.addTask {
                        let t0 = clock.now
                        let result = await Result(catching: { try await worker.train(round: round, global: payload, config: config) })
                        return (worker.node, result, Federation.seconds(clock.now - t0))
                    }
                }
                if let roundTimeout {
                    group.addTask {
                        try? await Task.sleep(for: roundTimeout)
                        return nil
                    }
                }
                var pending = Set(chosen.map(\.node))
                while !pending.isEmpty, let next = await group.next() {
                    guard let (node, result, seconds) = next else {
                        // stopping (the caller drops this round) is not a deadline
                        if Task.isCancelled { break }
                        for node in chosen.map(\.node) where pending.contains(node) {
                            settle(node, .failure(RoundDeadline(seconds: roundTimeout.map(Federation.seconds) ?? 0)), 0)
                        }
                        break
                    }
                    pending.remove(node)
                    settle(node, result, seconds)
                }
                group.cancelAll()
            }
        } else {
            for worker in chosen {
                let t0 = clock.now
                let result = await Result(catching: { try await worker.train(round: round, global: payload, config: config) })
                settle(worker.node, result, Federation.seconds(clock.now - t0))
            }
        }

        if !held.isEmpty {
            let median = Federation.median(held.map(\.2))
            for (update, participation, norm) in held {
                if let problem = screen(norm: norm, against: median) {
                    record(update.node, .failure(NodeFailure(node: update.node, reason: "\(problem)")))
                } else {
                    fold.add(update)
                    norms.append(norm)
                    record(update.node, .success(participation))
                }
            }
            held = []
        }
        var completed = participants.count >= minNodes
        if completed {
            let next = fold.result()
            // the new global model must be usable: finite, and representable in the encoding it travels in
            if let problem = Federation.unusable(next, limit: globalPayloadLimit) {
                failures.append(NodeFailure(node: "(aggregate)", reason: problem))
                completed = false
            } else {
                model.parameters.load(next)
                fold.commit()
                referenceNorm = Federation.median(norms)
                if modelEMA > 0 {
                    if average.count != next.count { average = global }
                    Federation.foldAverage(&average, next, ema: modelEMA)
                }
            }
        }
        let e = completed ? try await evaluate?(servedModel) ?? nil : nil
        var record = RoundRecord(
            round: round, attempt: attempt, completed: completed, participants: participants, failures: failures,
            testAccuracy: e?.accuracy, testLoss: e?.loss, seconds: Federation.seconds(clock.now - start),
            bytesDown: payload.count * chosen.count, bytesUp: participants.reduce(0) { $0 + $1.bytes })
        record.testConfusion = e.flatMap { $0.confusion.isEmpty ? nil : $0.confusion }
        history.append(record)
        onRound?(record)
        return record
    }

    /// The largest magnitude the global model may hold: f16's 65504 when it travels as f16.
    var globalPayloadLimit: Float { config.encoding == .f32 ? .greatestFiniteMagnitude : 65504 }

    /// Why `values` cannot be the new global model, or nil.
    static func unusable(_ values: [Float], limit: Float) -> String? {
        var bad = 0
        for v in values where !(abs(v) <= limit) { bad += 1 }
        guard bad > 0 else { return nil }
        return "the aggregated model has \(bad) values that are not finite or beyond \(limit == 65504 ? "f16's range (65504)" : "f32's range"): "
            + "round rejected, the global model kept"
    }

    public static func norm(_ v: [Float]) -> Double {
        var sum = 0.0
        for x in v { sum += Double(x) * Double(x) }
        return sum.squareRoot()
    }

    /// The lower median: with two updates, the smaller norm (so one of two nodes cannot drag the
    /// reference up to its own size).
    static func median(_ v: [Double]) -> Double? {
        guard !v.isEmpty else { return nil }
        return v.sorted()[(v.count - 1) / 2]
    }

    public static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// Decodes an update and checks that it is a delta for this round and model, with finite values
    /// of the right names and shapes.
    static func validate(_ bytes: [UInt8], from node: String, round: Int, model: Model) throws -> NodeUpdate {
        let (delta, header) = try ModelFile.decode(bytes, expecting: model.parameters.entries, model: model.id)
        guard header.kind == .delta else { throw WireError("expected a delta, got \(header.kind.rawValue)") }
        guard header.round == round else { throw WireError("update is for round \(header.round), this is round \(round)") }
        guard header.examples > 0 else { throw WireError("update claims 0 training examples") }
        var update = NodeUpdate(node: node, delta: delta, examples: header.examples, bytes: bytes.count)
        update.trainSeconds = header.trainSeconds
        return update
    }
}

/// An update far larger than the others: rejected before it counts.
public struct UpdateScreened: Error, CustomStringConvertible {
    public var norm: Double, reference: Double, ratio: Double
    public var description: String {
        "update rejected: its norm \(Format.fixed(norm, 3)) is \(Format.fixed(norm / reference, 1))× the median update norm "
            + "\(Format.fixed(reference, 3)) (max_norm_ratio \(Format.fixed(ratio, 1)))"
    }
}

/// A node that had not delivered when the round's time ran out.
public struct RoundDeadline: Error, CustomStringConvertible {
    public var seconds: Double
    public var description: String { "no update before the round deadline (\(Int(seconds.rounded())) s)" }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
