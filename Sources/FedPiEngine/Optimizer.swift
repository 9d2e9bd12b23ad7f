/// Updates the parameter values from their gradients; one loop over the model's flat buffer.
public protocol Optimizer: AnyObject {
    var learningRate: Float { get set }
    /// Threads the update loop may use (the trainer sets it to its number of lanes).
    var parallelism: Int { get set }
    func step(_ parameters: ParameterStore)
}

extension Optimizer {
    /// Runs `body` over `0..<count` split into `parallelism` contiguous ranges.
    func forEachRange(_ count: Int, _ body: (Range<Int>) -> Void) {
        let parts = count < 65536 ? 1 : max(1, parallelism)
        Parallel.run(parts) { p in body((p * count / parts)..<((p + 1) * count / parts)) }
    }
}

/// Stochastic gradient descent with classical momentum and L2 weight decay, as `torch.optim.SGD`
/// (dampening 0, no Nesterov): g += wd·p; v = μ·v + g; p -= lr·v.
public final class SGD: Optimizer {
    public var learningRate: Float
    public let momentum: Float
    public let weightDecay: Float
    public var parallelism = 1
    private var velocity: [Float] = []
    private var started = false

    public init(learningRate: Float, momentum: Float = 0, weightDecay: Float = 0) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
    }

    public func step(_ parameters: ParameterStore) {
        let n = parameters.count, p = parameters.values, g = parameters.gradients
        let lr = learningRate, mu = momentum, wd = weightDecay
        if mu == 0 {
            forEachRange(n) { r in for i in r { p[i] -= lr * (g[i] + wd * p[i]) } }
            return
        }
        if velocity.isEmpty { velocity = [Float](repeating: 0, count: n) }
        // PyTorch starts the momentum buffer at the first gradient: v = 0·v + g on step one
        let keep: Float = started ? mu : 0
        started = true
        velocity.withUnsafeMutableBufferPointer { vb in
            let v = vb.baseAddress!
            forEachRange(n) { r in
                for i in r {
                    let grad = g[i] + wd * p[i]
                    v[i] = keep * v[i] + grad
                    p[i] -= lr * v[i]
                }
            }
        }
    }
}

/// Adam with bias correction and L2 weight decay, as `torch.optim.Adam`.
public final class Adam: Optimizer {
    public var learningRate: Float
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    public var parallelism = 1
    private var m: [Float] = [], v: [Float] = []
    private var t = 0

    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    public func step(_ parameters: ParameterStore) {
        let n = parameters.count, p = parameters.values, g = parameters.gradients
        if m.isEmpty {
            m = [Float](repeating: 0, count: n)
            v = [Float](repeating: 0, count: n)
        }
        t += 1
        let b1 = beta1, b2 = beta2, eps = epsilon, wd = weightDecay
        let c1 = 1 - powf(b1, Float(t)), c2 = 1 - powf(b2, Float(t))
        let stepSize = learningRate / c1, invSqrtC2 = 1 / c2.squareRoot()
        m.withUnsafeMutableBufferPointer { mb in
            v.withUnsafeMutableBufferPointer { vb in
                let m = mb.baseAddress!, v = vb.baseAddress!
                forEachRange(n) { r in
                    for i in r {
                        let grad = g[i] + wd * p[i]
                        m[i] = b1 * m[i] + (1 - b1) * grad
                        v[i] = b2 * v[i] + (1 - b2) * grad * grad
                        p[i] -= stepSize * m[i] / (v[i].squareRoot() * invSqrtC2 + eps)
                    }
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
