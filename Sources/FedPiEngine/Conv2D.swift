import CKernels

/// 2-D convolution, stride 1, by im2col + GEMM, by Winograd, or directly for one input channel. Input
/// is (N, H, W, C) — NHWC — and output (N, OH, OW, OC); the weight keeps PyTorch's (OC, C, KH, KW)
/// layout so files interchange with `torch.nn.Conv2d`, and is repacked once per batch to (OC, KH, KW,
/// C) so im2col copies whole pixels (to (KH·KW, OC) for the direct kernel).
///
/// The column matrix is built for a chunk of samples at a time (at most `columnBudget` floats) and
/// rebuilt in the backward pass instead of being kept, so memory stays small at any batch size.
///
/// The backward pass skips the output gradient's zeros when at most 1 in `sparseLimit` values is
/// nonzero (`fedpi_conv_sparse_backward`), for im2col and Winograd layers: after max pooling, ReLU and
/// dropout that is the common case.
public final class Conv2D: Layer {
    public enum Padding: Sendable { case valid, same }
    /// How the convolution is computed. `automatic` uses Winograd F(4×4, 3×3) for 3×3 kernels with at
    /// least 8 input and output channels (conv2 of mnist-cnn), the direct kernel for one input channel
    /// with valid padding and kernels up to 7×7 (conv1), and im2col otherwise. A choice that does not
    /// fit the layer falls back to im2col.
    public enum Algorithm: Sendable { case automatic, im2col, winograd, direct }

    public let name: String
    public let inputChannels: Int
    public let outputChannels: Int
    public let kernelSize: Int
    public let padding: Padding
    public var algorithm: Algorithm = .automatic
    /// Upper bound on floats in the im2col buffer (2 MiB); a memory/speed knob, not a correctness one.
    public static let columnBudget = 1 << 19

    private var store: ParameterStore!
    private var weightOffset = 0, biasOffset = 0
    private var input: Tensor?
    private var geometry = Geometry(h: 0, w: 0, c: 0, oh: 0, ow: 0, k: 0, pad: 0, ks: 0)
    private let output = Tensor(shape: [0])
    private let gradInput = Tensor(shape: [0])
    /// im2col of the current chunk; in backward it is reused for the column gradient once dW has it.
    private let columns = Tensor(shape: [0])
    private let packedWeight: Tensor
    private let packedGradient: Tensor
    private let winogradFilters = Tensor(shape: [0])
    private let winogradAdjointFilters = Tensor(shape: [0])
    private let winogradScratch = Tensor(shape: [0])
    private let winogradGradient = Tensor(shape: [0])
    /// Between `beginBatch` and `endBatch` the weights are fixed: the packed weight and the Winograd
    /// filters are made once per batch, and the weight gradient is summed in its working layout
    /// (packed, or dU) and folded into the store once, at `endBatch`.
    private var batchOpen = false
    private var packedReady = false, filtersReady = false, adjointFiltersReady = false
    /// Weight gradient summed in the working layout and not yet folded into the store: dU (Winograd) or
    /// the packed (OC, KH, KW, C) gradient (im2col, direct, sparse). A Winograd layer can have both in a
    /// batch, when some micro-batches took the sparse path.
    private var winogradPending = false, packedPending = false
    /// Entries of the sparse backward pass.
    private let sparseScratch = Tensor(shape: [0])
    /// Output gradients with at most one value in `sparseLimit` nonzero take the sparse backward pass
    /// (`fedpi_conv_sparse_backward`), unless the layer uses the direct kernel; 1 sends every pass
    /// there, 0 none. After max pooling at most 1 in 4 values is nonzero, and ReLU and dropout thin
    /// them further: 7–11% in mnist-cnn's conv2. On conv2 against Winograd (`fedpi sparse-bench`) the
    /// sparse pass takes 0.66× the time at 7% nonzero, 0.84× at 10%, 0.96× at 12.5%, 1.11× at 15%.
    public var sparseLimit = 8
    /// Whether the last backward pass was the sparse one.
    public private(set) var lastBackwardWasSparse = false

    public init(_ name: String, inputChannels: Int, outputChannels: Int, kernelSize: Int, padding: Padding = .valid) {
        self.name = name
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.padding = padding
        let k = inputChannels * kernelSize * kernelSize
        packedWeight = Tensor(shape: [outputChannels, k])
        packedGradient = Tensor(shape: [outputChannels, k])
    }

    public func replica() -> Layer {
        let copy = Conv2D(name, inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, padding: padding)
        copy.algorithm = algorithm
        copy.sparseLimit = sparseLimit
        return copy
    }

    var usesWinograd: Bool {
        guard kernelSize == 3 else { return false }
        switch algorithm {
        case .im2col, .direct: return false
        case .winograd: return true
        case .automatic: return inputChannels >= 8 && outputChannels >= 8
        }
    }

