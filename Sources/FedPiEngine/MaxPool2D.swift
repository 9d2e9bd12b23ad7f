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

    public init(_ name: String = "pool", size: Int = 2) {
        precondition((1...16).contains(size), "pool size must be 1...16")
        self.name = name
        self.size = size
    }

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
            var o = 0
            for b in 0..<n {
                for i in 0..<oh {
                    for j in 0..<ow {
                        let base = ((b * h + i * size) * w + j * size) * c
                        for ch in 0..<c {
                            var best = 0
                            var bestValue = x[base + ch]
                            for di in 0..<size {
                                for dj in 0..<size {
                                    let v = x[base + (di * w + dj) * c + ch]
                                    // strict ">" keeps the first maximum, as PyTorch does
                                    if v > bestValue { bestValue = v; best = di * size + dj }
                                }
                            }
                            y[o] = bestValue
                            am[o] = UInt8(best)
                            o += 1
                        }
                    }
                }
            }
        }
        return output
    }

    public func backward(_ gradOutput: Tensor, inputGradient: Bool) -> Tensor? {
        guard inputGradient, let input else { return nil }
        gradInput.resize(input.shape)
        gradInput.fill(0)
        let n = input.batch, h = input.shape[1], w = input.shape[2], c = input.shape[3]
        let oh = h / size, ow = w / size
        let dy = gradOutput.data, dx = gradInput.data
        argmax.withUnsafeBufferPointer { am in
            var o = 0
            for b in 0..<n {
                for i in 0..<oh {
                    for j in 0..<ow {
                        let base = ((b * h + i * size) * w + j * size) * c
                        for ch in 0..<c {
                            let pos = Int(am[o])
                            dx[base + ((pos / size) * w + pos % size) * c + ch] = dy[o]
                            o += 1
                        }
                    }
                }
            }
        }
        return gradInput
    }
}
