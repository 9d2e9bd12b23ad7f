import AsyncHTTPClient
import FedPiData
import FedPiEngine
import FedPiFederation
import FedPiRuntime
import FedPiWire
import Foundation
import Logging

/// The aggregator process: resumes from its checkpoint, keeps the node inventory fresh, runs the
/// rounds (retrying failed ones with the model unchanged), checkpoints and records each round.
public final class Aggregator: @unchecked Sendable {
    public let config: FleetConfig
    let logger: Logger
    public var checkpointPath: String { config.stateDir + "/checkpoint.safetensors" }
    public var historyPath: String { config.stateDir + "/history.sqlite" }

    public init(config: FleetConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    /// Runs the remaining rounds; `print` receives the per-round table. Returns the final model file's path.
    @discardableResult
    public func run(save: String? = nil, print: @escaping (String) -> Void = { Swift.print($0) }) async throws -> String {
        let config = self.config, logger = self.logger
        do {
            try FileManager.default.createDirectory(atPath: config.stateDir, withIntermediateDirectories: true)
        } catch {
            throw ConfigError("cannot create state_dir \(config.stateDir): \(error.localizedDescription)")
        }
        let history = try History(path: historyPath)
        let model = try ModelZoo.make(config.model, seed: config.seed)
        var done = 0
        if FileManager.default.fileExists(atPath: checkpointPath) {
            let values: [Float], header: ModelFileHeader
            do {
                (values, header) = try ModelFile.decode(try FileIO.read(checkpointPath), expecting: model.parameters.entries, model: config.model)
            } catch {
                throw ConfigError("cannot resume from \(checkpointPath): \(error). Move it away to start afresh, or use another state_dir")
            }
            model.parameters.load(values)
            done = header.round
            logger.info("resuming after round \(done) from \(checkpointPath)")
        }
        let test: LabeledImages? = try config.testData.map { try MNISTDirectory($0).load(.test) }
        let testIndices = test.map { Partition.sample(Array(0..<$0.count), limit: config.testLimit, seed: config.seed) }

        var http = HTTPClient.Configuration()
        http.timeout = .init(connect: .seconds(2), read: nil)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        let inventory = NodeInventory(nodes: config.nodes, client: client, probeTimeout: config.probeTimeout,
                                      maxBackoff: config.maxBackoff, seed: config.seed, logger: logger)
        await inventory.setOnTransition { node, state, detail in history.nodeEvent(node, state: state.rawValue, detail: detail) }
        let workers = config.nodes.map {
            RemoteWorker(node: $0.name, url: $0.url, client: client, inventory: inventory, unreachableGrace: config.unreachableGrace, logger: logger)
        }
        let strategy = config.makeStrategy()
        let federation = Federation(model: model, strategy: strategy, workers: workers, minNodes: config.minNodes, config: config.training)
        federation.concurrent = true
        federation.roundTimeout = .milliseconds(Int64(config.roundTimeout * 1000))
        if let test, let testIndices {
            federation.evaluate = { try Trainer.evaluate($0, on: test, indices: testIndices) }
        } else {
            // no test set here: the online workers evaluate on their own test splits
            federation.evaluate = { model in
                await inventory.refresh()
                let names = await inventory.pick(fraction: 1, minimum: 0, seed: 0)
                do {
                    return try await RemoteWorker.evaluate(model, on: workers.filter { names.contains($0.node) }, logger: logger)
                } catch {
                    logger.warning("no federated evaluation this round: \(error)")
                    return nil
                }
            }
        }
        federation.select = { round in
            await inventory.refresh(all: true)
            var lastNote = ContinuousClock.now - .seconds(60)
            while await inventory.onlineCount < config.minNodes {
                if ContinuousClock.now - lastNote > .seconds(10) {
                    lastNote = .now
                    let online = await inventory.onlineCount
                    logger.info("round \(round): waiting for nodes, \(online) of the \(config.minNodes) needed are online")
                }
                try? await Task.sleep(for: .milliseconds(500))
                await inventory.refresh()
            }
            let names = await inventory.pick(fraction: config.fraction, minimum: config.minNodes, seed: config.seed &+ UInt64(round))
            logger.info("round \(round): dispatching to \(names.joined(separator: ", "))")
            return workers.filter { names.contains($0.node) }
        }
        federation.onNode = { round, node, outcome in
            switch outcome {
            case .success(let p):
                logger.info("round \(round): update from \(node) accepted", metadata: [
                    "examples": "\(p.examples)", "bytes": "\(p.bytes)", "seconds": "\(Format.fixed(p.seconds, 1))"])
            case .failure(let f):
                logger.warning("round \(round): no update from \(node): \(f.reason)")
            }
        }
        let notifier = SystemdNotifier()
        federation.onRound = { r in
            print(RoundTable.row(r))
            let accuracy = r.testAccuracy.map { ", accuracy " + Format.percent($0) } ?? ""
            notifier.status(r.completed
                ? "round \(r.round) of \(config.rounds) done, \(r.participants.count) nodes\(accuracy)"
                : "round \(r.round) failed (\(r.participants.count) of \(config.minNodes) updates); retrying")
        }

        print("\(config.model), \(config.nodes.count) nodes, \(strategy.name), \(config.encoding.rawValue) deltas, "
              + "\(config.localEpochs) local epoch(s), rounds \(done + 1)...\(config.rounds), min_nodes \(config.minNodes)")
        print(RoundTable.header)
        // background probing: offline nodes are noticed coming back between rounds too
        let prober = Task {
            while !Task.isCancelled {
                await inventory.refresh()
                try? await Task.sleep(for: .seconds(1))
            }
        }
        // systemd: ready once the state is open; the watchdog pings as long as the process runs its tasks
        notifier.ready(status: done >= config.rounds ? "all \(config.rounds) rounds done" : "starting round \(done + 1) of \(config.rounds)")
        let watchdog = Task { await notifier.runWatchdog { true } }
        defer {
            prober.cancel()
            watchdog.cancel()
        }
        do {
            if done == 0, try history.attempts(of: 0) == 0 {
                let r = try await federation.evaluateInitial()
                try history.record(r, strategy: strategy.name, encoding: config.encoding.rawValue)
            }
            if done < config.rounds {
                for round in (done + 1)...config.rounds {
                    var attempt = try history.attempts(of: round) + 1
                    while true {
                        let r = try await federation.runRound(round, attempt: attempt)
                        // the checkpoint decides where a restart resumes; a crash before the history row loses the row, not the round
                        if r.completed { try writeCheckpoint(model, round: round) }
                        try history.record(r, strategy: strategy.name, encoding: config.encoding.rawValue)
                        if r.completed { break }
                        let pause = min(30.0, 2 * Double(attempt))
                        logger.warning("""
                            round \(round) failed: \(r.participants.count) usable update(s), \(config.minNodes) needed; \
                            retrying in \(Int(pause)) s with the model unchanged
                            """)
                        try await Task.sleep(for: .seconds(pause))
                        attempt += 1
                    }
                }
            }
        } catch {
            prober.cancel()
            try? await client.shutdown()
            throw error
        }
        prober.cancel()
        try? await client.shutdown()
        let out = save ?? config.stateDir + "/final.safetensors"
        try FileIO.writeAtomically(ModelFile.encode(weightsOf: model, round: config.rounds), to: out)
        print("saved the global model after round \(config.rounds) to \(out)")
        logger.info("done", metadata: ["peak_memory": "\(Format.mebibytes(ProcessMemory.peakResidentBytes))"])
        return out
    }

    func writeCheckpoint(_ model: Model, round: Int) throws {
        try FileIO.writeAtomically(ModelFile.encode(weightsOf: model, round: round), to: checkpointPath)
    }
}
