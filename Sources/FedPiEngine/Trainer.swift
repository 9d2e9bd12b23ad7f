/// Anything that can fill an input batch: the engine does not care where images live.
public protocol BatchProvider {
    var count: Int { get }
    /// Per-sample shape `[H, W, C]`.
    var sampleShape: [Int] { get }
    func label(at index: Int) -> Int
    /// Resizes `input` to `[indices.count] + sampleShape`, writes the normalised pixels of those samples
    /// into it, and their labels into `labels`.
    func fillBatch(_ indices: ArraySlice<Int>, normalization: Model.Normalization, into input: Tensor, labels: inout [Int32])
    /// A read that failed while filling batches (a provider backed by a file), or nil; training stops
    /// with it as the reason at the end of the epoch.
    var readFailure: String? { get }
}

extension BatchProvider {
    public var readFailure: String? { nil }
}

/// The optimizer and its hyper-parameters, as chosen on the command line or by the aggregator.
public enum OptimizerChoice: Sendable, Equatable {
    case sgd(momentum: Float)
    case adam

    public func make(learningRate: Float, weightDecay: Float) -> Optimizer {
        switch self {
        case .sgd(let momentum): return SGD(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay)
        case .adam: return Adam(learningRate: learningRate, weightDecay: weightDecay)
        }
    }
}

public struct TrainingOptions: Sendable {
    public var epochs: Int
    public var batchSize: Int
    public var learningRate: Float
    public var optimizer: OptimizerChoice
    public var weightDecay: Float
    /// Seeds shuffling and dropout; with the same seed, data, model and `lanes` a run repeats exactly.
    public var seed: UInt64
    /// Cores that train side by side, each on its share of every batch (data parallelism); nil: all cores.
    public var lanes: Int?
    /// Samples a core pushes through the network at once; a batch is several of these with their
    /// gradients summed, which gives the same step as one pass but keeps activations in cache.
    public var microBatch: Int
    /// FedProx's μ: adds (μ/2)·‖w − w₀‖² to the loss, w₀ being the weights `train` started from.
    public var proximalMu: Float
    /// A change of the logits in the training loss (FedRS, FedLC), or nil: plain cross-entropy.
    public var logitAdjustment: LogitAdjustment?
    /// Stop after this many optimizer steps in all, even within an epoch (nil: all `epochs`).
    public var maxSteps: Int?

    public init(epochs: Int = 1, batchSize: Int = 64, learningRate: Float = 0.01, optimizer: OptimizerChoice = .sgd(momentum: 0.9),
                weightDecay: Float = 0, seed: UInt64 = 1, lanes: Int? = nil, microBatch: Int = 16, proximalMu: Float = 0,
                logitAdjustment: LogitAdjustment? = nil, maxSteps: Int? = nil) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.optimizer = optimizer
        self.weightDecay = weightDecay
        self.seed = seed
        self.lanes = lanes
        self.microBatch = microBatch
        self.proximalMu = proximalMu
        self.logitAdjustment = logitAdjustment
        self.maxSteps = maxSteps
    }
}

/// Where a training run is, for progress lines and status reports.
public struct TrainingProgress: Sendable {
    public var epoch: Int
    public var epochs: Int
    /// Samples done in this epoch and in the whole run.
    public var epochSamples: Int, epochTotal: Int
    public var runSamples: Int, runTotal: Int
    /// Mean loss and accuracy over this epoch's batches so far.
    public var loss: Double
    public var accuracy: Double
    public var samplesPerSecond: Double
    public var elapsedSeconds: Double
    public var etaSeconds: Double { samplesPerSecond > 0 ? Double(runTotal - runSamples) / samplesPerSecond : 0 }
}

public struct EpochSummary: Sendable {
    public var epoch: Int
    public var loss: Double
    public var accuracy: Double
    public var seconds: Double
    public var samplesPerSecond: Double
}

public struct EvaluationResult: Sendable {
    public var loss: Double
    public var accuracy: Double
    public var count: Int
    public var seconds: Double
    /// `confusion[t][p]`: samples of true class t predicted as p (classes × classes; empty when not
    /// counted).
    public var confusion: [[Int]]

