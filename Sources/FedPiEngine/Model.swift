/// A sequential network with all its parameters in one `ParameterStore`.
public final class Model: @unchecked Sendable {
    /// Model id from the zoo (`mnist-cnn`); travels with weights so a file names its architecture.
    public let id: String
    /// Per-sample input shape, `[H, W, C]`.
    public let inputShape: [Int]
    public let classes: Int
    public let layers: [Layer]
    public let parameters: ParameterStore
    /// Pixels are fed as (x/255 − mean)/std.
    public let normalization: Normalization

    public struct Normalization: Sendable, Equatable {
        public var mean: Float
        public var std: Float
        public init(mean: Float, std: Float) {
            self.mean = mean
            self.std = std
        }
    }

    /// Builds the network, checks that the layer shapes chain, and initialises the parameters from `seed`.
    public convenience init(id: String, inputShape: [Int], classes: Int, normalization: Normalization, layers: [Layer], seed: UInt64) throws {
        try self.init(id: id, inputShape: inputShape, classes: classes, normalization: normalization, layers: layers, sharing: nil)
        initialize(seed: seed)
    }

    private init(id: String, inputShape: [Int], classes: Int, normalization: Normalization, layers: [Layer], sharing: ParameterStore?) throws {
        self.id = id
        self.inputShape = inputShape
        self.classes = classes
        self.normalization = normalization
        self.layers = layers
        var shape = inputShape
        var entries: [ParameterInfo] = []
        var offsetsPerLayer: [[Int]] = []
        var names = Set<String>()
        var offset = 0
        for layer in layers {
            shape = try layer.outputShape(forInput: shape)
            var offsets: [Int] = []
            for request in layer.parameterRequests {
                let info = ParameterInfo(name: layer.name + "." + request.suffix, shape: request.shape, offset: offset)
                guard names.insert(info.name).inserted else { throw ModelShapeError("duplicate parameter name \(info.name)") }
                entries.append(info)
                offsets.append(offset)
                offset += info.count
            }
            offsetsPerLayer.append(offsets)
        }
        guard shape == [classes] else {
            throw ModelShapeError("network ends in shape \(shape), expected [\(classes)] class scores")
        }
        parameters = sharing.map { ParameterStore(sharingValuesOf: $0) } ?? ParameterStore(entries: entries)
        for (layer, offsets) in zip(layers, offsetsPerLayer) { layer.bind(store: parameters, offsets: offsets) }
        // The model's input belongs to the caller; every other input belongs to the layer before.
        for (i, layer) in layers.enumerated() { layer.allowInputReuse(i > 0 && !layers[i - 1].readsOutputInBackward) }
    }

    /// A second copy of the network that shares this model's parameter values but has its own
    /// gradients and activation buffers, so another core can run forward and backward beside this one.
    public func replica() -> Model {
        // Same layers and shapes as a model that already built, so this cannot throw.
        try! Model(id: id, inputShape: inputShape, classes: classes, normalization: normalization,
                   layers: layers.map { $0.replica() }, sharing: parameters)
    }

    public var parameterCount: Int { parameters.count }

    /// Draws fresh initial values (PyTorch's default distributions) and restarts dropout masks.
    public func initialize(seed: UInt64) {
        var generator = SeededGenerator(seed: seed, stream: "init")
        var requestIndex = 0
        let requests = layers.flatMap(\.parameterRequests)
        for entry in parameters.entries {
            let p = parameters.values + entry.offset
            switch requests[requestIndex].initializer {
            case .zeros:
                p.update(repeating: 0, count: entry.count)
            case .uniform(let bound):
                for i in 0..<entry.count { p[i] = (generator.nextUnitFloat() * 2 - 1) * bound }
            }
            requestIndex += 1
        }
        reseedDropout(seed)
    }

    /// Restarts every dropout layer's mask sequence from `seed`.
    public func reseedDropout(_ seed: UInt64) {
        for case let dropout as Dropout in layers { dropout.reseed(seed) }
    }

    /// When set, forward and backward add each layer's time to it (`fedpi train --profile`).
    public var profile: LayerProfile?

    /// Class scores (N, classes) for an input batch (N, H, W, C).
    public func forward(_ input: Tensor, training: Bool) -> Tensor {
        var x = input
        for (i, layer) in layers.enumerated() {
            let start = profile == nil ? nil : ContinuousClock.now
            x = layer.forward(x, training: training)
            if let start { profile?.forward[i] += ContinuousClock.now - start }
        }
        return x
    }

    /// Brackets the micro-batches of one batch, during which the parameter values stay fixed: layers
    /// keep what they derive from the weights and defer gradient work (see `Layer.beginBatch`).
    /// `endBatch` must come before the gradients are read.
    public func beginBatch() { for layer in layers { layer.beginBatch() } }
    public func endBatch() { for layer in layers { layer.endBatch() } }

    /// Back-propagates d(loss)/d(logits) and adds the parameter gradients to `parameters.gradients`.
    public func backward(_ gradLogits: Tensor) {
        var g = gradLogits
        for (i, layer) in layers.enumerated().reversed() {
            let start = profile == nil ? nil : ContinuousClock.now
            let next = layer.backward(g, inputGradient: i > 0)
            if let start { profile?.backward[i] += ContinuousClock.now - start }
            guard let next else { break }
            g = next
        }
    }
}

/// Time spent in each layer, summed over calls.
public struct LayerProfile: Sendable {
    public var names: [String]
    public var forward: [Duration]
    public var backward: [Duration]

    public init(layers: [Layer]) {
        names = layers.map(\.name)
        forward = Array(repeating: .zero, count: layers.count)
        backward = Array(repeating: .zero, count: layers.count)
    }
}
