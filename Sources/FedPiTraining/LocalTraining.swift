import FedPiEngine
import FedPiWire

/// The local training loss. The skew-aware ones (for label skew) change the logits by the node's own
/// class counts; on a split where each node lacks whole classes they did not help (BENCHMARKS.md).
public enum LocalLoss: Sendable, Equatable {
    /// Plain softmax cross-entropy.
    case crossEntropy
    /// FedRS: the logits of the classes the node lacks are scaled by alpha (0...1; 0.5 in the paper).
    case fedRS(alpha: Float)
    /// FedLC: logit c is lowered by tau·n_c^(−1/4); classes the node lacks leave the softmax.
    case fedLC(tau: Float)

    public static let names = ["ce", "fedrs", "fedlc"]

    /// The loss with its parameter, for logs: "ce", "fedrs(alpha 0.5)", "fedlc(tau 1.0)".
    public var label: String {
        switch self {
        case .crossEntropy: return "ce"
        case .fedRS(let alpha): return "fedrs(alpha \(alpha))"
        case .fedLC(let tau): return "fedlc(tau \(tau))"
        }
    }

    /// Builds the loss named `name` with its parameter (alpha for fedrs, tau for fedlc); nil for an unknown name.
    public static func make(_ name: String, alpha: Float = 0.5, tau: Float = 1) -> LocalLoss? {
        switch name {
        case "ce": return .crossEntropy
        case "fedrs": return .fedRS(alpha: alpha)
        case "fedlc": return .fedLC(tau: tau)
        default: return nil
        }
    }

    /// The logit change for a node with these class counts (nil: none).
    public func adjustment(counts: [Int]) -> LogitAdjustment? {
        switch self {
        case .crossEntropy: return nil
        case .fedRS(let alpha): return .fedRS(counts: counts, alpha: alpha)
        case .fedLC(let tau): return .fedLC(counts: counts, tau: tau)
        }
    }
}

/// What the aggregator tells a worker to do with the global model it sends.
public struct TrainingConfig: Sendable {
    public var epochs = 1
    public var batchSize = 64
    public var learningRate: Float = 0.01
    public var momentum: Float = 0.9
    public var proximalMu: Float = 0
    public var loss: LocalLoss = .crossEntropy
    /// At most this many optimizer steps per round (nil: `epochs` full epochs).
    public var localSteps: Int?
    /// Balanced class weights in the loss, from each node's own class counts (for imbalanced data).
    public var classWeights = false
    /// Encoding of the update the worker returns (always a delta).
    public var encoding: Encoding = .f16
    public var seed: UInt64 = 1
    public init() {}

    /// Samples one task trains on, over `count` local samples.
    public func plannedSamples(count: Int) -> Int {
        Trainer.plannedSamples(count: count, batchSize: batchSize, epochs: epochs, maxSteps: localSteps)
    }

    /// The config as metadata entries of the global model file (`train.*`), how it travels to a worker.
    public var metadata: [String: String] {
        ["train.epochs": String(epochs), "train.batch_size": String(batchSize), "train.lr": learningRate.description,
         "train.momentum": momentum.description, "train.mu": proximalMu.description, "train.encoding": encoding.rawValue,
         "train.seed": String(seed)]
            .merging(lossMetadata) { a, _ in a }
            .merging(localSteps.map { ["train.local_steps": String($0)] } ?? [:]) { a, _ in a }
            .merging(classWeights ? ["train.class_weights": "balanced"] : [:]) { a, _ in a }
    }

    private var lossMetadata: [String: String] {
        switch loss {
        case .crossEntropy: return [:]
        case .fedRS(let alpha): return ["train.loss": "fedrs", "train.fedrs_alpha": alpha.description]
        case .fedLC(let tau): return ["train.loss": "fedlc", "train.fedlc_tau": tau.description]
        }
    }

    /// Reads a config sent by an aggregator; missing entries keep their defaults, bad ones are errors.
    public init(metadata m: [String: String]) throws(WireError) {
        func value<T>(_ key: String, _ parse: (String) -> T?, _ ok: (T) -> Bool, _ what: String) throws(WireError) -> T? {
            guard let s = m["train." + key] else { return nil }
            guard let v = parse(s), ok(v) else { throw WireError("training config train.\(key)=\(s.clipped(80)) is not \(what)") }
            return v
        }
        if let v = try value("epochs", { Int($0) }, { (1...1000).contains($0) }, "an integer in 1...1000") { epochs = v }
        if let v = try value("batch_size", { Int($0) }, { (1...4096).contains($0) }, "an integer in 1...4096") { batchSize = v }
        if let v = try value("lr", { Float($0) }, { $0.isFinite && $0 > 0 && $0 <= 10 }, "a learning rate in (0, 10]") { learningRate = v }
        if let v = try value("momentum", { Float($0) }, { $0.isFinite && $0 >= 0 && $0 < 1 }, "a momentum in [0, 1)") { momentum = v }
        if let v = try value("mu", { Float($0) }, { $0.isFinite && $0 >= 0 && $0 <= 100 }, "a FedProx mu in [0, 100]") { proximalMu = v }
        if let v = try value("encoding", { Encoding(rawValue: $0) }, { _ in true }, "f32, f16 or i8") { encoding = v }
        if let v = try value("seed", { UInt64($0) }, { _ in true }, "an unsigned integer") { seed = v }
        if let v = try value("local_steps", { Int($0) }, { (1...10_000_000).contains($0) }, "an integer in 1...10000000") { localSteps = v }
        if let v = try value("class_weights", { $0 }, { ["balanced", "none"].contains($0) }, "balanced or none") { classWeights = v == "balanced" }
        let alpha = try value("fedrs_alpha", { Float($0) }, { $0 >= 0 && $0 <= 1 }, "a FedRS alpha in [0, 1]") ?? 0.5
        let tau = try value("fedlc_tau", { Float($0) }, { $0 >= 0 && $0 <= 100 }, "a FedLC tau in [0, 100]") ?? 1
        if let v = try value("loss", { LocalLoss.make($0, alpha: alpha, tau: tau) }, { _ in true }, "one of \(LocalLoss.names.joined(separator: ", "))") {
            loss = v
        }
    }
}