    public init(loss: Double, accuracy: Double, count: Int, seconds: Double, confusion: [[Int]] = []) {
        self.loss = loss
        self.accuracy = accuracy
        self.count = count
        self.seconds = seconds
        self.confusion = confusion
    }

    public var samplesPerSecond: Double { seconds > 0 ? Double(count) / seconds : 0 }

    /// Per class: the share of its samples predicted as it (nil: no samples of it).
    public var recall: [Double?] {
        confusion.indices.map { t in
            let support = confusion[t].reduce(0, +)
            return support > 0 ? Double(confusion[t][t]) / Double(support) : nil
        }
    }

    /// Per class: the share of the predictions of it that were right (nil: never predicted).
    public var precision: [Double?] {
        confusion.indices.map { p in
            let predicted = confusion.reduce(0) { $0 + $1[p] }
            return predicted > 0 ? Double(confusion[p][p]) / Double(predicted) : nil
        }
    }
}

/// A label outside the model's classes, or an empty selection: the data does not fit the model.
public struct TrainingDataError: Error, CustomStringConvertible {
    public let description: String
}

/// Mini-batch training of one model on one data set.
///
/// Every batch is split between `lanes` copies of the network that share the parameter values (one
/// per core, each calling single-threaded BLAS); their gradients are summed before the optimizer step.
/// On two cores this is ~1.5× faster than one network with two BLAS threads, because the small GEMMs
/// and the elementwise layers both run in parallel.
public final class Trainer {
    public let model: Model
    public let optimizer: Optimizer
    public let options: TrainingOptions
    private let lanes: [Lane]
    private var shuffler: SeededGenerator
    /// Weights at the start of `train`, for the proximal term.
    private var anchor: [Float] = []

    /// One core's network and buffers.
    final class Lane: @unchecked Sendable {
        let model: Model
        let input = Tensor(shape: [0])
        let gradLogits = Tensor(shape: [0])
        var labels: [Int32] = []
        var result = SoftmaxCrossEntropy.Result.zero
        /// Evaluation: true × predicted counts, row-major.
        var confusion: [Int] = []
        init(_ model: Model) { self.model = model }
    }

    public init(model: Model, options: TrainingOptions) {
        self.model = model
        self.options = options
        self.optimizer = options.optimizer.make(learningRate: options.learningRate, weightDecay: options.weightDecay)
        self.shuffler = SeededGenerator(seed: options.seed, stream: "shuffle")
        let count = max(1, options.lanes ?? Trainer.cores)
        lanes = (0..<count).map { $0 == 0 ? Lane(model) : Lane(model.replica()) }
        optimizer.parallelism = count
        for (i, lane) in lanes.enumerated() { lane.model.reseedDropout(options.seed &+ UInt64(i) &* 0x9E37_79B9) }
    }

    /// Samples a run of `epochs` over `count` samples pushes through, when it stops after `maxSteps` steps.
    public static func plannedSamples(count: Int, batchSize: Int, epochs: Int, maxSteps: Int?) -> Int {
        let batch = max(1, batchSize), perEpoch = (count + batch - 1) / batch
        guard perEpoch > 0 else { return 0 }
        let steps = min(max(1, maxSteps ?? Int.max), perEpoch * max(1, epochs))
        return steps / perEpoch * count + steps % perEpoch * batch
    }

    /// Cores available to training: OpenBLAS's own count (which honours OPENBLAS_NUM_THREADS).
    public static let cores = GEMM.threads

