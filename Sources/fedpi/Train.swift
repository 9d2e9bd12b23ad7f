import FedPiFederation
import FedPiTraining
import ArgumentParser
import FedPiData
import FedPiEngine
import FedPiWire

/// Options shared by commands that read a data set.
struct DataOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Folder of MNIST-format IDX files (raw or .gz), or of image class folders: train/<class>/*.png|jpg (also val/, test/).", valueName: "dir"))
    var data: String = ProcessInfoLite.environment("FEDPI_DATA") ?? "/usr/share/datasets/fashion-mnist"

    func directory() throws -> DataDirectory { try DataDirectory(data) }

    /// Loads a split for `model` (image folders are decoded at its input size, with progress on
    /// standard error; skipped files are listed there too) and checks that it fits the model.
    func load(_ directory: DataDirectory, _ split: MNISTDirectory.Split, for model: Model,
              keep: (([UInt8]) throws -> [Int])? = nil) throws -> LabeledImages {
        let inputShape = model.inputShape
        var line = ProgressLine(interval: 5)
        let start = ContinuousClock.now
        let set = try directory.load(split, height: inputShape[0], width: inputShape[1], keep: keep, progress: { done, total in
            let seconds = Double((ContinuousClock.now - start).components.seconds)
            line.show("decoding \(split.rawValue) images: \(done)/\(total)", at: seconds, force: done == total)
        }, skipped: { writeError(DataDirectory.describe($0) + "\n") })
        line.finish()
        if case .folders = directory.layout {
            let d = ContinuousClock.now - start
            let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            writeError("decoded \(set.count) \(split.rawValue) images at \(set.height)x\(set.width) in \(Format.fixed(seconds, 2)) s"
                       + " (\(Format.fixed(Double(set.count) / max(seconds, 1e-9), 0)) images/s)\n")
        }
        try set.check(for: model, data: data)
        return set
    }
}

struct Train: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model on this machine and report its test accuracy.",
        discussion: """
            Shows a progress line (samples/s, loss, ETA) while training, then the accuracy on the test
            split: on the selected classes and, when --classes is given, on all classes.
            Example: fedpi train --model mnist-cnn --epochs 1 --batch-size 64 --lr 0.01 --classes 0-3
            """)

    @OptionGroup var dataOptions: DataOptions

    @Option(help: ArgumentHelp("Model: \(ModelZoo.names.joined(separator: ", ")).", valueName: "name"))
    var model: String = "mnist-cnn"

    @Option(help: "Passes over the training data.")
    var epochs: Int = 1

    @Option(help: "Samples per training step.")
    var batchSize: Int = 64

    @Option(help: "Learning rate.")
    var lr: Float = 0.01

    @Option(help: "Optimizer: sgd (with --momentum) or adam.")
    var optimizer: String = "sgd"

    @Option(help: "SGD momentum.")
    var momentum: Float = 0.9

    @Option(help: "L2 weight decay.")
    var weightDecay: Float = 0

    @Option(help: ArgumentHelp("Train only on these classes, e.g. 0-3 or 1,3,5 (one worker's share).", valueName: "classes"))
    var classes: String?

    @Option(help: ArgumentHelp("Use at most this many training samples (a seeded random subset).", valueName: "n"))
    var limit: Int?

    @Option(help: ArgumentHelp("Class weights in the loss: none, or balanced (w_c = N / (K·n_c) from the training samples' counts; for imbalanced data such as chest X-rays).", valueName: "w"))
    var classWeights = "none"

    @Option(help: ArgumentHelp("Evaluate on at most this many test samples.", valueName: "n"))
    var testLimit: Int?

    @Option(help: "Samples each core pushes through the network at once; smaller uses less memory.")
    var microBatch: Int = 16

    @Option(help: "Samples per evaluation batch.")
    var evalBatchSize: Int = 1000

    @Option(help: "Seed for initialisation, shuffling and dropout; the same seed repeats a run exactly.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Threads for matrix multiplication (default: all cores).", valueName: "n"))
    var threads: Int?

    @Flag(help: "Print the time spent in each layer's forward and backward pass.")
    var profile = false

    @Option(name: .customLong("init"), help: ArgumentHelp("Start from the weights in this safetensors file (FedPi's or PyTorch's names and shapes).", valueName: "file"))
    var initFrom: String?

    @Option(help: ArgumentHelp("Save the trained weights to this safetensors file (loads in PyTorch with load_state_dict).", valueName: "file"))
    var save: String?

    @Option(help: "Encoding of the saved file: f32, f16 or i8.")
    var saveEncoding: String = "f32"

    @Flag(help: "End with one JSON line of the results (for scripts and benchmarks).")
    var json = false

    func validate() throws {
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        guard microBatch >= 1 else { throw ValidationError("--micro-batch must be at least 1") }
        guard evalBatchSize >= 1 else { throw ValidationError("--eval-batch-size must be at least 1") }
        guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be a positive number") }
        guard ["sgd", "adam"].contains(optimizer) else { throw ValidationError("--optimizer must be sgd or adam") }
        guard ["none", "balanced"].contains(classWeights) else { throw ValidationError("--class-weights must be none or balanced") }
        guard ModelZoo.names.contains(model) else { throw ValidationError(ModelZoo.UnknownModel(name: model).description) }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        guard Encoding(rawValue: saveEncoding) != nil else { throw ValidationError("--save-encoding must be f32, f16 or i8") }
        if let testLimit, testLimit < 1 { throw ValidationError("--test-limit must be at least 1") }
    }

    func run() async throws {
        if let threads { GEMM.threads = threads }
        let directory = try dataOptions.directory()
        let net = try ModelZoo.make(model, seed: seed)
        let train = try dataOptions.load(directory, .train, for: net)
        let test = try dataOptions.load(directory, .test, for: net)
        let selected = try classes.map { Set(try Partition.parseClasses($0, names: directory.classNames)) }

        let indices = Partition.sample(selected.map { train.indices(ofClasses: $0) } ?? Array(0..<train.count), limit: limit, seed: seed)
        guard !indices.isEmpty else { throw ValidationError("no training samples of classes \(classes ?? "")") }

        if let initFrom {
            let (values, _) = try ModelFile.decode(try FileIO.read(initFrom), expecting: net.parameters.entries, model: model)
            net.parameters.load(values)
            print("initial weights from \(initFrom)")
        }
        let choice: OptimizerChoice = optimizer == "adam" ? .adam : .sgd(momentum: momentum)
        var weights: LogitAdjustment?
        if classWeights == "balanced" {
            var counts = [Int](repeating: 0, count: net.classes)
            for i in indices { counts[train.label(at: i)] += 1 }
            weights = .weighted(nil, counts: counts)
            print("class weights: " + weights!.weight!.map { Format.fixed(Double($0), 3) }.joined(separator: " "))
        }
        let trainer = Trainer(
            model: net,
            options: TrainingOptions(epochs: epochs, batchSize: batchSize, learningRate: lr, optimizer: choice,
                                     weightDecay: weightDecay, seed: seed, lanes: threads, microBatch: microBatch,
                                     logitAdjustment: weights))
        print("model \(model): \(net.parameterCount) parameters; training on \(indices.count) of \(train.count) samples"
              + (classes.map { " (classes \($0))" } ?? "") + ", \(epochs) epoch(s), batch \(batchSize), \(optimizer) lr \(lr), "
              + "\(GEMM.threads) thread(s)")

        if profile { net.profile = LayerProfile(layers: net.layers) }
        var line = ProgressLine()
        let summaries = try trainer.train(on: train, indices: indices) { p in
            let text = "epoch \(p.epoch)/\(p.epochs)  \(p.epochSamples)/\(p.epochTotal)  "
                + "\(Format.fixed(p.samplesPerSecond, 0)) samples/s  loss \(Format.fixed(p.loss, 4))  "
                + "acc \(Format.percent(p.accuracy))  ETA \(Format.duration(p.etaSeconds))"
            line.show(text, at: p.elapsedSeconds, force: p.epochSamples == p.epochTotal)
        }
        line.finish()
        for s in summaries {
            print("epoch \(s.epoch): loss \(Format.fixed(s.loss, 4)), train accuracy \(Format.percent(s.accuracy)), "
                  + "\(Format.fixed(s.seconds, 1)) s, \(Format.fixed(s.samplesPerSecond, 0)) samples/s")
        }

        if let p = net.profile {
            func ms(_ d: Duration) -> String { Format.padLeft(Format.fixed(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) * 1e-15, 0), 8) }
            print("layer            forward ms  backward ms")
            for i in p.names.indices {
                print(Format.padRight(p.names[i], 12) + ms(p.forward[i]) + "     " + ms(p.backward[i]))
            }
            net.profile = nil
        }

        var testIndices = selected.map { test.indices(ofClasses: $0) } ?? Array(0..<test.count)
        if let testLimit { testIndices = Array(testIndices.prefix(testLimit)) }
        let result = try Trainer.evaluate(net, on: test, indices: testIndices, batchSize: evalBatchSize, lanes: threads)
        print("test accuracy\(classes.map { " (classes \($0))" } ?? ""): \(Format.percent(result.accuracy)) "
              + "on \(result.count) samples, loss \(Format.fixed(result.loss, 4)), "
              + "\(Format.fixed(result.samplesPerSecond, 0)) samples/s")
        let names = directory.classNames
        if net.classes <= 20 { print(Train.perClassTable(result, names: names)) }
        if selected != nil {
            var all = Array(0..<test.count)
            if let testLimit { all = Array(all.prefix(testLimit)) }
            let overall = try Trainer.evaluate(net, on: test, indices: all, batchSize: evalBatchSize, lanes: threads)
            print("test accuracy (all classes): \(Format.percent(overall.accuracy)) on \(overall.count) samples")
        }
        if let save {
            let bytes = ModelFile.encode(weightsOf: net, encoding: Encoding(rawValue: saveEncoding)!, examples: indices.count * epochs, seed: seed)
            try FileIO.writeAtomically(bytes, to: save)
            print("saved \(save) (\(saveEncoding), \(bytes.count) bytes)")
        }
        let peak = ProcessMemory.peakResidentBytes
        print("peak memory: \(Format.mebibytes(peak))")
        if json {
            let trainSeconds = summaries.reduce(0) { $0 + $1.seconds }
            let fields: [(String, String)] = [
                ("framework", "\"fedpi\""), ("model", "\"\(model)\""), ("threads", "\(GEMM.threads)"),
                ("train_samples", "\(indices.count * epochs)"),
                ("train_samples_per_s", Format.fixed(Double(indices.count * epochs) / max(trainSeconds, 1e-9), 2)),
                ("eval_samples_per_s", Format.fixed(result.samplesPerSecond, 2)),
                ("test_accuracy", Format.fixed(result.accuracy, 6)), ("test_loss", Format.fixed(result.loss, 6)),
                ("peak_rss_mib", Format.fixed(Double(peak) / 1_048_576, 2)),
                ("per_class", Train.perClassJSON(result, names: names)),
                ("confusion", "[" + result.confusion.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }.joined(separator: ", ") + "]"),
            ]
            print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
        }
    }

    /// Recall, precision and support of each class, and the confusion matrix, as a text table.
    static func perClassTable(_ r: EvaluationResult, names: [String]?) -> String {
        func pct(_ v: Double?) -> String { Format.padLeft(v.map { Format.percent($0) } ?? "—", 9) }
        let width = max(5, names?.map(\.count).max() ?? 0)
        var lines = ["class " + "".padding(width) + "   recall precision  support   predicted as " + r.confusion.indices.map { Format.padLeft(String($0), 5) }.joined()]
        for (t, row) in r.confusion.enumerated() {
            lines.append(Format.padLeft(String(t), 5) + " " + (names?[t] ?? "").padding(width) + pct(r.recall[t]) + " " + pct(r.precision[t])
                         + Format.padLeft(String(row.reduce(0, +)), 9) + "   " + "".padding(12) + row.map { Format.padLeft(String($0), 5) }.joined())
        }
        return lines.joined(separator: "\n")
    }

    /// The same as JSON: [{"class": 0, "name": "NORMAL", "recall": …, "precision": …, "support": …}, …].
    static func perClassJSON(_ r: EvaluationResult, names: [String]?) -> String {
        func number(_ v: Double?) -> String { v.map { Format.fixed($0, 6) } ?? "null" }
        return "[" + r.confusion.indices.map { t in
            "{\"class\": \(t)" + (names.map { ", \"name\": \"\(Train.jsonEscape($0[t]))\"" } ?? "") + ", \"recall\": \(number(r.recall[t]))"
                + ", \"precision\": \(number(r.precision[t])), \"support\": \(r.confusion[t].reduce(0, +))}"
        }.joined(separator: ", ") + "]"
    }

    static func jsonEscape(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20: out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
