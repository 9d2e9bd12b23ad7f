/// One node's answer for a round: its update (a delta against the global model it trained from) and
/// how many examples it trained on.
public struct NodeUpdate: Sendable {
    public var node: String
    public var delta: [Float]
    public var examples: Int
    /// Size of the update as it arrived.
    public var bytes: Int
    /// Training time the node reported.
    public var trainSeconds: Double?

    public init(node: String, delta: [Float], examples: Int, bytes: Int = 0) {
        self.node = node
        self.delta = delta
        self.examples = examples
        self.bytes = bytes
    }
}

/// A node that did not deliver a usable update, and why. Failures are data: they are kept and shown.
public struct NodeFailure: Error, Sendable, Equatable {
    public var node: String
    public var reason: String
    public init(node: String, reason: String) {
        self.node = node
        self.reason = reason
    }
}

/// Decides what a round's results do to the global model.
public protocol Strategy: Sendable {
    var name: String { get }
    /// Extra term the workers add to their loss (FedProx's μ); 0 for plain local training.
    var proximalMu: Float { get }
    /// The new global model from the old one and the round's updates (at least one).
    func aggregate(global: [Float], updates: [NodeUpdate]) -> [Float]
    /// Folds updates one at a time as they arrive. The averaging strategies keep O(model) memory
    /// whatever the node count; the default keeps every update and calls `aggregate`.
    func fold(global: [Float]) -> UpdateFold
}

extension Strategy {
    public func fold(global: [Float]) -> UpdateFold { KeepAll(global: global, strategy: self) }
}

/// A round's aggregation in progress.
public class UpdateFold {
    public func add(_ update: NodeUpdate) { fatalError("subclass") }
    /// The new global model; only called after at least one `add`.
    public func result() -> [Float] { fatalError("subclass") }
    /// The new model was accepted: a strategy with state (a server optimizer) keeps the step it took.
    public func commit() {}
}

private final class KeepAll: UpdateFold {
    let global: [Float], strategy: Strategy
    var updates: [NodeUpdate] = []
    init(global: [Float], strategy: Strategy) {
        self.global = global
        self.strategy = strategy
    }
    override func add(_ update: NodeUpdate) { updates.append(update) }
    override func result() -> [Float] { strategy.aggregate(global: global, updates: updates) }
}

/// Example-weighted mean of the (optionally clipped) deltas, one update at a time.
private final class StreamingMean: UpdateFold {
    let global: [Float], clipNorm: Double?
    var mean: Aggregation.WeightedMean
    init(global: [Float], clipNorm: Double?) {
        self.global = global
        self.clipNorm = clipNorm
        mean = Aggregation.WeightedMean(parameters: global.count)
    }
    override func add(_ u: NodeUpdate) {
        mean.add(clipNorm.map { Aggregation.clipped(u.delta, to: $0) } ?? u.delta, weight: Double(max(u.examples, 0)))
    }
    override func result() -> [Float] {
        guard let step = mean.mean else { return global }
        return zip(global, step).map { $0 + $1 }
    }
}

/// FedAvg (McMahan et al. 2017): the global model moves by the example-weighted mean of the deltas.
/// Optional norm clipping bounds each update's influence.
public struct FedAvg: Strategy {
    public var name: String { clipNorm == nil ? "fedavg" : "fedavg+clip" }
    public var proximalMu: Float { 0 }
    public var clipNorm: Double?

    public init(clipNorm: Double? = nil) { self.clipNorm = clipNorm }

    public func aggregate(global: [Float], updates: [NodeUpdate]) -> [Float] {
        let f = fold(global: global)
        for u in updates { f.add(u) }
        return f.result()
    }
    public func fold(global: [Float]) -> UpdateFold { StreamingMean(global: global, clipNorm: clipNorm) }
}

/// FedProx (Li et al. 2020): FedAvg's aggregation; the workers add (μ/2)·‖w − w_global‖² to their loss.
public struct FedProx: Strategy {
    public var name: String { "fedprox" }
    public var proximalMu: Float
    public init(mu: Float) { proximalMu = mu }
    public func aggregate(global: [Float], updates: [NodeUpdate]) -> [Float] { FedAvg().aggregate(global: global, updates: updates) }
    public func fold(global: [Float]) -> UpdateFold { FedAvg().fold(global: global) }
}