    /// Trains for `options.epochs` over `indices` of `data` (all of it when nil), calling `progress`
    /// after every batch; an error thrown by `progress` (a cancellation) stops training after that batch.
    @discardableResult
    public func train(on data: BatchProvider, indices: [Int]? = nil, progress: ((TrainingProgress) throws -> Void)? = nil) throws -> [EpochSummary] {
        var order = indices ?? Array(0..<data.count)
        try Trainer.check(data, order, model)
        let batch = max(1, options.batchSize)
        let clock = ContinuousClock()
        let runStart = clock.now
        var summaries: [EpochSummary] = []
        var runSamples = 0, steps = 0
        let epochs = max(1, options.epochs)
        let stepLimit = min(max(1, options.maxSteps ?? Int.max), (order.count + batch - 1) / batch * epochs)
        let runTotal = Trainer.plannedSamples(count: order.count, batchSize: batch, epochs: epochs, maxSteps: options.maxSteps)
        let blasThreads = GEMM.singleThreaded(if: lanes.count > 1 || options.lanes != nil)  // explicit lanes: that many cores in all
        defer { GEMM.threads = blasThreads }
        anchor = options.proximalMu > 0 ? model.parameters.flatValues : []
        for epoch in 1...epochs where steps < stepLimit {
            Trainer.shuffle(&order, using: &shuffler)
            let epochStart = clock.now
            var lossSum = 0.0, correct = 0, seen = 0
            var start = 0
            let epochTotal = min(order.count, (stepLimit - steps) * batch)
            while start < order.count && steps < stepLimit {
                let slice = order[start..<min(order.count, start + batch)]
                let result = step(slice, data)
                steps += 1
                lossSum += result.lossSum
                correct += result.correct
                seen += slice.count
                runSamples += slice.count
                start += slice.count
                if let progress {
                    let elapsed = Trainer.seconds(clock.now - runStart)
                    try progress(TrainingProgress(
                        epoch: epoch, epochs: epochs, epochSamples: seen, epochTotal: epochTotal,
                        runSamples: runSamples, runTotal: runTotal, loss: lossSum / Double(seen),
                        accuracy: Double(correct) / Double(seen),
                        samplesPerSecond: Double(runSamples) / max(elapsed, 1e-9), elapsedSeconds: elapsed))
                }
            }
            if let failure = data.readFailure { throw TrainingDataError(description: failure) }
            let seconds = Trainer.seconds(clock.now - epochStart)
            summaries.append(EpochSummary(
                epoch: epoch, loss: lossSum / Double(max(seen, 1)), accuracy: Double(correct) / Double(max(seen, 1)),
                seconds: seconds, samplesPerSecond: Double(seen) / max(seconds, 1e-9)))
        }
        return summaries
    }

    /// One optimizer step on one batch: forward and backward on every lane, gradients summed into lane 0.
    private func step(_ slice: ArraySlice<Int>, _ data: BatchProvider) -> SoftmaxCrossEntropy.Result {
        let active = min(lanes.count, slice.count)
        let scale = 1 / Float(slice.count)
        let lanes = self.lanes
        let share = { (r: Int) in
            slice[(slice.startIndex + r * slice.count / active)..<(slice.startIndex + (r + 1) * slice.count / active)]
        }
        let micro = max(1, options.microBatch), adjustment = options.logitAdjustment
        Parallel.run(active) { r in
            let lane = lanes[r], mine = share(r)
            lane.model.parameters.zeroGradients()
            lane.model.beginBatch()
            lane.result = .zero
            var i = mine.startIndex
            while i < mine.endIndex {
                let part = mine[i..<min(mine.endIndex, i + micro)]
                data.fillBatch(part, normalization: lane.model.normalization, into: lane.input, labels: &lane.labels)
                let logits = lane.model.forward(lane.input, training: true)
                let result = lane.labels.withUnsafeBufferPointer {
                    SoftmaxCrossEntropy.evaluate(logits: logits, labels: $0, gradient: lane.gradLogits, gradientScale: scale,
                                                 adjustment: adjustment)
                }
                lane.model.backward(lane.gradLogits)
                lane.result.add(result)
                i = part.endIndex
            }
            lane.model.endBatch()
        }
        if active > 1 {
            let count = model.parameters.count, sum = model.parameters.gradients
            let sources = lanes[1..<active].map { $0.model.parameters.gradients }
            Parallel.run(active) { part in
                for i in (part * count / active)..<((part + 1) * count / active) {
                    var g = sum[i]
                    for s in sources { g += s[i] }
                    sum[i] = g
                }
            }
        }
        if !anchor.isEmpty {
            let mu = options.proximalMu, w = model.parameters.values, g = model.parameters.gradients
            anchor.withUnsafeBufferPointer { a in
                for i in 0..<a.count { g[i] += mu * (w[i] - a[i]) }
            }
        }
        optimizer.step(model.parameters)
        return lanes[0..<active].reduce(into: .zero) { $0.add($1.result) }
    }