/// One node's local training, shared by in-process workers and the worker daemon: decode the global
/// model, train on this node's samples, encode the delta.
public struct LocalTraining: @unchecked Sendable {
    public let node: String
    public let model: String
    public let data: BatchProvider
    public let indices: [Int]
    /// Training lanes (nil: one per core).
    public var lanes: Int?

    public init(node: String, model: String, data: BatchProvider, indices: [Int], lanes: Int? = nil) {
        self.node = node
        self.model = model
        self.data = data
        self.indices = indices
        self.lanes = lanes
    }

    /// Trains from the encoded global model and returns the encoded update, whose header carries the
    /// training time and `origin` (the digest of the global model, by which a worker recognises a
    /// task it has done). `progress` sees every batch; an error it throws cancels training.
    ///
    /// Memory is kept low for a small board: the global model stays in its encoded form (f16 on the
    /// wire: half the size), where the caller keeps it (the worker daemon: in a file), and is read
    /// and decoded again for the delta, which is computed in place over the trained weights; the
    /// optimizer state is freed before encoding.
    public func run(round: Int, global: () throws -> [UInt8], config: TrainingConfig, origin: String? = nil,
                    progress: ((TrainingProgress) throws -> Void)? = nil) throws -> [UInt8] {
        let clock = ContinuousClock(), start = clock.now
        let net = try ModelZoo.make(model, seed: config.seed)
        let layout = net.parameters.entries
        net.parameters.load(try ModelFile.decode(try global(), expecting: layout, model: model).values)
        // every round and node gets its own shuffling and dropout stream
        let seed = config.seed &* 1_000_003 &+ UInt64(round) &* 7919 &+ UInt64(abs(node.hashValueStable))
        var lastLoss: Double?
        do {
            var counts = [Int](repeating: 0, count: net.classes)
            if config.loss != .crossEntropy || config.classWeights {
                for i in indices { let l = data.label(at: i); if l >= 0 && l < counts.count { counts[l] += 1 } }
            }
            var adjustment = config.loss.adjustment(counts: counts)
            if config.classWeights { adjustment = .weighted(adjustment, counts: counts) }
            let trainer = Trainer(model: net, options: TrainingOptions(
                epochs: config.epochs, batchSize: config.batchSize, learningRate: config.learningRate,
                optimizer: .sgd(momentum: config.momentum), seed: seed, lanes: lanes, proximalMu: config.proximalMu,
                logitAdjustment: adjustment, maxSteps: config.localSteps))
            try trainer.train(on: data, indices: indices) { p in
                lastLoss = p.loss
                try progress?(p)
            }
        }
        let w = net.parameters.values, count = net.parameters.count
        try ModelFile.subtract(try global(), expecting: layout, model: model, from: UnsafeMutableBufferPointer(start: w, count: count))
        // an update that is not finite, or not representable in its encoding, is a failure, never an update
        let limit: Float = config.encoding == .f16 ? 65504 : .greatestFiniteMagnitude
        var bad = 0
        for i in 0..<count where !(abs(w[i]) <= limit) { bad += 1 }
        if bad > 0 || !(lastLoss?.isFinite ?? true) {
            throw TrainingDiverged(loss: lastLoss, badValues: bad, encoding: config.encoding)
        }
        let elapsed = (clock.now - start).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds / 1_000_000) * 1e-12
        return ModelFile.encode(UnsafeBufferPointer(start: w, count: count), layout: layout, model: model,
                                encoding: config.encoding, kind: .delta, round: round, examples: indices.count, global: origin,
                                trainSeconds: (seconds * 1000).rounded() / 1000, seed: seed)
    }
}

/// Local training blew up (learning rate too high for this data): the loss or the update is not finite.
public struct TrainingDiverged: Error, CustomStringConvertible {
    public var loss: Double?
    public var badValues: Int
    public var encoding: Encoding
    public var description: String {
        "training diverged (loss \(loss.map { "\($0)" } ?? "unknown"); \(badValues) update values not finite or beyond \(encoding.rawValue)'s range): "
            + "lower the learning rate"
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
