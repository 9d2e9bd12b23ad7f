/// Anything that can fill an input batch: the engine does not care where images live.
public protocol BatchProvider {
    var count: Int { get }
    /// Per-sample shape `[H, W, C]`.
    var sampleShape: [Int] { get }
    func label(at index: Int) -> Int
    /// Resizes `input` to `[indices.count] + sampleShape`, writes the normalised pixels of those samples
    /// into it, and their labels into `labels`.
    func fillBatch(_ indices: ArraySlice<Int>, normalization: Model.Normalization, into input: Tensor, labels: inout [Int32])
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
    /// Seeds shuffling and dropout; with the same seed, data and model a run repeats exactly.
    public var seed: UInt64

    public init(epochs: Int = 1, batchSize: Int = 64, learningRate: Float = 0.01, optimizer: OptimizerChoice = .sgd(momentum: 0.9),
                weightDecay: Float = 0, seed: UInt64 = 1) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.optimizer = optimizer
        self.weightDecay = weightDecay
        self.seed = seed
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
    public var samplesPerSecond: Double { seconds > 0 ? Double(count) / seconds : 0 }
}

/// A label outside the model's classes, or an empty selection: the data does not fit the model.
public struct TrainingDataError: Error, CustomStringConvertible {
    public let description: String
}

/// Mini-batch training of one model on one data set.
public final class Trainer {
    public let model: Model
    public let optimizer: Optimizer
    public let options: TrainingOptions
    private let input = Tensor(shape: [0])
    private let gradLogits = Tensor(shape: [0])
    private var labels: [Int32] = []
    private var shuffler: SeededGenerator

    public init(model: Model, options: TrainingOptions) {
        self.model = model
        self.options = options
        self.optimizer = options.optimizer.make(learningRate: options.learningRate, weightDecay: options.weightDecay)
        self.shuffler = SeededGenerator(seed: options.seed, stream: "shuffle")
        model.reseedDropout(options.seed)
    }

    /// Trains for `options.epochs` over `indices` of `data` (all of it when nil), calling `progress`
    /// after every batch.
    @discardableResult
    public func train(on data: BatchProvider, indices: [Int]? = nil, progress: ((TrainingProgress) -> Void)? = nil) throws -> [EpochSummary] {
        var order = indices ?? Array(0..<data.count)
        try Trainer.check(data, order, model)
        let batch = max(1, options.batchSize)
        let clock = ContinuousClock()
        let runStart = clock.now
        var summaries: [EpochSummary] = []
        var runSamples = 0
        let runTotal = order.count * options.epochs
        for epoch in 1...max(1, options.epochs) {
            Trainer.shuffle(&order, using: &shuffler)
            let epochStart = clock.now
            var lossSum = 0.0, correct = 0, seen = 0
            var start = 0
            while start < order.count {
                let slice = order[start..<min(order.count, start + batch)]
                data.fillBatch(slice, normalization: model.normalization, into: input, labels: &labels)
                let logits = model.forward(input, training: true)
                let result = labels.withUnsafeBufferPointer {
                    SoftmaxCrossEntropy.evaluate(logits: logits, labels: $0, gradient: gradLogits)
                }
                model.backward(gradLogits)
                optimizer.step(model.parameters)
                lossSum += result.lossSum
                correct += result.correct
                seen += slice.count
                runSamples += slice.count
                start += slice.count
                if let progress {
                    let elapsed = Trainer.seconds(clock.now - runStart)
                    progress(TrainingProgress(
                        epoch: epoch, epochs: options.epochs, epochSamples: seen, epochTotal: order.count,
                        runSamples: runSamples, runTotal: runTotal, loss: lossSum / Double(seen),
                        accuracy: Double(correct) / Double(seen),
                        samplesPerSecond: Double(runSamples) / max(elapsed, 1e-9), elapsedSeconds: elapsed))
                }
            }
            let seconds = Trainer.seconds(clock.now - epochStart)
            summaries.append(EpochSummary(
                epoch: epoch, loss: lossSum / Double(max(seen, 1)), accuracy: Double(correct) / Double(max(seen, 1)),
                seconds: seconds, samplesPerSecond: Double(seen) / max(seconds, 1e-9)))
        }
        return summaries
    }

    /// Loss and accuracy of `model` on `indices` of `data`. The forward pass runs on micro-batches of at
    /// most `microBatch` samples, which bounds memory whatever `batchSize` the caller groups by.
    public static func evaluate(_ model: Model, on data: BatchProvider, indices: [Int]? = nil, batchSize: Int = 1000,
                                microBatch: Int = 64) throws -> EvaluationResult {
        let order = indices ?? Array(0..<data.count)
        try check(data, order, model)
        let clock = ContinuousClock()
        let start = clock.now
        let input = Tensor(shape: [0])
        var labels: [Int32] = []
        var lossSum = 0.0, correct = 0
        let step = max(1, min(batchSize, microBatch))
        var i = 0
        while i < order.count {
            let slice = order[i..<min(order.count, i + step)]
            data.fillBatch(slice, normalization: model.normalization, into: input, labels: &labels)
            let logits = model.forward(input, training: false)
            let r = labels.withUnsafeBufferPointer { SoftmaxCrossEntropy.evaluate(logits: logits, labels: $0) }
            lossSum += r.lossSum
            correct += r.correct
            i += slice.count
        }
        let n = max(order.count, 1)
        return EvaluationResult(loss: lossSum / Double(n), accuracy: Double(correct) / Double(n), count: order.count,
                                seconds: seconds(clock.now - start))
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
