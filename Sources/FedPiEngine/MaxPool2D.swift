import CKernels

/// Max pooling with a square window and equal stride (PyTorch's `max_pool2d(x, k)`, floor mode).
/// Input is (N, H, W, C), output (N, H/k, W/k, C); the position of each window's maximum is kept
/// for backward as one byte (window size is at most 16×16).
public final class MaxPool2D: Layer {
    public let name: String
    public let size: Int
    private var input: Tensor?
    private let output = Tensor(shape: [0])
    private let gradInput = Tensor(shape: [0])
    private var argmax: [UInt8] = []
    /// Backward writes the input gradient over the input tensor (it only needs `argmax`), saving a
    /// buffer as large as the previous layer's output: 4.7 MB per core for mnist-cnn's conv2.
    private var reuseInput = false

    public func allowInputReuse(_ allowed: Bool) { reuseInput = allowed }

    public init(_ name: String = "pool", size: Int = 2) {
        precondition((1...16).contains(size), "pool size must be 1...16")
        self.name = name
        self.size = size
    }

    public func replica() -> Layer { MaxPool2D(name, size: size) }

    public func outputShape(forInput shape: [Int]) throws -> [Int] {
        guard shape.count == 3, shape[0] >= size, shape[1] >= size else {
            throw ModelShapeError("\(name): \(size)x\(size) pooling needs an (H, W, C) input of at least that size, got \(shape)")
        }
        return [shape[0] / size, shape[1] / size, shape[2]]
    }

    public func forward(_ input: Tensor, training: Bool) -> Tensor {
        self.input = input
        let n = input.batch, h = input.shape[1], w = input.shape[2], c = input.shape[3]
        let oh = h / size, ow = w / size
        output.resize([n, oh, ow, c])
        if argmax.count < output.count { argmax = [UInt8](repeating: 0, count: output.count) }
        argmax.withUnsafeMutableBufferPointer { am in
            fedpi_maxpool_forward(input.data, n, h, w, c, size, output.data, am.baseAddress!)
        }
        return output
    }

    public func backward(_ gradOutput: Tensor, inputGradient: Bool) -> Tensor? {
        guard inputGradient, let input else { return nil }
        let gradInput = reuseInput ? input : self.gradInput
        gradInput.resize(input.shape)
        let n = input.batch, h = input.shape[1], w = input.shape[2], c = input.shape[3]
        argmax.withUnsafeBufferPointer { am in
            fedpi_maxpool_backward(gradOutput.data, am.baseAddress!, n, h, w, c, size, gradInput.data)
        }
        return gradInput
    }
}
