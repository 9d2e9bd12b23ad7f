/// One step of a sequential network, with its forward and backward pass side by side.
///
/// A layer owns its output and input-gradient tensors and reuses them between calls. The input tensor
/// handed to `forward` belongs to the previous layer and must not change before the matching `backward`,
/// with one exception: `ReLU` works in place, which is safe because no layer reads its own output in
/// `backward` (ReLU itself only reads the sign, which a following ReLU keeps).
public protocol Layer: AnyObject {
    /// Module name as in PyTorch (`conv1`); parameter keys are `name + "." + suffix`.
    var name: String { get }
    /// Parameters this layer needs, in the order `bind` receives their offsets.
    var parameterRequests: [ParameterRequest] { get }
    /// Gives the layer the shared store and where its parameters live in it.
    func bind(store: ParameterStore, offsets: [Int])
    /// Per-sample output shape for a per-sample input shape (`[H, W, C]` or `[features]`).
    func outputShape(forInput shape: [Int]) throws -> [Int]
    /// Computes the output for a batch. `training` switches dropout on.
    func forward(_ input: Tensor, training: Bool) -> Tensor
    /// Adds this layer's parameter gradients to the store's (so micro-batches accumulate; zero them
    /// before a batch) and returns the gradient for its input
    /// (or nil when `inputGradient` is false, as for the first layer).
    func backward(_ gradOutput: Tensor, inputGradient: Bool) -> Tensor?
    /// A new layer with the same configuration and its own buffers (for one more core to train on).
    func replica() -> Layer
    /// True when `backward` reads this layer's own forward output (ReLU reads its sign).
    var readsOutputInBackward: Bool { get }
    /// Told by the model whether `backward` may overwrite the input tensor (when the layer that
    /// produced it will not read it again). Layers that can use this to save memory do.
    func allowInputReuse(_ allowed: Bool)
    /// From now until `endBatch` the parameter values do not change (a batch's micro-batches): the layer
    /// may keep what it derives from them and defer gradient work to `endBatch`.
    func beginBatch()
    /// Adds any gradient deferred since `beginBatch` to the store and forgets derived values. Without
    /// `beginBatch`, every `backward` adds its gradients at once and nothing is kept.
    func endBatch()
}

extension Layer {
    public var parameterRequests: [ParameterRequest] { [] }
    public func bind(store: ParameterStore, offsets: [Int]) {}
    public var readsOutputInBackward: Bool { false }
    public func allowInputReuse(_ allowed: Bool) {}
    public func beginBatch() {}
    public func endBatch() {}
}

/// A network description that cannot be built, with the reason.
public struct ModelShapeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
