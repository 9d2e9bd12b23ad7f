#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A per-class change of the logits before the softmax of the training loss, for a node that holds
/// only some of the classes (label skew): logit c becomes `scale[c]·z_c − offset[c]`, and a class
/// marked `excluded` leaves the softmax (no probability, no gradient). Predictions never use it.
public struct LogitAdjustment: Sendable, Equatable {
    public var scale: [Float]
    public var offset: [Float]
    public var excluded: [Bool]
    /// Each sample's loss (and gradient) is multiplied by the weight of its class (nil: 1 for all).
    public var weight: [Float]?

    public init(scale: [Float], offset: [Float], excluded: [Bool], weight: [Float]? = nil) {
        precondition(scale.count == offset.count && offset.count == excluded.count, "one entry per class")
        precondition(weight.map { $0.count == scale.count } ?? true, "one weight per class")
        self.scale = scale
        self.offset = offset
        self.excluded = excluded
        self.weight = weight
    }

    /// Class weights for imbalanced data, from the node's own class counts: w_c = N / (K·n_c) over the
    /// K classes it holds (scikit-learn's "balanced"), so every class weighs the same in the loss and
    /// the weights average 1 over the node's samples (the batch mean keeps its scale). Classes the
    /// node lacks get 1 (no sample carries them).
    public static func balancedWeights(counts: [Int]) -> [Float] {
        let total = counts.reduce(0, +), present = counts.filter { $0 > 0 }.count
        return counts.map { $0 > 0 ? Float(total) / (Float(present) * Float($0)) : 1 }
    }

    /// This adjustment with class weights added (`adjustment` nil: only the weights).
    public static func weighted(_ adjustment: LogitAdjustment?, counts: [Int]) -> LogitAdjustment {
        var a = adjustment ?? LogitAdjustment(scale: counts.map { _ in 1 }, offset: counts.map { _ in 0 }, excluded: counts.map { _ in false })
        a.weight = balancedWeights(counts: counts)
        return a
    }

    /// FedRS (Li & Zhan, KDD 2021), restricted softmax: the logits of classes this node has no samples
    /// of are scaled by `alpha` (0...1), so local training pushes them down less.
    public static func fedRS(counts: [Int], alpha: Float) -> LogitAdjustment {
        LogitAdjustment(scale: counts.map { $0 > 0 ? 1 : alpha }, offset: counts.map { _ in 0 }, excluded: counts.map { _ in false })
    }

    /// FedLC (Zhang et al., ICML 2022), logit calibration: logit c is lowered by τ·n_c^(−1/4), n_c being
    /// the node's count of class c, so rare classes are pushed up; a class with no samples (n_c = 0,
    /// an infinite offset) leaves the softmax.
    public static func fedLC(counts: [Int], tau: Float) -> LogitAdjustment {
        LogitAdjustment(scale: counts.map { _ in 1 }, offset: counts.map { $0 > 0 ? tau * powf(Float($0), -0.25) : 0 },
                        excluded: counts.map { $0 == 0 })
    }
}

/// Softmax followed by the negative log-likelihood of the true class, averaged over the batch
/// (PyTorch's `F.cross_entropy(logits, labels)`). Logits are (N, C); labels are class indices.
public enum SoftmaxCrossEntropy {
    public struct Result: Sendable {
        /// Sum over the batch of the per-sample loss (divide by `count` for the mean).
        public var lossSum: Double
        public var correct: Int
        public var count: Int

        public static let zero = Result(lossSum: 0, correct: 0, count: 0)

        public mutating func add(_ other: Result) {
            lossSum += other.lossSum
            correct += other.correct
            count += other.count
        }
    }

    /// Computes the loss and, when `gradient` is given, writes d(loss)/d(logits) into it for the loss
    /// `gradientScale × Σ per-sample losses` (default 1/N: the batch mean; a core that holds part of a
    /// batch passes 1/total). `labels[i]` must be in 0..<C. With `adjustment` the loss is that of the
    /// adjusted logits; `correct` always counts the unadjusted argmax (what the model predicts).
    public static func evaluate(logits: Tensor, labels: UnsafeBufferPointer<Int32>, gradient: Tensor? = nil,
                                gradientScale: Float? = nil, adjustment: LogitAdjustment? = nil) -> Result {
        let n = logits.batch, c = logits.sampleCount
        precondition(labels.count >= n, "fewer labels than logits rows")
        precondition(adjustment.map { $0.scale.count == c } ?? true, "adjustment for \(adjustment?.scale.count ?? 0) classes, logits have \(c)")
        gradient?.resize(logits.shape)
        var lossSum = 0.0, correct = 0
        let invN = gradientScale ?? 1 / Float(n)
        var z = [Float](repeating: 0, count: c)
        for i in 0..<n {
            let row = logits.data + i * c
            let label = Int(labels[i])
            precondition(label >= 0 && label < c, "label \(label) outside 0..<\(c)")
            var best = 0
            for j in 1..<c where row[j] > row[best] { best = j }
            if best == label { correct += 1 }
            // z: the logits the loss sees; -inf for a class out of the softmax (never the label's own)
            if let a = adjustment {
                for j in 0..<c { z[j] = a.excluded[j] && j != label ? -.infinity : a.scale[j] * row[j] - a.offset[j] }
            } else {
                for j in 0..<c { z[j] = row[j] }
            }
            var maxValue = z[label]
            for j in 0..<c where z[j] > maxValue { maxValue = z[j] }
            var sum: Float = 0
            for j in 0..<c { sum += expf(z[j] - maxValue) }
            let logSum = logf(sum)
            let w = adjustment?.weight?[label] ?? 1
            lossSum += Double(w * (logSum - (z[label] - maxValue)))
            if let g = gradient?.data {
                let grow = g + i * c, scale = invN * w
                for j in 0..<c { grow[j] = expf(z[j] - maxValue - logSum) * scale }
                grow[label] -= scale
                if let a = adjustment { for j in 0..<c { grow[j] *= a.scale[j] } }
            }
        }
        return Result(lossSum: lossSum, correct: correct, count: n)
    }
}