/// Coordinate-wise median of the deltas (robust to a minority of bad nodes).
public struct FedMedian: Strategy {
    public var name: String { "median" }
    public var proximalMu: Float { 0 }
    public init() {}
    public func aggregate(global: [Float], updates: [NodeUpdate]) -> [Float] {
        zip(global, Aggregation.coordinateMedian(updates.map(\.delta))).map { $0 + $1 }
    }
}

/// Coordinate-wise trimmed mean of the deltas, dropping `trim` from each end (falls back to the
/// median when too few updates arrive to trim).
public struct FedTrimmedMean: Strategy {
    public var name: String { "trimmed-mean" }
    public var proximalMu: Float { 0 }
    public var trim: Int
    public init(trim: Int) { self.trim = trim }
    public func aggregate(global: [Float], updates: [NodeUpdate]) -> [Float] {
        let deltas = updates.map(\.delta)
        let step = deltas.count > 2 * trim ? Aggregation.trimmedMean(deltas, trim: trim) : Aggregation.coordinateMedian(deltas)
        return zip(global, step).map { $0 + $1 }
    }
}

/// FedAvg with centered clipping: the example-weighted mean of the deltas after each one's deviation
/// from the coordinate median is clipped to the median deviation (`Aggregation.centeredClip`). Keeps
/// FedAvg's averaging on honest updates, bounds a hostile node's pull without a threshold to tune.
public struct FedCenteredClip: Strategy {
    public var name: String { "centered-clip" }
    public var proximalMu: Float { 0 }
    public init() {}
    public func aggregate(global: [Float], updates: [NodeUpdate]) -> [Float] {
        let step = Aggregation.centeredClip(updates.map(\.delta), weights: updates.map { Double($0.examples) })
        return zip(global, step).map { $0 + $1 }
    }
}

/// The strategies by the names the fleet file and `fedpi simulate` use.
public enum Strategies {
    public static let names = ["fedavg", "fedprox", "median", "trimmed-mean", "centered-clip", "async-merge", "fedavgm", "fedadam", "fedyogi"]

    /// nil for an unknown name. `mu` is FedProx's; `clipNorm` bounds FedAvg's updates; `server` sets
    /// the server optimizers (fedavgm, fedadam, fedyogi).
    public static func make(_ name: String, mu: Double = 0.01, clipNorm: Double? = nil, server: FedOpt.Options = .init()) -> Strategy? {
        if let rule = FedOpt.Rule(rawValue: name) { return FedOpt(rule, options: server) }
        switch name {
        case "fedavg": return FedAvg(clipNorm: clipNorm)
        case "fedprox": return FedProx(mu: Float(mu))
        case "median": return FedMedian()
        case "trimmed-mean": return FedTrimmedMean(trim: 1)
        case "centered-clip": return FedCenteredClip()
        case "async-merge": return AsyncMerge()
        default: return nil
        }
    }
}

/// The seed demo's asynchronous merge, applied per update in arrival order:
/// w ← (a·w + b·w_update)/(a + b), with w_update = w_global_at_dispatch + delta.
public struct AsyncMerge: Strategy {
    public var name: String { "async-merge" }
    public var proximalMu: Float { 0 }
    public var a: Float, b: Float
    public init(a: Float = 1, b: Float = 1) {
        self.a = a
        self.b = b
    }
    public func aggregate(global: [Float], updates: [NodeUpdate]) -> [Float] {
        let f = fold(global: global)
        for u in updates { f.add(u) }
        return f.result()
    }
    public func fold(global: [Float]) -> UpdateFold { Merge(global: global, a: a, b: b) }

    private final class Merge: UpdateFold {
        let global: [Float], a: Float, b: Float
        var w: [Float]
        init(global: [Float], a: Float, b: Float) {
            self.global = global
            self.a = a
            self.b = b
            w = global
        }
        override func add(_ u: NodeUpdate) {
            for i in w.indices { w[i] = (a * w[i] + b * (global[i] + u.delta[i])) / (a + b) }
        }
        override func result() -> [Float] { w }
    }
}