    var usesDirect: Bool {
        guard inputChannels == 1, padding == .valid, kernelSize <= 7 else { return false }
        return algorithm == .automatic || algorithm == .direct
    }

    public var parameterRequests: [ParameterRequest] {
        let bound = 1 / Float(inputChannels * kernelSize * kernelSize).squareRoot()
        return [
            .init(suffix: "weight", shape: [outputChannels, inputChannels, kernelSize, kernelSize],
                  initializer: .uniform(bound: bound)),
            .init(suffix: "bias", shape: [outputChannels], initializer: .uniform(bound: bound)),
        ]
    }

    public func bind(store: ParameterStore, offsets: [Int]) {
        self.store = store
        weightOffset = offsets[0]
        biasOffset = offsets[1]
    }

    private var pad: Int { padding == .same ? (kernelSize - 1) / 2 : 0 }

    public func outputShape(forInput shape: [Int]) throws -> [Int] {
        guard shape.count == 3, shape[2] == inputChannels else {
            throw ModelShapeError("\(name): expects (H, W, \(inputChannels)) input, got \(shape)")
        }
        let oh = shape[0] + 2 * pad - kernelSize + 1, ow = shape[1] + 2 * pad - kernelSize + 1
        guard oh > 0, ow > 0 else {
            throw ModelShapeError("\(name): \(kernelSize)x\(kernelSize) kernel does not fit input \(shape)")
        }
        return [oh, ow, outputChannels]
    }

    struct Geometry { var h, w, c, oh, ow, k, pad, ks: Int }

    private func winogradShape(_ g: Geometry) -> Winograd.Shape {
        Winograd.Shape(h: g.h, w: g.w, inputs: inputChannels, outputs: outputChannels, pad: g.pad, oh: g.oh, ow: g.ow)
    }

    public func beginBatch() {
        batchOpen = true
        packedReady = false
        filtersReady = false
        adjointFiltersReady = false
    }

    public func endBatch() {
        flushWeightGradient()
        batchOpen = false
        packedReady = false
        filtersReady = false
        adjointFiltersReady = false
    }

    /// A pass added its weight gradient in the working layout: folded now, or at `endBatch` in a batch.
    private func weightGradientAdded(winograd: Bool) {
        if winograd { winogradPending = true } else { packedPending = true }
        if !batchOpen { flushWeightGradient() }
    }

    /// Folds the weight gradient summed in the working layouts into the store's.
    private func flushWeightGradient() {
        if winogradPending {
            Winograd.addFilterGradient(winogradGradient.data, inputs: inputChannels, outputs: outputChannels,
                                       into: store.gradients + weightOffset)
        }
        if packedPending { unpackGradient() }
        winogradPending = false
        packedPending = false
    }

    /// The Winograd filters for the forward pass (or, transposed, for the input gradient), transformed
    /// once per batch.
    private func filters(forInputGradient transposed: Bool) -> UnsafeMutablePointer<Float> {
        let count = Winograd.positions * inputChannels * outputChannels
        if !filtersReady {
            winogradFilters.resize([count])
            Winograd.transformFilters(store.values + weightOffset, outputChannels: outputChannels, inputChannels: inputChannels,
                                      into: winogradFilters.data)
            filtersReady = batchOpen
            adjointFiltersReady = false
        }
        guard transposed else { return winogradFilters.data }
        if !adjointFiltersReady {
            winogradAdjointFilters.resize([count])
            Winograd.transposeFilters(winogradFilters.data, outputChannels: outputChannels, inputChannels: inputChannels,
                                      into: winogradAdjointFilters.data)
            adjointFiltersReady = batchOpen
        }
        return winogradAdjointFilters.data
    }

    private func samplesPerChunk(_ g: Geometry) -> Int { max(1, Conv2D.columnBudget / max(1, g.oh * g.ow * g.k)) }

    // MARK: forward

