/// Max pooling with a square window and equal stride (PyTorch's `max_pool2d(x, k)`, floor mode).
/// Input is (N, H, W, C), output (N, H/k, W/k, C); the arg-max of each window is kept for backward.
public final class MaxPool2D: Layer {
    public let name: String
    public let size: Int
    private var input: Tensor?
    private let output = Tensor(shape: [0])
    private let gradInput = Tensor(shape: [0])
    private var argmax: [Int32] = []

    public init(_ name: String = "pool", size: Int = 2) {
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
        if argmax.count < output.count { argmax = [Int32](repeating: 0, count: output.count) }
        let x = input.data, y = output.data
        argmax.withUnsafeMutableBufferPointer { am in
            var o = 0
            for b in 0..<n {
                for i in 0..<oh {
                    for j in 0..<ow {
                        let base = ((b * h + i * size) * w + j * size) * c
                        for ch in 0..<c {
                            var best = base + ch
                            var bestValue = x[best]
                            for di in 0..<size {
                                for dj in 0..<size {
                                    let idx = base + (di * w + dj) * c + ch
                                    // strict ">" keeps the first maximum, as PyTorch does
                                    if x[idx] > bestValue { bestValue = x[idx]; best = idx }
                                }
                            }
                            y[o] = bestValue
                            am[o] = Int32(truncatingIfNeeded: best)
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
        let dy = gradOutput.data, dx = gradInput.data
        argmax.withUnsafeBufferPointer { am in
            for o in 0..<gradOutput.count { dx[Int(am[o])] += dy[o] }
        }
        return gradInput
    }
}
