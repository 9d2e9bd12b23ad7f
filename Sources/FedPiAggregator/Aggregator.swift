import AsyncHTTPClient
import FedPiData
import FedPiEngine
import FedPiFederation
import FedPiTraining
import FedPiHTTP
import FedPiIdentity
import FedPiRuntime
import FedPiWire
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// The aggregator process: resumes from its checkpoint, keeps the node inventory fresh, runs the
/// rounds (retrying failed ones with the model unchanged), checkpoints and records each round.
///
/// With a test set here, each round's model is evaluated beside the next round: the round's
/// checkpoint and history row are written as soon as the model exists, the next round is dispatched,
/// and the row's accuracy and loss (and the table line) follow when the evaluation ends. At most one
/// evaluation is outstanding. Without a test set the workers evaluate, which must not compete with
/// their training, so that stays between rounds.
public final class Aggregator: @unchecked Sendable {
    public let config: FleetConfig
    let logger: Logger
    public var checkpointPath: String { config.stateDir + "/checkpoint.safetensors" }
    public var historyPath: String { config.stateDir + "/history.sqlite" }
    /// The served model when `model_ema` is on: the moving average of the global models.
    public var averagePath: String { config.stateDir + "/average.safetensors" }

    public init(config: FleetConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    /// Runs the remaining rounds as a group of services (the round runner, the prober, the central
    /// evaluator, the HTTP API) until they are done or SIGTERM/SIGINT stops them; `print` receives the
    /// per-round table, `onListening` the API's port. Returns the final model file's path, or nil when
    /// stopped by a signal before the last round.
    @discardableResult
    public func run(save: String? = nil, print: @escaping @Sendable (String) -> Void = { Swift.print($0) },
                    onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws -> String? {
        var named = self.config
        if named.classNames == nil, let dir = named.testData, let names = try? DataDirectory(dir).classNames {
            named.classNames = names
        }
        let config = named, logger = self.logger
        do {
            try FileManager.default.createDirectory(atPath: config.stateDir, withIntermediateDirectories: true)
        } catch {
            throw ConfigError("cannot create state_dir \(config.stateDir): \(error.localizedDescription)")
        }
        let history = try History(path: historyPath)
        let model = try ModelZoo.make(config.model, seed: config.seed)
        let done = try resume(model, history: history)
        let operations = Operations(fleetRounds: config.rounds, controlPath: config.stateDir + "/control.json")
        let metrics = AggregatorMetrics()
        let central = try config.testData.map { dir in
            let shape = model.inputShape
            let test = try DataDirectory(dir).load(.test, height: shape[0], width: shape[1], skipped: { skipped in
                logger.warning("test data \(dir): \(DataDirectory.describe(skipped))")
            })
            try test.check(for: model, data: dir)
            return try CentralEvaluation(model: config.model, data: test,
                                         indices: Partition.sample(Array(0..<test.count), limit: config.testLimit, seed: config.seed))
        }
        let (client, identity) = try connect()
        let inventory = NodeInventory(nodes: config.nodes, client: client, identity: identity, probeTimeout: config.probeTimeout,
                                      maxBackoff: config.maxBackoff, seed: config.seed, logger: logger)
        await inventory.setOnTransition { node, state, detail in history.nodeEvent(node, state: state.rawValue, detail: detail) }
        let federation = makeFederation(model, client: client, inventory: inventory, operations: operations,
                                        workersEvaluate: central == nil, tls: identity != nil)
        if let optimizer = federation.strategy as? FedOpt, done > 0 { try resume(optimizer, round: done, parameters: model.parameters.count) }
        if federation.modelEMA > 0, done > 0 { try resumeAverage(federation, round: done) }
        let notifier = SystemdNotifier()
        let report: @Sendable (RoundRecord) -> Void = { r in
            print(RoundTable.row(r))
            let accuracy = r.testAccuracy.map { ", accuracy " + Format.percent($0) } ?? ""
            notifier.status(r.completed
                ? "round \(r.round) of \(operations.control.targetRounds) done, \(r.participants.count) nodes\(accuracy)"
                : "round \(r.round) failed (\(r.participants.count) of \(config.minNodes) updates); retrying")
        }
        let evaluator = central.map { CentralEvaluator($0, logger: logger) }
        let runner = RoundRunner(config: config, federation: federation, history: history, operations: operations, metrics: metrics,
                                 evaluator: evaluator, resumedAfter: done, save: save, print: print, report: report, logger: logger)

        print("\(config.model), \(config.nodes.count) nodes, \(federation.strategy.name), \(config.encoding.rawValue) deltas, "
              + "\(config.localEpochs) local epoch(s)" + (config.localSteps.map { " of at most \($0) steps" } ?? "") + ", rounds \(done + 1)...\(operations.control.targetRounds), min_nodes \(config.minNodes)")
        print(RoundTable.header)
        // systemd: ready once the state is open (and the API listens); the watchdog pings as long as the process runs
        let ready = "starting round \(done + 1) of \(operations.control.targetRounds)"
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: WatchdogService(notifier: notifier) { true }),
            .init(service: ProberService(inventory: inventory)),
        ]
        if let evaluator { services.append(.init(service: evaluator)) }
        // the API has an event loop of its own: a flood of dashboard requests cannot delay the rounds'
        // dispatches and collects on the HTTP client's loops
        let apiLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        if let listen = config.listen {
            let api = try AggregatorAPI(config: config, operations: operations, inventory: inventory, history: history, metrics: metrics,
                                        strategy: federation.strategy.name, logger: logger)
            services.append(.init(service: try server(api, at: listen, identity: identity, loop: apiLoop) { port in
                notifier.ready(status: ready + "; dashboard on port \(port)")
                await onListening(port)
            }))
        } else {
            notifier.ready(status: ready)
        }
        // the runner is last: on SIGTERM it stops first, then the API, the evaluator and the prober;
        // when it ends by itself (all rounds done) the others are shut down
        services.append(.init(service: runner, successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        var failure: (any Error)?
        do { try await group.run() } catch { failure = error }
        try? await client.shutdown()
        try? await apiLoop.shutdownGracefully()
        if let failure { throw failure }
        logger.info("done", metadata: ["peak_memory": "\(Format.mebibytes(ProcessMemory.peakResidentBytes))",
                                       "cpu_seconds": "\(Format.fixed(ProcessMemory.cpuSeconds, 1))"])
        return runner.finalPath.withLock { $0 }
    }

    /// Loads the checkpoint into `model` when there is one and returns its round (0: a fresh start).
    /// A round in the checkpoint but not in the history (killed in between) is recorded; partial
    /// checkpoint files of a killed run are removed.
    func resume(_ model: Model, history: History) throws -> Int {
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
            if done > 0, try history.recordRecovered(done, strategy: config.makeStrategy().name, encoding: config.encoding.rawValue) {
                logger.warning("round \(done) is in the checkpoint but was not in the history (killed in between): recorded it without its participants")
            }
        }
        let leftovers = FileIO.removeLeftovers(of: checkpointPath)
        if leftovers > 0 { logger.info("removed \(leftovers) partial checkpoint file(s) of a killed run") }
        return done
    }

    /// Restores a server optimizer's state of checkpoint `round`. Without one (the strategy changed
    /// to a server optimizer mid-run) it starts afresh, which is logged; a damaged one is an error.
    func resume(_ optimizer: FedOpt, round: Int, parameters: Int) throws {
        let path = config.stateDir + "/" + ServerOptimizerFile.name(round: round)
        guard FileManager.default.fileExists(atPath: path) else {
            logger.warning("no \(optimizer.rule.rawValue) state for round \(round) in \(config.stateDir): the server optimizer starts afresh")
            return
        }
        do {
            optimizer.state = try ServerOptimizerFile.decode(try FileIO.read(path), rule: optimizer.rule, round: round,
                                                             parameters: parameters)
        } catch {
            throw ConfigError("cannot resume the server optimizer from \(path): \(error). Move it away to restart its state")
        }
        logger.info("resuming \(optimizer.rule.rawValue) at step \(optimizer.state.step) from \(path)")
    }

    /// Restores the moving average of checkpoint `round`. The average is written after the
    /// checkpoint, so a kill in between leaves the average of the round before, and the checkpoint is
    /// folded into it as the round would have; without a usable file it starts again from the
    /// checkpoint (logged). A damaged file is an error.
    func resumeAverage(_ federation: Federation, round: Int) throws {
        guard FileManager.default.fileExists(atPath: averagePath) else {
            logger.warning("no \(averagePath): the moving average (model_ema) starts again from the checkpoint of round \(round)")
            return
        }
        let values: [Float], header: ModelFileHeader
        do {
            (values, header) = try ModelFile.decode(try FileIO.read(averagePath), expecting: federation.model.parameters.entries,
                                                    model: config.model)
        } catch {
            throw ConfigError("cannot resume the moving average from \(averagePath): \(error). Move it away to start the average again")
        }
        var average = values
        switch header.round {
        case round: break
        case round - 1: Federation.foldAverage(&average, federation.model.parameters.flatValues, ema: federation.modelEMA)
        default:
            logger.warning("\(averagePath) is of round \(header.round), the checkpoint of round \(round): the moving average starts again from the checkpoint")
            return
        }
        federation.average = average
        logger.info("resuming the moving average of round \(round) from \(averagePath)")
    }

    /// The HTTP client to the nodes and, with `[tls]`, the fleet identity it presents and checks.
    func connect() throws -> (HTTPClient, NodeInventory.Identity?) {
        var http = HTTPClient.Configuration()
        http.timeout = .init(connect: .seconds(2), read: nil)
        guard let files = config.tls else {
            logger.warning("no [tls] in the fleet file: node requests are unauthenticated and unencrypted")
            return (HTTPClient(eventLoopGroupProvider: .singleton, configuration: http), nil)
        }
        let material: TLSMaterial, identity: NodeInventory.Identity
        do {
            material = try TLSMaterial(files: files, role: .aggregator)
            identity = try .init(material: material, deny: config.deny)
        } catch {
            throw ConfigError("[tls]: \(error)")
        }
        http.tlsConfiguration = material.clientConfiguration()
        // requests go to https://NODE-NAME:PORT, so TLS checks the name; the override dials the address
        for node in config.nodes { http.dnsOverride[node.name] = node.endpoint.host }
        let days = Int(material.daysLeft())
        logger.info("mutual TLS with the fleet CA: each worker's certificate must name its node",
                    metadata: ["certificate": "\(material.own.name ?? "?")", "expires": "\(IdentityFiles.day(material.own.notValidAfter))"])
        if days < 30 { logger.warning("the aggregator's TLS certificate expires in \(max(0, days)) days: issue a new one") }
        return (HTTPClient(eventLoopGroupProvider: .singleton, configuration: http), identity)
    }

    /// The round logic over the fleet's remote workers: whom to ask (online nodes, waiting for
    /// `min_nodes`), what to log and show of each node's answer, and, without a test set here,
    /// evaluation by the workers on their own test splits.
    func makeFederation(_ model: Model, client: HTTPClient, inventory: NodeInventory, operations: Operations,
                        workersEvaluate: Bool, tls: Bool) -> Federation {
        let config = self.config, logger = self.logger
        // the most an update of this model can be: f32 values and a header allowance
        let maxUpdateBytes = model.parameters.count * 4 + (256 << 10)
        let workers = config.nodes.map {
            RemoteWorker(node: $0.name, url: $0.dialURL(tls: tls), client: client, inventory: inventory,
                         unreachableGrace: config.unreachableGrace, maxUpdateBytes: maxUpdateBytes, logger: logger)
        }
        let federation = Federation(model: model, strategy: config.makeStrategy(), workers: workers, minNodes: config.minNodes,
                                    config: config.training)
        federation.concurrent = true
        federation.learningRateDecay = Float(config.learningRateDecay)
        federation.learningRateFloor = Float(config.learningRateFloor)
        federation.modelEMA = Float(config.modelEMA)
        federation.maxNormRatio = config.maxNormRatio > 0 ? config.maxNormRatio : nil
        federation.roundTimeout = .milliseconds(Int64(config.roundTimeout * 1000))
        if workersEvaluate {
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
            operations.setPhase("waiting for nodes")
            await inventory.refresh(all: true)
            var lastNote = ContinuousClock.now - .seconds(60)
            while await inventory.onlineCount < config.minNodes {
                // stopping: no one to ask (the runner drops this round)
                if Task.isCancelled { return [] }
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
            operations.dispatched(round, nodes: names)
            return workers.filter { names.contains($0.node) }
        }
        federation.onNode = { round, node, outcome in
            operations.nodeFinished(round, node, outcome)
            switch outcome {
            case .success(let p):
                logger.info("round \(round): update from \(node) accepted", metadata: [
                    "examples": "\(p.examples)", "bytes": "\(p.bytes)", "seconds": "\(Format.fixed(p.seconds, 1))"])
            case .failure(let f):
                logger.warning("round \(round): no update from \(node): \(f.reason)")
            }
        }
        return federation
    }

    /// The HTTP server of the dashboard and API on `listen`: mutual TLS with the aggregator's own
    /// certificate when the fleet has `[tls]`, plain HTTP otherwise (fleet.toml allows that on
    /// loopback only, unless `insecure`).
    func server(_ api: AggregatorAPI, at listen: (host: String, port: Int), identity: NodeInventory.Identity?,
                loop: MultiThreadedEventLoopGroup, onListening: @escaping @Sendable (Int) async -> Void) throws -> some Service {
        let http = HTTP1Channel.Configuration(idleTimeout: .seconds(30))
        let server: HTTPServerBuilder
        let scheme: String
        if let identity {
            let context = try NIOSSLContext(configuration: identity.material.serverConfiguration())
            server = FleetTLSChannel.builder(configuration: http) { context }
            scheme = "https"
        } else {
            server = .http1(configuration: http)
            scheme = "http"
        }
        let logger = self.logger
        return APIServer(address: "\(listen.host):\(listen.port)", app: Application(
            router: api.router(), server: server,
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "fedpi-aggregator"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? listen.port
                logger.info("dashboard and API at \(scheme)://\(listen.host):\(port)/")
                await onListening(port)
            },
            eventLoopGroupProvider: .shared(loop),
            logger: logger))
    }

    /// Central evaluation on the aggregator's test set, with its own copy of the network, on a thread
    /// of its own and one core. Not on GCD: on Linux Swift concurrency's threads are GCD's, and an
    /// evaluation there (two lanes via `concurrentPerform`) held both of them on two cores, so the next
    /// round's node probes waited ~0.8 s for a thread to finish on.
    final class CentralEvaluation: @unchecked Sendable {
        let model: Model, data: LabeledImages, indices: [Int]
        init(model id: String, data: LabeledImages, indices: [Int]) throws {
            model = try ModelZoo.make(id, seed: 0)
            self.data = data
            self.indices = indices
        }

        /// Linux's SCHED_IDLE for the calling thread: the evaluation takes only cores nothing else wants
        /// (on one machine with the workers: the end of a round, when the smaller shards are done), so it
        /// never slows a round. If the next round ends first, the aggregator waits for it with the
        /// workers idle, and it gets the cores then.
        static func idlePriority() {
            #if os(Linux)
            var param = sched_param()
            _ = sched_setscheduler(0, 5 /* SCHED_IDLE */, &param)  // best effort: a normal priority still works
            #endif
        }

        /// Loss and accuracy of the weights `values`; nil (logged) if the evaluation failed. Not
        /// reentrant: the aggregator runs one at a time.
        func evaluate(_ values: [Float], round: Int, logger: Logger) async -> EvaluationResult? {
            do {
                return try await withCheckedThrowingContinuation { done in
                    Thread {
                        CentralEvaluation.idlePriority()
                        done.resume(with: Result {
                            self.model.parameters.load(values)
                            return try Trainer.evaluate(self.model, on: self.data, indices: self.indices, lanes: 1)
                        })
                    }.start()
                }
            } catch {
                logger.warning("round \(round): central evaluation failed: \(error)")
                return nil
            }
        }
    }
}

/// The dashboard and API server, whose failure to start says what to do about it.
struct APIServer<App: Service>: Service {
    let address: String
    let app: App

    func run() async throws {
        do {
            try await app.run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw ConfigError("cannot serve the dashboard and API on \(address): the address is in use. "
                              + "Set another listen in the fleet file (or --listen), or listen = \"off\"")
        } catch let error as IOError {
            throw ConfigError("cannot serve the dashboard and API on \(address): \(error)")
        }
    }
}
