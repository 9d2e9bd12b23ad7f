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
    /// batch passes 1/total). `labels[i]` must be in 0..<C.
    public static func evaluate(logits: Tensor, labels: UnsafeBufferPointer<Int32>, gradient: Tensor? = nil,
                                gradientScale: Float? = nil) -> Result {
        let n = logits.batch, c = logits.sampleCount
        precondition(labels.count >= n, "fewer labels than logits rows")
        gradient?.resize(logits.shape)
        var lossSum = 0.0, correct = 0
        let invN = gradientScale ?? 1 / Float(n)
        for i in 0..<n {
            let row = logits.data + i * c
            let label = Int(labels[i])
            precondition(label >= 0 && label < c, "label \(label) outside 0..<\(c)")
            var maxValue = row[0], best = 0
            for j in 1..<c where row[j] > maxValue { maxValue = row[j]; best = j }
            if best == label { correct += 1 }
            var sum: Float = 0
            for j in 0..<c { sum += expf(row[j] - maxValue) }
            let logSum = logf(sum)
            lossSum += Double(logSum - (row[label] - maxValue))
            if let g = gradient?.data {
                let grow = g + i * c
                for j in 0..<c { grow[j] = expf(row[j] - maxValue - logSum) * invN }
                grow[label] -= invN
            }
        }
        return Result(lossSum: lossSum, correct: correct, count: n)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
