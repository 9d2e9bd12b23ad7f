import ArgumentParser
import FedPiData
import FedPiEngine
import FedPiFederation
import FedPiTraining
import FedPiWire

struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run federated rounds with in-process workers (no network): the aggregator's round logic on one machine.",
        discussion: """
            Splits the training set among workers, runs the rounds, and prints one line per round (test
            accuracy, loss, seconds, bytes). Example, the classic three-worker split:
              fedpi simulate --split 0-3,4-6,7-9 --rounds 10 --encoding f16
            """)

    @OptionGroup var dataOptions: DataOptions

    @Option(help: ArgumentHelp("Model: \(ModelZoo.names.joined(separator: ", ")).", valueName: "name"))
    var model: String = "mnist-cnn"

    @Option(help: ArgumentHelp("Class groups, one worker each (0-3,4-6,7-9); or iid:N; or dirichlet:ALPHA:N.", valueName: "split"))
    var split: String = "0-3,4-6,7-9"

    @Option(help: "Rounds to run.")
    var rounds: Int = 10

    @Option(help: "Local epochs per round.")
    var localEpochs: Int = 1

    @Option(help: "Samples per training step on a worker.")
    var batchSize: Int = 64

    @Option(help: "Learning rate on the workers (SGD with momentum 0.9).")
    var lr: Float = 0.01

    @Option(help: "Update encoding: f32, f16 or i8 (updates are deltas against the global model).")
    var encoding: String = "f16"

    @Option(help: "Strategy: fedavgm (the fleet file's default), fedavg, fedprox, median, trimmed-mean, centered-clip, async-merge, fedadam, fedyogi.")
    var strategy: String = "fedavgm"

    @Option(help: "FedProx μ (with --strategy fedprox).")
    var mu: Float = 0.01

    @Option(help: ArgumentHelp("Local loss: ce, or for label skew fedrs (--fedrs-alpha) or fedlc (--fedlc-tau).", valueName: "name"))
    var loss: String = "ce"

    @Option(help: ArgumentHelp("FedRS: scale of the logits of classes a worker lacks (0...1).", valueName: "x"))
    var fedrsAlpha: Float = 0.5

    @Option(help: ArgumentHelp("FedLC: calibration strength tau (logit c lowered by tau·n_c^-1/4).", valueName: "x"))
    var fedlcTau: Float = 1

    @Option(help: ArgumentHelp("At most this many local steps per round (default: full epochs).", valueName: "n"))
    var localSteps: Int?

    @Option(help: ArgumentHelp("Class weights in the local loss: none, or balanced (from each worker's own class counts, for imbalanced data).", valueName: "w"))
    var classWeights = "none"

    @Option(help: ArgumentHelp("The workers' learning rate is multiplied by this each round (0.5...1; 1: constant).", valueName: "x"))
    var lrDecay: Float = Federation.defaultLearningRateDecay

    @Option(help: ArgumentHelp("The decay stops at this fraction of --lr (0...1; 0: never stops).", valueName: "x"))
    var lrFloor: Float = Federation.defaultLearningRateFloor

    @Option(help: ArgumentHelp("Server learning rate of fedavgm (default \(FedOpt.defaultLR(.fedavgm))), fedadam and fedyogi (default \(FedOpt.defaultLR(.fedadam))).", valueName: "x"))
    var serverLr: Float?

    @Option(help: ArgumentHelp("Server momentum of fedavgm.", valueName: "x"))
    var serverMomentum: Float = FedOpt.Options().momentum

    @Option(help: ArgumentHelp("fedadam/fedyogi: first-moment decay.", valueName: "x"))
    var beta1: Float = 0.9

    @Option(help: ArgumentHelp("fedadam/fedyogi: second-moment decay.", valueName: "x"))
    var beta2: Float = 0.99

    @Option(help: ArgumentHelp("fedadam/fedyogi: adaptivity (added to the root of the second moment).", valueName: "x"))
    var tau: Float = 1e-3

    @Option(help: ArgumentHelp("The served model is a moving average of the global models: avg = x·avg + (1−x)·global after each round (0...0.99; 0: the global model).", valueName: "x"))
    var modelEma: Float = Federation.defaultModelEMA

    @Option(help: "Fewest usable updates for a round to count (default: all workers).")
    var minNodes: Int?

    @Option(help: ArgumentHelp("Use at most this many training samples in total (seeded subset).", valueName: "n"))
    var limit: Int?

    @Option(help: ArgumentHelp("Evaluate on at most this many test samples.", valueName: "n"))
    var testLimit: Int?

    @Option(help: "Seed for the initial model, the split and the workers' shuffling.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Save the final global model here (f32 safetensors).", valueName: "file"))
    var save: String?

    func validate() throws {
        guard rounds >= 1, localEpochs >= 1, batchSize >= 1 else { throw ValidationError("--rounds, --local-epochs and --batch-size must be at least 1") }
        guard Encoding(rawValue: encoding) != nil else { throw ValidationError("--encoding must be f32, f16 or i8") }
        guard Strategies.names.contains(strategy) else {
            throw ValidationError("--strategy must be one of \(Strategies.names.joined(separator: ", "))")
        }
        guard ModelZoo.names.contains(model) else { throw ValidationError(ModelZoo.UnknownModel(name: model).description) }
        guard serverLr.map({ $0.isFinite && $0 > 0 && $0 <= 10 }) ?? true else { throw ValidationError("--server-lr must be in (0, 10]") }
        guard (0..<1).contains(serverMomentum), (0..<1).contains(beta1), (0..<1).contains(beta2) else {
            throw ValidationError("--server-momentum, --beta1 and --beta2 must be in [0, 1)")
        }
        guard tau.isFinite, tau > 0, tau <= 1 else { throw ValidationError("--tau must be in (0, 1]") }
        guard LocalLoss.names.contains(loss) else { throw ValidationError("--loss must be one of \(LocalLoss.names.joined(separator: ", "))") }
        guard (0...1).contains(fedrsAlpha), (0...100).contains(fedlcTau) else { throw ValidationError("--fedrs-alpha must be in [0, 1], --fedlc-tau in [0, 100]") }
        guard localSteps.map({ $0 >= 1 }) ?? true else { throw ValidationError("--local-steps must be at least 1") }
        guard lrDecay >= 0.5, lrDecay <= 1 else { throw ValidationError("--lr-decay must be in [0.5, 1]") }
        guard ["none", "balanced"].contains(classWeights) else { throw ValidationError("--class-weights must be none or balanced") }
        guard lrFloor >= 0, lrFloor <= 1 else { throw ValidationError("--lr-floor must be in [0, 1]") }
        guard modelEma >= 0, modelEma <= 0.99 else { throw ValidationError("--model-ema must be in [0, 0.99]") }
    }

    func shards(_ labels: [Int], names: [String]? = nil) throws -> [[Int]] {
        let parts = split.split(separator: ":").map(String.init)
        switch parts.first {
        case "iid":
            guard parts.count == 2, let n = Int(parts[1]), n >= 1 else { throw ValidationError("write iid:N, e.g. iid:3") }
            return Partition.iid(count: labels.count, shards: n, seed: seed)
        case "dirichlet":
            guard parts.count == 3, let alpha = Double(parts[1]), alpha > 0, let n = Int(parts[2]), n >= 1 else {
                throw ValidationError("write dirichlet:ALPHA:N, e.g. dirichlet:0.5:3")
            }
            return Partition.dirichlet(labels: labels, shards: n, alpha: alpha, seed: seed)
        default:
            return try Partition.classGroups(labels: labels, groups: try Partition.parseClassGroups(split, names: names))
        }
    }

    func run() async throws {
        let directory = try dataOptions.directory()
        let net = try ModelZoo.make(model, seed: seed)
        let train = try dataOptions.load(directory, .train, for: net)
        let test = try dataOptions.load(directory, .test, for: net)
        let pool = Partition.sample(Array(0..<train.count), limit: limit, seed: seed)
        let pieces = try shards(pool.map { train.label(at: $0) }, names: directory.classNames).map { $0.map { pool[$0] } }
        if let empty = pieces.firstIndex(where: \.isEmpty) {
            let classes = directory.classNames.map { $0.enumerated().map { "\($0.offset) \($0.element)" }.joined(separator: ", ") }
                ?? Set(pool.map { train.label(at: $0) }).sorted().map(String.init).joined(separator: ", ")
            throw ValidationError("--split \(split): worker \(empty + 1) gets no training samples; the data's classes are \(classes)"
                                  + " (for two classes try --split iid:3 or --split 0,1)")
        }
        let workers = pieces.enumerated().map { LocalWorker(node: "worker-\($0.offset + 1)", model: model, data: train, indices: $0.element) }
        var server = FedOpt.Options()
        server.serverLR = serverLr
        (server.momentum, server.beta1, server.beta2, server.tau) = (serverMomentum, beta1, beta2, tau)
        let chosen = Strategies.make(strategy, mu: Double(mu), server: server) ?? FedAvg()
        var config = TrainingConfig()
        config.epochs = localEpochs
        config.batchSize = batchSize
        config.learningRate = lr
        config.loss = LocalLoss.make(loss, alpha: fedrsAlpha, tau: fedlcTau)!
        config.localSteps = localSteps
        config.classWeights = classWeights == "balanced"
        config.encoding = Encoding(rawValue: encoding)!
        config.seed = seed
        let federation = Federation(model: net, strategy: chosen, workers: workers, minNodes: minNodes ?? workers.count, config: config)
        federation.learningRateDecay = lrDecay
        federation.learningRateFloor = lrFloor
        federation.modelEMA = modelEma
        let testIndices = Array(0..<min(test.count, testLimit ?? test.count))
        federation.evaluate = { try Trainer.evaluate($0, on: test, indices: testIndices) }
        print("\(model), \(workers.count) workers (" + pieces.map { String($0.count) }.joined(separator: "/") + " samples), "
              + "\(chosen.name), \(config.loss.label) loss, \(encoding) deltas, \(localEpochs) local epoch(s)"
              + (localSteps.map { " of at most \($0) steps" } ?? "") + ", \(rounds) rounds"
              + (modelEma > 0 ? ", accuracy of the moving average (model_ema \(modelEma))" : ""))
        print(RoundTable.header)
        federation.onRound = { print(RoundTable.row($0)) }
        _ = try await federation.evaluateInitial()
        for r in 1...rounds { try await federation.runRound(r) }
        if let save {
            try FileIO.writeAtomically(ModelFile.encode(weightsOf: federation.servedModel, round: rounds), to: save)
            print("saved the \(modelEma > 0 ? "averaged" : "global") model to \(save)")
        }
    }
}
