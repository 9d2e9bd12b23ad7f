/// Name, shape and position of one parameter tensor inside the model's single buffer.
public struct ParameterInfo: Sendable, Equatable {
    /// Dotted key, identical to PyTorch's `state_dict` key for the same architecture (`conv1.weight`).
    public let name: String
    /// PyTorch layout: Dense `[out, in]`, Conv2D `[out, in, kh, kw]`, bias `[out]`.
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }

    public init(name: String, shape: [Int], offset: Int) {
        self.name = name
        self.shape = shape
        self.offset = offset
    }
}

/// What a layer asks for: a parameter of a shape and how to initialise it.
public struct ParameterRequest: Sendable {
    public enum Initializer: Sendable {
        /// U(-b, b); PyTorch's default for Linear and Conv weights and biases is b = 1/sqrt(fan_in).
        case uniform(bound: Float)
        case zeros
    }
    public let suffix: String
    public let shape: [Int]
    public let initializer: Initializer
}

/// All parameters of a model in one contiguous Float buffer, with gradients in a parallel buffer.
///
/// Optimizers, averaging and encoding are each one loop over `values`; layers reach their tensors
/// through `ParameterInfo.offset`.
public final class ParameterStore: @unchecked Sendable {
    public let entries: [ParameterInfo]
    public let count: Int
    public let values: UnsafeMutablePointer<Float>
    public let gradients: UnsafeMutablePointer<Float>
    /// Set when `values` belong to another store (a replica); keeps that store alive.
    private let valuesOwner: ParameterStore?

    init(entries: [ParameterInfo]) {
        self.entries = entries
        self.count = entries.last.map { $0.offset + $0.count } ?? 0
        values = .allocate(capacity: max(count, 1))
        values.initialize(repeating: 0, count: max(count, 1))
        gradients = .allocate(capacity: max(count, 1))
        gradients.initialize(repeating: 0, count: max(count, 1))
        valuesOwner = nil
    }

    /// A store that reads and writes `other`'s values but has gradients of its own.
    init(sharingValuesOf other: ParameterStore) {
        entries = other.entries
        count = other.count
        values = other.values
        gradients = .allocate(capacity: max(count, 1))
        gradients.initialize(repeating: 0, count: max(count, 1))
        valuesOwner = other
    }

    deinit {
        if valuesOwner == nil { values.deallocate() }
        gradients.deallocate()
    }

    public func info(named name: String) -> ParameterInfo? { entries.first { $0.name == name } }

    public func zeroGradients() { gradients.update(repeating: 0, count: count) }

    /// A copy of all values, in buffer order.
    public var flatValues: [Float] { Array(UnsafeBufferPointer(start: values, count: count)) }

    /// Replaces all values; `flat.count` must equal `count`.
    public func load(_ flat: [Float]) {
        precondition(flat.count == count, "parameter count mismatch: \(flat.count) vs \(count)")
        flat.withUnsafeBufferPointer { values.update(from: $0.baseAddress!, count: count) }
    }

    /// The values of one named tensor.
    public func values(of name: String) -> [Float]? {
        guard let e = info(named: name) else { return nil }
        return Array(UnsafeBufferPointer(start: values + e.offset, count: e.count))
    }
}
