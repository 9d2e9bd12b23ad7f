import CKernels

/// Fully connected layer. Input is (N, F), output (N, O); weight is (O, F) as in `torch.nn.Linear`.
///
/// The input and weight gradients skip the output gradient's zeros (`GEMM.sparse`) when it has few
/// enough of them (`sparseLimit`), as it does after ReLU and dropout.
///
/// Between `beginBatch` and `endBatch` the weight gradient dW = Σ dYᵀ·X is not added per micro-batch:
/// the micro-batches' inputs and output gradients are kept and multiplied once, at `endBatch`. For
/// mnist-cnn's fc1 (9216 → 128) dW is 4.7 MB, so adding it per 16 samples was a memory-bound pass.
public final class Dense: Layer {
    public let name: String
    public let inputs: Int
    public let outputs: Int
    private var store: ParameterStore!
    private var weightOffset = 0, biasOffset = 0
    private var input: Tensor?
    private let output = Tensor(shape: [0])
    private let gradInput = Tensor(shape: [0])
    private var batchOpen = false
    /// Rows of X and dY kept since `beginBatch`, for one dW product at `endBatch`.
    private let batchInputs = Tensor(shape: [0]), batchGradients = Tensor(shape: [0])
    private var batchRows = 0
    /// Output gradients with at most one value in `sparseLimit` nonzero go through `GEMM.sparse` for
    /// the input and weight gradients; 0 turns that off, 1 sends every one there. After ReLU and
    /// dropout ~18% of fc1's output gradient in mnist-cnn is nonzero. On fc1 against OpenBLAS (`fedpi
    /// sparse-bench`: a batch's input gradients and weight gradient) the sparse products take 0.39× the
    /// time at 10% nonzero, 0.60× at 18%, 0.77× at 25%, 0.93× at 33%.
    public var sparseLimit = 3
    private let sparseScratch = Tensor(shape: [0])

    public init(_ name: String, inputs: Int, outputs: Int) {
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
    }

    public func replica() -> Layer {
        let copy = Dense(name, inputs: inputs, outputs: outputs)
        copy.sparseLimit = sparseLimit
        return copy
    }

    public var parameterRequests: [ParameterRequest] {
        let bound = 1 / Float(inputs).squareRoot()
        return [
            .init(suffix: "weight", shape: [outputs, inputs], initializer: .uniform(bound: bound)),
            .init(suffix: "bias", shape: [outputs], initializer: .uniform(bound: bound)),
        ]
    }

    public func bind(store: ParameterStore, offsets: [Int]) {
        self.store = store
        weightOffset = offsets[0]
        biasOffset = offsets[1]
    }

    public func outputShape(forInput shape: [Int]) throws -> [Int] {
        guard shape.reduce(1, *) == inputs, shape.count == 1 else {
            throw ModelShapeError("\(name): expects \(inputs) input features, got shape \(shape)")
        }
        return [outputs]
    }

    public func beginBatch() {
        batchOpen = true
        batchRows = 0
    }

    public func endBatch() {
        addWeightGradient(dy: batchGradients.data, x: batchInputs.data, rows: batchRows)
        batchRows = 0
        batchOpen = false
    }

    /// dW += dyᵀ·x over `rows` rows.
    private func addWeightGradient(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        guard rows > 0 else { return }
        if sparse(dy, count: rows * outputs) {
            GEMM.sparse(transA: true, m: outputs, n: inputs, k: rows, a: dy, lda: outputs, b: x, ldb: inputs,
                        beta: 1, c: store.gradients + weightOffset, ldc: inputs, scratch: sparseScratch)
            return
        }
        GEMM.gemm(
            transA: true, transB: false, m: outputs, n: inputs, k: rows,
            a: dy, lda: outputs, b: x, ldb: inputs, beta: 1, c: store.gradients + weightOffset, ldc: inputs)
    }

    /// Whether an output gradient is sparse enough for `GEMM.sparse`.
    private func sparse(_ dy: UnsafePointer<Float>, count: Int) -> Bool {
        sparseLimit > 0 && fedpi_nonzeros(dy, count) <= count / sparseLimit
    }

    public func forward(_ input: Tensor, training: Bool) -> Tensor {
        let n = input.batch
        self.input = input
        output.resize([n, outputs])
        let w = store.values + weightOffset, b = store.values + biasOffset
        for i in 0..<n { (output.data + i * outputs).update(from: b, count: outputs) }
        GEMM.gemm(
            transA: false, transB: true, m: n, n: outputs, k: inputs,
            a: input.data, lda: inputs, b: w, ldb: inputs, beta: 1, c: output.data, ldc: outputs)
        return output
    }

    public func backward(_ gradOutput: Tensor, inputGradient: Bool) -> Tensor? {
        guard let input else { preconditionFailure("\(name).backward before forward") }
        let n = input.batch
        let gb = store.gradients + biasOffset
        let dy = gradOutput.data
        for i in 0..<n {
            let row = dy + i * outputs
            for o in 0..<outputs { gb[o] += row[o] }
        }
        if batchOpen {
            batchInputs.reserve((batchRows + n) * inputs)
            batchGradients.reserve((batchRows + n) * outputs)
            (batchInputs.data + batchRows * inputs).update(from: input.data, count: n * inputs)
            (batchGradients.data + batchRows * outputs).update(from: dy, count: n * outputs)
            batchRows += n
        } else {
            addWeightGradient(dy: dy, x: input.data, rows: n)
        }
        guard inputGradient else { return nil }
        gradInput.resize(input.shape)
        if sparse(dy, count: n * outputs) {
            GEMM.sparse(transA: false, m: n, n: inputs, k: outputs, a: dy, lda: outputs, b: store.values + weightOffset,
                        ldb: inputs, beta: 0, c: gradInput.data, ldc: inputs, scratch: sparseScratch)
            return gradInput
        }
        GEMM.gemm(
            transA: false, transB: false, m: n, n: inputs, k: outputs,
            a: dy, lda: outputs, b: store.values + weightOffset, ldb: inputs, beta: 0,
            c: gradInput.data, ldc: inputs)
        return gradInput
    }
}
