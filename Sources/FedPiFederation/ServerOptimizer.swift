import FedPiEngine
import FedPiWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Server optimizers (FedOpt, Reddi et al. 2021; FedAvgM, Hsu et al. 2019): the round's
/// example-weighted mean delta Δ is treated as a pseudo-gradient and applied with momentum or an
/// adaptive step, as Flower's strategies do:
/// - `fedavgm`: v ← β·v + Δ, w ← w + η·v;
/// - `fedadam`: m ← β1·m + (1−β1)·Δ, v ← β2·v + (1−β2)·Δ², w ← w + η_t·m/(√v + τ);
/// - `fedyogi`: as Adam with v ← v − (1−β2)·Δ²·sign(v − Δ²);
/// with η_t = η·√(1−β2^t)/(1−β1^t) (bias correction). The state (v, or m and v, and the step) is what
/// a checkpoint must keep for a resumed run to end bit for bit where an uninterrupted one does.
public final class FedOpt: Strategy, @unchecked Sendable {
    public enum Rule: String, Sendable, CaseIterable { case fedavgm, fedadam, fedyogi }

    public struct Options: Sendable, Equatable {
        public var serverLR: Float?
        public var momentum: Float = 0.7
        public var beta1: Float = 0.9
        public var beta2: Float = 0.99
        public var tau: Float = 1e-3
        public init() {}
    }

    /// The optimizer's state: its step and its moment vectors (empty before the first step).
    public struct State: Sendable, Equatable {
        public var step = 0
        public var m: [Float] = []
        public var v: [Float] = []
        public init(step: Int = 0, m: [Float] = [], v: [Float] = []) {
            self.step = step
            self.m = m
            self.v = v
        }
    }

    public let rule: Rule
    public let lr: Float, momentum: Float, beta1: Float, beta2: Float, tau: Float
    let current = Mutex(State())

    /// The default server learning rate of each rule: the best of a sweep on Fashion-MNIST's
    /// 0-3/4-6/7-9 split (BENCHMARKS.md "Fewer rounds on skewed data").
    public static func defaultLR(_ rule: Rule) -> Float { rule == .fedavgm ? 1 : 0.0316 }

    public init(_ rule: Rule, options o: Options = .init()) {
        self.rule = rule
        lr = o.serverLR ?? FedOpt.defaultLR(rule)
        momentum = o.momentum
        beta1 = o.beta1
        beta2 = o.beta2
        tau = o.tau
    }

    public var name: String { rule.rawValue }
    public var proximalMu: Float { 0 }

    public var state: State {
        get { current.withLock { $0 } }
        set { current.withLock { $0 = newValue } }
    }

    public func aggregate(global: [Float], updates: [NodeUpdate]) -> [Float] {
        let f = fold(global: global)
        for u in updates { f.add(u) }
        let next = f.result()
        f.commit()
        return next
    }

    public func fold(global: [Float]) -> UpdateFold { Step(global: global, optimizer: self) }

    /// The step from `state` with mean delta `delta`: the new weights and the state after it.
    func step(global: [Float], delta: [Float], from s: State) -> ([Float], State) {
        var s = s
        let n = global.count
        s.step += 1
        var w = global
        switch rule {
        case .fedavgm:
            if s.v.count != n { s.v = [Float](repeating: 0, count: n) }
            for i in 0..<n {
                s.v[i] = momentum * s.v[i] + delta[i]
                w[i] += lr * s.v[i]
            }
        case .fedadam, .fedyogi:
            if s.m.count != n { s.m = [Float](repeating: 0, count: n) }
            if s.v.count != n { s.v = [Float](repeating: 0, count: n) }
            let t = Double(s.step)
            let eta = Float(Double(lr) * (1 - pow(Double(beta2), t)).squareRoot() / (1 - pow(Double(beta1), t)))
            for i in 0..<n {
                let d = delta[i], d2 = d * d
                s.m[i] = beta1 * s.m[i] + (1 - beta1) * d
                if rule == .fedadam {
                    s.v[i] = beta2 * s.v[i] + (1 - beta2) * d2
                } else {
                    let sign: Float = s.v[i] > d2 ? 1 : (s.v[i] < d2 ? -1 : 0)
                    s.v[i] -= (1 - beta2) * d2 * sign
                }
                w[i] += eta * s.m[i] / (s.v[i].squareRoot() + tau)
            }
        }
        return (w, s)
    }