    public func forward(_ input: Tensor, training: Bool) -> Tensor {
        let s = input.shape
        let g = Geometry(
            h: s[1], w: s[2], c: s[3], oh: s[1] + 2 * pad - kernelSize + 1, ow: s[2] + 2 * pad - kernelSize + 1,
            k: inputChannels * kernelSize * kernelSize, pad: pad, ks: kernelSize)
        geometry = g
        self.input = input
        let n = input.batch, oc = outputChannels, pixels = g.oh * g.ow
        output.resize([n, g.oh, g.ow, oc])
        if usesDirect {
            packWeight()
            fedpi_conv1ch_forward(input.data, n, g.h, g.w, g.ks, oc, packedWeight.data, store.values + biasOffset, output.data)
            return output
        }
        if usesWinograd {
            Winograd.convolve(input.data, batch: n, winogradShape(g), filters: filters(forInputGradient: false),
                              bias: store.values + biasOffset, into: output.data, scratch: winogradScratch)
            return output
        }
        packWeight()
        let bias = store.values + biasOffset
        for p in 0..<(n * pixels) { (output.data + p * oc).update(from: bias, count: oc) }
        let chunk = samplesPerChunk(g)
        var n0 = 0
        while n0 < n {
            let n1 = min(n, n0 + chunk), rows = (n1 - n0) * pixels
            columns.resize([rows, g.k])
            Conv2D.im2col(input.data, samples: n0..<n1, g, into: columns.data)
            GEMM.gemm(
                transA: false, transB: true, m: rows, n: oc, k: g.k,
                a: columns.data, lda: g.k, b: packedWeight.data, ldb: g.k, beta: 1,
                c: output.data + n0 * pixels * oc, ldc: oc)
            n0 = n1
        }
        return output
    }

    // MARK: backward

    public func backward(_ gradOutput: Tensor, inputGradient: Bool) -> Tensor? {
        guard let input else { preconditionFailure("\(name).backward before forward") }
        let g = geometry, n = input.batch, oc = outputChannels, pixels = g.oh * g.ow
        let dy = gradOutput.data
        let gb = store.gradients + biasOffset
        if usesDirect {
            if !packedPending { packedGradient.fill(0) }
            fedpi_conv1ch_gradient(input.data, dy, n, g.h, g.w, g.ks, oc, packedGradient.data, gb)
            weightGradientAdded(winograd: false)
            guard inputGradient else { return nil }
            gradInput.resize(input.shape)
            packWeight()
            fedpi_conv1ch_input_gradient(dy, n, g.h, g.w, g.ks, oc, packedWeight.data, gradInput.data)
            return gradInput
        }
        for p in 0..<(n * pixels) {
            let row = dy + p * oc
            for o in 0..<oc { gb[o] += row[o] }
        }
        if sparseBackward(input, dy, g, inputGradient: inputGradient) { return inputGradient ? gradInput : nil }
        if usesWinograd {
            // weight gradient and input gradient both by Winograd: no column matrix at all
            winogradGradient.resize([Winograd.positions * inputChannels * oc])
            if inputGradient { gradInput.resize(input.shape) }
            Winograd.backward(input.data, dy, batch: n, winogradShape(g), filterGradient: winogradGradient.data,
                              accumulate: winogradPending, transposedFilters: inputGradient ? filters(forInputGradient: true) : nil,
                              inputGradient: inputGradient ? gradInput.data : nil, scratch: winogradScratch)
            weightGradientAdded(winograd: true)
            return inputGradient ? gradInput : nil
        }
        if inputGradient {
            gradInput.resize(input.shape)
            gradInput.fill(0)
        }
        let chunk = samplesPerChunk(g)
        var n0 = 0
        while n0 < n {
            let n1 = min(n, n0 + chunk), rows = (n1 - n0) * pixels
            let dyChunk = dy + n0 * pixels * oc
            columns.resize([rows, g.k])
            Conv2D.im2col(input.data, samples: n0..<n1, g, into: columns.data)
            GEMM.gemm(
                transA: true, transB: false, m: oc, n: g.k, k: rows,
                a: dyChunk, lda: oc, b: columns.data, ldb: g.k, beta: n0 == 0 && !packedPending ? 0 : 1,
                c: packedGradient.data, ldc: g.k)
            if inputGradient {
                GEMM.gemm(
                    transA: false, transB: false, m: rows, n: g.k, k: oc,
                    a: dyChunk, lda: oc, b: packedWeight.data, ldb: g.k, beta: 0,
                    c: columns.data, ldc: g.k)
                Conv2D.col2imAdd(columns.data, samples: n0..<n1, g, into: gradInput.data)
            }
            n0 = n1
        }
        weightGradientAdded(winograd: false)
        return inputGradient ? gradInput : nil
    }

    /// The backward pass over dy's nonzeros alone, when there are at most 1 in `sparseLimit`. Weight
    /// gradient into the packed gradient, input gradient into `gradInput`. False, having changed
    /// nothing, when dy is denser or the layer uses the direct kernel.
    private func sparseBackward(_ input: Tensor, _ dy: UnsafePointer<Float>, _ g: Geometry, inputGradient: Bool) -> Bool {
        let n = input.batch, total = n * g.oh * g.ow * outputChannels
        lastBackwardWasSparse = false
        guard !usesDirect, sparseLimit > 0, input.count < Int(Int32.max) else { return false }
        var shape = fedpi_conv_shape(n: n, h: g.h, w: g.w, c: g.c, oh: g.oh, ow: g.ow, oc: outputChannels, ks: g.ks, pad: g.pad)
        let limit = total / sparseLimit
        sparseScratch.reserve((fedpi_conv_sparse_scratch_bytes(&shape) + 3) / 4)
        packWeight()
        if !packedPending { packedGradient.fill(0) }
        if inputGradient { gradInput.resize(input.shape) }
        let found = fedpi_conv_sparse_backward(input.data, dy, &shape, packedWeight.data, packedGradient.data,
                                               inputGradient ? gradInput.data : nil, limit, sparseScratch.data)
        guard found >= 0 else { return false }
        weightGradientAdded(winograd: false)
        lastBackwardWasSparse = true
        return true
    }

