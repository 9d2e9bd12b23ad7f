import CKernels

/// Rectified linear unit, elementwise on any shape, computed in place: forward overwrites its input
/// (which no layer before it needs again) and backward overwrites the incoming gradient. This halves
/// the activation memory of the CNN, which is what keeps a worker within a Pi's budget.
public final class ReLU: Layer {
    public let name: String
    private var output: Tensor?

    public init(_ name: String = "relu") { self.name = name }

    public func replica() -> Layer { ReLU(name) }

    public var readsOutputInBackward: Bool { true }

    public func outputShape(forInput shape: [Int]) throws -> [Int] { shape }

    public func forward(_ input: Tensor, training: Bool) -> Tensor {
        let x = input.data
        for i in 0..<input.count { x[i] = max(x[i], 0) }
        output = input
        return input
    }

    public func backward(_ gradOutput: Tensor, inputGradient: Bool) -> Tensor? {
        guard inputGradient, let output else { return nil }
        fedpi_relu_backward(output.data, gradOutput.data, gradOutput.count)
        return gradOutput
    }
}

/// Inverted dropout: in training each element is zeroed with probability `rate` and the rest scaled
/// by 1/(1-rate); in evaluation it passes the input through. The mask comes from a seeded generator
/// and is not stored: backward replays the generator from the state forward started with.
public final class Dropout: Layer {
    public let name: String
    public let rate: Float
    private var generator: SeededGenerator
    private var maskStart: SeededGenerator
    private let output = Tensor(shape: [0])
    private var wasTraining = false

    public init(_ name: String = "dropout", rate: Float, seed: UInt64 = 0) {
        precondition(rate >= 0 && rate < 1, "dropout rate must be in [0, 1)")
        self.name = name
        self.rate = rate
        self.generator = SeededGenerator(seed: seed, stream: "dropout." + name)
        self.maskStart = generator
    }

    public func replica() -> Layer { Dropout(name, rate: rate) }

    /// Restarts the mask sequence (the model does this from its seed).
    public func reseed(_ seed: UInt64) { generator = SeededGenerator(seed: seed, stream: "dropout." + name) }

    public func outputShape(forInput shape: [Int]) throws -> [Int] { shape }

    public func forward(_ input: Tensor, training: Bool) -> Tensor {
        wasTraining = training && rate > 0
        guard wasTraining else { return input }
        output.resize(input.shape)
        maskStart = generator
        applyMask(from: input.data, to: output.data, count: input.count, using: &generator)
        return output
    }

    /// Backward multiplies the incoming gradient by the same mask, in place.
    public func backward(_ gradOutput: Tensor, inputGradient: Bool) -> Tensor? {
        guard inputGradient else { return nil }
        guard wasTraining else { return gradOutput }
        var replay = maskStart
        applyMask(from: gradOutput.data, to: gradOutput.data, count: gradOutput.count, using: &replay)
        return gradOutput
    }

    /// Keeps an element when a uniform draw is below keep·2^bits: 8-bit draws (eight per 64-bit number)
    /// when that is exact, as for rates 0.25 and 0.5, else 16-bit draws (`fedpi_dropout`).
    private func applyMask(from x: UnsafeMutablePointer<Float>, to y: UnsafeMutablePointer<Float>, count: Int, using g: inout SeededGenerator) {
        let keep = 1 - rate
        let exact8 = (Double(keep) * 256).rounded() == Double(keep) * 256
        let bits = exact8 ? 8 : 16
        let threshold = UInt64((Double(keep) * Double(1 << bits)).rounded())
        g.withState { fedpi_dropout(x, y, count, $0, Int32(bits), threshold, 1 / keep) }
    }
}

/// Flattens (N, H, W, C) to (N, C·H·W) in PyTorch's channel-major order, so the next Dense layer's
/// weight is laid out exactly like `torch.flatten` of an NCHW tensor would require.
public final class Flatten: Layer {
    public let name: String
    private var inputShape: [Int] = []
    private let output = Tensor(shape: [0])
    private let gradInput = Tensor(shape: [0])

    public init(_ name: String = "flatten") { self.name = name }

    public func replica() -> Layer { Flatten(name) }

    public func outputShape(forInput shape: [Int]) throws -> [Int] { [shape.reduce(1, *)] }

    public func forward(_ input: Tensor, training: Bool) -> Tensor {
        inputShape = input.shape
        let n = input.batch, per = input.sampleCount
        output.resize([n, per])
        guard input.shape.count == 4 else {
            output.data.update(from: input.data, count: input.count)
            return output
        }
        let hw = input.shape[1] * input.shape[2], c = input.shape[3]
        for b in 0..<n { fedpi_transpose(input.data + b * per, hw, c, output.data + b * per) }  // (HW, C) → (C, HW)
        return output
    }

    public func backward(_ gradOutput: Tensor, inputGradient: Bool) -> Tensor? {
        guard inputGradient else { return nil }
        gradInput.resize(inputShape)
        guard inputShape.count == 4 else {
            gradInput.data.update(from: gradOutput.data, count: gradOutput.count)
            return gradInput
        }
        let n = inputShape[0], hw = inputShape[1] * inputShape[2], c = inputShape[3], per = hw * c
        for b in 0..<n { fedpi_transpose(gradOutput.data + b * per, c, hw, gradInput.data + b * per) }
        return gradInput
    }
}
