/// The arithmetic of aggregation: pure functions over flat parameter vectors, tested with numbers
/// worked out by hand. Policy (who counts, what a failure means) lives in `Strategy`.
public enum Aggregation {
    /// Streaming weighted mean: add updates one at a time, memory O(model) whatever the node count.
    public struct WeightedMean {
        private var sum: [Double]
        public private(set) var totalWeight: Double = 0
        public private(set) var count = 0

        public init(parameters: Int) { sum = [Double](repeating: 0, count: parameters) }

        public mutating func add(_ values: [Float], weight: Double) {
            precondition(values.count == sum.count && weight >= 0, "update of another layout or negative weight")
            sum.withUnsafeMutableBufferPointer { s in
                for i in 0..<values.count { s[i] += weight * Double(values[i]) }
            }
            totalWeight += weight
            count += 1
        }

        /// Σ wᵢ·xᵢ / Σ wᵢ; nil when nothing (or only zero weight) was added.
        public var mean: [Float]? {
            guard totalWeight > 0 else { return nil }
            return sum.map { Float($0 / totalWeight) }
        }
    }

    /// Per-coordinate median (robust to a minority of arbitrary updates); even counts take the mean
    /// of the two middle values.
    public static func coordinateMedian(_ updates: [[Float]]) -> [Float] {
        precondition(!updates.isEmpty, "median of no updates")
        var column = [Float](repeating: 0, count: updates.count)
        return (0..<updates[0].count).map { i in
            for k in updates.indices { column[k] = updates[k][i] }
            column.sort()
            let m = column.count / 2
            return column.count % 2 == 1 ? column[m] : (column[m - 1] + column[m]) / 2
        }
    }

    /// Per-coordinate mean after dropping the `trim` smallest and `trim` largest values.
    public static func trimmedMean(_ updates: [[Float]], trim: Int) -> [Float] {
        precondition(updates.count > 2 * trim, "trimming \(trim) from each side leaves nothing of \(updates.count) updates")
        var column = [Float](repeating: 0, count: updates.count)
        let kept = Double(updates.count - 2 * trim)
        return (0..<updates[0].count).map { i in
            for k in updates.indices { column[k] = updates[k][i] }
            column.sort()
            return Float(column[trim..<(column.count - trim)].reduce(0.0) { $0 + Double($1) } / kept)
        }
    }

    /// L2 norm of a vector (in Double).
    public static func norm(_ v: [Float]) -> Double { v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }

    /// Scales `v` down so its L2 norm is at most `bound` (unchanged when already within).
    public static func clipped(_ v: [Float], to bound: Double) -> [Float] {
        let n = norm(v)
        guard n > bound, n > 0 else { return v }
        let s = Float(bound / n)
        return v.map { $0 * s }
    }

    /// Centered clipping (Karimireddy, He and Jaggi 2021) around the coordinate median: each update's
    /// deviation from the median is scaled down to at most τ, the median of the deviations' norms,
    /// and the weighted mean of the clipped deviations is added to the median. Honest updates, whose
    /// deviations are about τ, count almost fully; a hostile one moves the result by at most
    /// τ·weight/Σweights, whatever its size or sign.
    public static func centeredClip(_ updates: [[Float]], weights: [Double]) -> [Float] {
        precondition(!updates.isEmpty && updates.count == weights.count, "centered clipping of no updates")
        let center = coordinateMedian(updates)
        let deviations = updates.map { zip($0, center).map { $0 - $1 } }
        let norms = deviations.map(norm).sorted()
        let tau = norms.count % 2 == 1 ? norms[norms.count / 2] : (norms[norms.count / 2 - 1] + norms[norms.count / 2]) / 2
        var mean = WeightedMean(parameters: center.count)
        for (d, w) in zip(deviations, weights) { mean.add(clipped(d, to: tau), weight: max(w, 0)) }
        guard tau > 0, let shift = mean.mean else { return center }
        return zip(center, shift).map { $0 + $1 }
    }
}