    // MARK: weight layout

    /// (OC, C, KH, KW) → (OC, KH, KW, C), or (OC, 1, KH, KW) → (KH·KW, OC) for the direct kernel;
    /// once per batch.
    private func packWeight() {
        if packedReady { return }
        packedReady = batchOpen
        let w = store.values + weightOffset, p = packedWeight.data
        let c = inputChannels, ks = kernelSize, oc = outputChannels
        if usesDirect {
            let taps = ks * ks
            for o in 0..<oc { for t in 0..<taps { p[t * oc + o] = w[o * taps + t] } }
            return
        }
        for o in 0..<outputChannels {
            for ci in 0..<c {
                for kh in 0..<ks {
                    for kw in 0..<ks {
                        p[((o * ks + kh) * ks + kw) * c + ci] = w[((o * c + ci) * ks + kh) * ks + kw]
                    }
                }
            }
        }
    }

    /// (OC, KH, KW, C) or (KH·KW, OC) → (OC, C, KH, KW), added to the gradient buffer.
    private func unpackGradient() {
        let gw = store.gradients + weightOffset, p = packedGradient.data
        let c = inputChannels, ks = kernelSize, oc = outputChannels
        if usesDirect {
            let taps = ks * ks
            for o in 0..<oc { for t in 0..<taps { gw[o * taps + t] += p[t * oc + o] } }
            return
        }
        for o in 0..<outputChannels {
            for ci in 0..<c {
                for kh in 0..<ks {
                    for kw in 0..<ks {
                        gw[((o * c + ci) * ks + kh) * ks + kw] += p[((o * ks + kh) * ks + kw) * c + ci]
                    }
                }
            }
        }
    }

    // MARK: im2col

    /// Rows are output pixels (n, oh, ow) of the given samples; columns are (kh, kw, c).
    static func im2col(_ x: UnsafePointer<Float>, samples: Range<Int>, _ g: Geometry, into cols: UnsafeMutablePointer<Float>) {
        var row = cols
        let run = g.ks * g.c  // one kernel row of pixels is contiguous in NHWC
        for n in samples {
            let image = x + n * g.h * g.w * g.c
            for oh in 0..<g.oh {
                for ow in 0..<g.ow {
                    let iw0 = ow - g.pad
                    for kh in 0..<g.ks {
                        let dst = row + kh * run
                        let ih = oh + kh - g.pad
                        if ih < 0 || ih >= g.h {
                            dst.update(repeating: 0, count: run)
                        } else if iw0 >= 0 && iw0 + g.ks <= g.w {
                            dst.update(from: image + (ih * g.w + iw0) * g.c, count: run)
                        } else {
                            for kw in 0..<g.ks {
                                let iw = iw0 + kw
                                if iw < 0 || iw >= g.w {
                                    (dst + kw * g.c).update(repeating: 0, count: g.c)
                                } else {
                                    (dst + kw * g.c).update(from: image + (ih * g.w + iw) * g.c, count: g.c)
                                }
                            }
                        }
                    }
                    row += g.k
                }
            }
        }
    }

    /// The adjoint of `im2col`: adds every column entry back onto the pixel it was copied from.
    static func col2imAdd(_ cols: UnsafePointer<Float>, samples: Range<Int>, _ g: Geometry, into dx: UnsafeMutablePointer<Float>) {
        var row = cols
        for n in samples {
            let image = dx + n * g.h * g.w * g.c
            for oh in 0..<g.oh {
                for ow in 0..<g.ow {
                    for kh in 0..<g.ks {
                        let ih = oh + kh - g.pad
                        if ih >= 0 && ih < g.h {
                            for kw in 0..<g.ks {
                                let iw = ow + kw - g.pad
                                if iw >= 0 && iw < g.w {
                                    let src = row + (kh * g.ks + kw) * g.c
                                    let dst = image + (ih * g.w + iw) * g.c
                                    for ci in 0..<g.c { dst[ci] += src[ci] }
                                }
                            }
                        }
                    }
                    row += g.k
                }
            }
        }
    }
}