    /// Loss and accuracy of `model` on `indices` of `data`. The forward pass runs on micro-batches of at
    /// most `microBatch` samples, spread over `lanes` cores, which bounds memory whatever `batchSize`
    /// the caller groups by.
    public static func evaluate(_ model: Model, on data: BatchProvider, indices: [Int]? = nil, batchSize: Int = 1000,
                                microBatch: Int = 32, lanes laneCount: Int? = nil) throws -> EvaluationResult {
        let order = indices ?? Array(0..<data.count)
        try check(data, order, model)
        let clock = ContinuousClock()
        let start = clock.now
        let step = max(1, min(batchSize, microBatch))
        let chunks = (order.count + step - 1) / step
        let active = max(1, min(laneCount ?? cores, chunks))
        let lanes = (0..<active).map { $0 == 0 ? Lane(model) : Lane(model.replica()) }
        let blasThreads = GEMM.singleThreaded(if: active > 1 || laneCount != nil)
        defer { GEMM.threads = blasThreads }
        Parallel.run(active) { r in
            let lane = lanes[r]
            lane.model.beginBatch()
            defer { lane.model.endBatch() }
            var chunk = r
            while chunk < chunks {
                let slice = order[(chunk * step)..<min(order.count, (chunk + 1) * step)]
                data.fillBatch(slice, normalization: model.normalization, into: lane.input, labels: &lane.labels)
                let logits = lane.model.forward(lane.input, training: false)
                lane.result.add(lane.labels.withUnsafeBufferPointer { SoftmaxCrossEntropy.evaluate(logits: logits, labels: $0) })
                Trainer.count(logits, lane.labels, into: &lane.confusion, classes: model.classes)
                chunk += active
            }
        }
        let total = lanes.reduce(into: SoftmaxCrossEntropy.Result.zero) { $0.add($1.result) }
        let n = max(order.count, 1), c = model.classes
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: c), count: c)
        for lane in lanes where !lane.confusion.isEmpty {
            for t in 0..<c { for p in 0..<c { confusion[t][p] += lane.confusion[t * c + p] } }
        }
        return EvaluationResult(loss: total.lossSum / Double(n), accuracy: Double(total.correct) / Double(n), count: order.count,
                                seconds: seconds(clock.now - start), confusion: confusion)
    }

    /// Adds each row's (label, argmax) to a row-major classes × classes count.
    static func count(_ logits: Tensor, _ labels: [Int32], into confusion: inout [Int], classes c: Int) {
        if confusion.count != c * c { confusion = [Int](repeating: 0, count: c * c) }
        for i in 0..<logits.batch {
            let row = logits.data + i * c
            var best = 0
            for j in 1..<c where row[j] > row[best] { best = j }
            confusion[Int(labels[i]) * c + best] += 1
        }
    }

    static func check(_ data: BatchProvider, _ indices: [Int], _ model: Model) throws {
        guard !indices.isEmpty else { throw TrainingDataError(description: "no samples selected") }
        guard data.sampleShape == model.inputShape else {
            throw TrainingDataError(description: "images are \(data.sampleShape.map(String.init).joined(separator: "x")) but \(model.id) expects \(model.inputShape.map(String.init).joined(separator: "x"))")
        }
        for i in indices {
            guard i >= 0 && i < data.count else { throw TrainingDataError(description: "sample index \(i) outside 0..<\(data.count)") }
            let label = data.label(at: i)
            guard label >= 0 && label < model.classes else {
                throw TrainingDataError(description: "sample \(i) has label \(label), but \(model.id) has only \(model.classes) classes (0-\(model.classes - 1))")
            }
        }
    }

    /// Fisher-Yates with our own generator, so the order is the same on every platform and Swift version.
    public static func shuffle(_ a: inout [Int], using g: inout SeededGenerator) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = Int(g.next() % UInt64(i + 1))
            a.swapAt(i, j)
        }
    }

    static func seconds(_ d: Duration) -> Double {
        let c = d.components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