    /// The mean delta as FedAvg folds it; the step is taken on `result` and kept only on `commit`
    /// (a round whose new model is rejected leaves the optimizer as it was).
    private final class Step: UpdateFold {
        let global: [Float]
        let optimizer: FedOpt
        let mean: UpdateFold
        var pending: FedOpt.State?

        init(global: [Float], optimizer: FedOpt) {
            self.global = global
            self.optimizer = optimizer
            mean = FedAvg().fold(global: global)
        }
        override func add(_ update: NodeUpdate) { mean.add(update) }
        override func result() -> [Float] {
            let averaged = mean.result()
            let delta = zip(averaged, global).map { $0 - $1 }
            let (w, s) = optimizer.step(global: global, delta: delta, from: optimizer.state)
            pending = s
            return w
        }
        override func commit() {
            if let pending { optimizer.state = pending }
        }
    }
}

/// A server optimizer's state as a file beside the checkpoint (`server-optimizer-R.safetensors`):
/// tensors `m` and `v` (f32), metadata `rule`, `step`, `round`, `checksum`. It is written before the
/// checkpoint of round R, so whenever a checkpoint exists, the state it goes with does too.
public enum ServerOptimizerFile {
    static let format = "fedpi-server-optimizer/1"

    public static func name(round: Int) -> String { "server-optimizer-\(round).safetensors" }

    public static func encode(_ s: FedOpt.State, rule: FedOpt.Rule, round: Int) -> [UInt8] {
        let tensors = [("m", s.m), ("v", s.v)].map { name, values in
            (name: name, dtype: DType.f32, shape: [values.count], data: values.withUnsafeBufferPointer { Codecs.f32Bytes($0) })
        }
        return SafetensorsFile.encode(tensors, metadata: [
            "format": format, "rule": rule.rawValue, "step": String(s.step), "round": String(round),
            "checksum": Codecs.crc32Hex(tensors.map { $0.data[...] }),
        ])
    }

    /// The state in `bytes`, checked against the rule, the round and the model size it must fit.
    public static func decode(_ bytes: [UInt8], rule: FedOpt.Rule, round: Int, parameters: Int) throws(WireError) -> FedOpt.State {
        let file = try SafetensorsFile.decode(bytes)
        let m = file.metadata
        guard m["format"] == format else { throw WireError("not a FedPi server optimizer file") }
        guard m["rule"] == rule.rawValue else { throw WireError("the state is of \(m["rule"] ?? "?"), the strategy is \(rule.rawValue)") }
        guard m["round"] == String(round) else { throw WireError("the state is of round \(m["round"] ?? "?"), the checkpoint of round \(round)") }
        guard let step = m["step"].flatMap(Int.init), step >= 0 else { throw WireError("no step in the server optimizer state") }
        try ModelFile.verifyChecksum(file)
        var state = FedOpt.State(step: step)
        for name in ["m", "v"] {
            guard let t = file.tensor(name), t.dtype == .f32, t.shape.count == 1, t.shape[0] == 0 || t.shape[0] == parameters else {
                throw WireError("server optimizer tensor \(name) missing or not \(parameters) f32 values")
            }
            var values = [Float](repeating: 0, count: t.shape[0])
            if !values.isEmpty {
                try values.withUnsafeMutableBufferPointer { (out: inout UnsafeMutableBufferPointer<Float>) throws(WireError) in
                    try ModelFile.floatValues(of: t, in: file, into: out.baseAddress!)
                }
            }
            guard values.allSatisfy(\.isFinite) else { throw WireError("server optimizer tensor \(name) holds values that are not finite") }
            if name == "m" { state.m = values } else { state.v = values }
        }
        return state
    }
}
