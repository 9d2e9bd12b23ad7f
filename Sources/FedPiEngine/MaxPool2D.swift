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
        let x = input.data, y = output.data
        argmax.withUnsafeMutableBufferPointer { am in
            // For each output pixel: start from the window's first position, then fold in the others,
            // all channels at once (contiguous in NHWC). Strict ">" keeps the first maximum, as PyTorch.
            var o = 0
            for b in 0..<n {
                for i in 0..<oh {
                    for j in 0..<ow {
                        let base = x + ((b * h + i * size) * w + j * size) * c
                        let yo = y + o, ao = am.baseAddress! + o
                        yo.update(from: base, count: c)
                        ao.update(repeating: 0, count: c)
                        for pos in 1..<(size * size) {
                            let src = base + ((pos / size) * w + pos % size) * c
                            let code = UInt8(pos)
                            for ch in 0..<c {
                                let v = src[ch]
                                let better = v > yo[ch]
                                yo[ch] = better ? v : yo[ch]
                                ao[ch] = better ? code : ao[ch]
                            }
                        }
                        o += c
                    }
                }
            }
        }
        return output
    }

    public func backward(_ gradOutput: Tensor, inputGradient: Bool) -> Tensor? {
        guard inputGradient, let input else { return nil }
        let gradInput = reuseInput ? input : self.gradInput
        gradInput.resize(input.shape)
        let n = input.batch, h = input.shape[1], w = input.shape[2], c = input.shape[3]
        let oh = h / size, ow = w / size
        let dy = gradOutput.data, dx = gradInput.data
        argmax.withUnsafeBufferPointer { am in
            var o = 0
            for b in 0..<n {
                for i in 0..<oh {
                    for j in 0..<ow {
                        let base = dx + ((b * h + i * size) * w + j * size) * c
                        for pos in 0..<(size * size) {
                            let dst = base + ((pos / size) * w + pos % size) * c
                            let code = UInt8(pos)
                            for ch in 0..<c { dst[ch] = am[o + ch] == code ? dy[o + ch] : 0 }
                        }
                        o += c
                    }
                }
            }
        }
        if oh * size != h || ow * size != w {
            // floor mode left a last row/column outside every window: its gradient is zero
            zeroUncovered(dx, n: n, h: h, w: w, c: c, coveredH: oh * size, coveredW: ow * size)
        }
        return gradInput
    }

    private func zeroUncovered(_ dx: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int, c: Int, coveredH: Int, coveredW: Int) {
        for b in 0..<n {
            for i in 0..<h {
                for j in 0..<w where i >= coveredH || j >= coveredW {
                    (dx + ((b * h + i) * w + j) * c).update(repeating: 0, count: c)
                }
            }
        }
    }
}
