/// A reusable float buffer with a shape; reference type so layers can hand buffers on without copies.
///
/// Image activations are NHWC (`[batch, height, width, channels]`); dense activations are `[batch, features]`.
/// A tensor only grows: `resize` keeps the allocation when the new shape fits, so a training loop allocates
/// once per layer and never again.
public final class Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    public private(set) var count: Int
    public private(set) var capacity: Int
    public private(set) var data: UnsafeMutablePointer<Float>

    public init(shape: [Int]) {
        let n = shape.reduce(1, *)
        precondition(n >= 0, "negative tensor size")
        self.shape = shape
        self.count = n
        self.capacity = max(n, 1)
        self.data = .allocate(capacity: capacity)
        data.initialize(repeating: 0, count: capacity)
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "values do not match shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    deinit { data.deallocate() }

    /// Changes the shape, growing the allocation only when needed. Contents are unspecified afterwards.
    public func resize(_ newShape: [Int]) {
        let n = newShape.reduce(1, *)
        if n > capacity {
            data.deallocate()
            capacity = n
            data = .allocate(capacity: n)
            data.initialize(repeating: 0, count: n)
        }
        shape = newShape
        count = n
    }

    /// Grows the allocation to hold at least `n` floats, keeping the current values (shape unchanged):
    /// for buffers that are filled piece by piece.
    public func reserve(_ n: Int) {
        guard n > capacity else { return }
        let grown = max(n, capacity * 2)
        let fresh = UnsafeMutablePointer<Float>.allocate(capacity: grown)
        fresh.initialize(from: data, count: capacity)
        (fresh + capacity).initialize(repeating: 0, count: grown - capacity)
        data.deallocate()
        data = fresh
        capacity = grown
    }

    public var batch: Int { shape.first ?? 0 }
    /// Elements per sample (everything but the batch dimension).
    public var sampleCount: Int { shape.count > 1 ? shape.dropFirst().reduce(1, *) : 1 }

    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: data, count: count) }
    public var array: [Float] { Array(buffer) }

    public func fill(_ value: Float) { data.update(repeating: value, count: count) }
}
