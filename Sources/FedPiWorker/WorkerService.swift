import FedPiData
import FedPiEngine
import FedPiTraining
import FedPiHTTP
import FedPiIdentity
import FedPiRuntime
import FedPiWire
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The worker daemon: its data shard, its task runner and the HTTP API of DESIGN.md.
public final class WorkerService: Sendable {
    public static let version = "0.2.0"
    public let settings: WorkerSettings
    public let model: String
    let runner: TaskRunner
    /// The local test split, read on the first evaluation request (most fleets evaluate centrally).
    let test = Mutex<Result<LabeledImages, DatasetError>?>(nil)
    let trainSamples: Int
    let classes: [Int]
    /// The model's input (height, width, channels): image folders are decoded at this size.
    let inputShape: [Int]
    let logger: Logger
    let started = ContinuousClock.now
    /// Largest request body accepted: this model's f32 file and a header allowance.
    let maxBodyBytes: Int
    /// At most one evaluation at a time (a second one gets 429).
    let evaluating = Mutex(false)
    /// Mutual TLS with the fleet CA; nil: plain HTTP.
    public let identity: WorkerIdentity?
    /// The deny-list as it is now (re-read on SIGHUP with the certificates).
    let currentDeny: @Sendable () throws -> Set<String>
    let metrics = WorkerMetrics()

    /// Loads the data shard (this node's samples, kept in a file in the state directory) and the
    /// finished-update store.
    public init(settings: WorkerSettings, model: String = "mnist-cnn", fault: TaskRunner.Fault? = nil,
                maxBodyBytes: Int? = nil, identity: WorkerIdentity? = nil,
                currentDeny: (@Sendable () throws -> Set<String>)? = nil, logger: Logger) throws {
        self.settings = settings
        self.identity = identity
        let deny = settings.deny
        self.currentDeny = currentDeny ?? { deny }
        let net = try ModelZoo.make(model, seed: 1)
        let layout = net.parameters.entries
        self.maxBodyBytes = maxBodyBytes ?? WorkerService.bodyLimit(layout)
        self.model = model
        self.logger = logger
        // the pixels go to the state directory and are read per batch; only the labels stay in memory
        try FileManager.default.createDirectory(atPath: settings.stateDir, withIntermediateDirectories: true)
        let shardPath = settings.stateDir + "/train-shard.u8"
        inputShape = net.inputShape
        let (height, width) = (inputShape[0], inputShape[1])
        let shard: ImageFile
        switch try DataDirectory(settings.data).layout {
        case .idx(let directory):
            let selected = try directory.load(.train) { try settings.shard(labels: $0) }
            guard selected.count > 0 else { throw ConfigError("no training samples left after classes/partition/limit") }
            try? FileManager.default.removeItem(atPath: shardPath + ".key")  // an image-folder shard's key no longer holds
            try FileIO.writeAtomically(selected.pixels, to: shardPath)
            shard = try ImageFile(path: shardPath, height: selected.height, width: selected.width, labels: selected.labels)
        case .folders(let folders):
            // decoded one image at a time into the shard file, once: a restart with the same files reuses it
            let start = ContinuousClock.now
            let (labels, skipped, reused) = try folders.writeShard(
                "train", height: height, width: width, keep: { try settings.shard(labels: $0, names: folders.classNames) }, to: shardPath)
            guard !labels.isEmpty else { throw ConfigError("no training samples left after classes/partition/limit") }
            if !skipped.isEmpty { logger.warning("\(settings.data): \(DataDirectory.describe(skipped))") }
            logger.info(reused ? "image folders: the decoded shard from the last start is reused"
                               : "image folders: decoded \(labels.count) images at \(height)x\(width)", metadata: ["took": "\(ContinuousClock.now - start)"])
            shard = try ImageFile(path: shardPath, height: height, width: width, labels: labels)
        }
        try LabeledImages.check(height: shard.height, width: shard.width, labels: shard.labels, for: net, data: settings.data)
        trainSamples = shard.count
        classes = Array(Set(shard.labels.map(Int.init))).sorted()
        runner = try TaskRunner(
            job: LocalTraining(node: settings.name, model: model, data: shard, indices: Array(0..<shard.count), lanes: settings.lanes),
            stateDir: settings.stateDir, logger: logger, fault: fault, maxEpochs: settings.maxLocalEpochs, maxSeconds: settings.maxTaskSeconds)
        logger.info("loaded \(shard.count) training samples", metadata: [
            "data": "\(settings.data)", "classes": "\(classes.map(String.init).joined(separator: ","))"])
    }

    typealias NodeInfo = Control.NodeInfo
    typealias Progress = Control.Progress
    typealias Message = Control.Message
    typealias Evaluation = Control.Evaluation

    func info() -> NodeInfo {
        let s = runner.snapshot
        return NodeInfo(
            node: settings.name, version: WorkerService.version, models: ModelZoo.names, model: model, dataset: settings.data,
            samples: trainSamples, classes: classes, testSamples: test.withLock { try? $0?.get().count }, state: s.phase.rawValue, round: s.round,
            progress: progress(s), uptimeSeconds: Double((ContinuousClock.now - started).components.seconds), health: .read(),
            tls: identity.map { id in
                let c = id.certificate
                return Control.CertificateInfo(name: c.name, role: c.role?.rawValue, expires: IdentityFiles.day(c.notValidAfter),
                               daysLeft: Int(c.notValidAfter.timeIntervalSinceNow / 86_400), fingerprint: c.fingerprint,
                               warning: id.expiryWarning())
            })
    }

    func progress(_ s: TaskRunner.Snapshot) -> Progress {
        Progress(samples: s.samples, total: s.total, loss: s.loss, seconds: s.seconds, reason: s.reason)
    }

    /// The longest a collect call may hold the connection.
    static let maxWait = 60.0

    public func router() -> Router<WorkerContext> {
        let router = Router(context: WorkerContext.self)
        if let identity { router.add(middleware: AccessMiddleware(identity: identity, logger: logger)) }
        router.get("v1/health") { _, _ in self.json(Message(state: "ok")) }
        router.get("v1/node") { _, _ in self.json(self.info()) }
        router.put("v1/rounds/:round") { request, context in
            guard let round = context.parameters.get("round", as: Int.self), round >= 0 else {
                return self.json(Message(state: "error", message: "round must be a non-negative integer"), status: .badRequest)
            }
            guard let body = try await self.body(of: request) else {
                return self.tooLarge(round: round)
            }
            do {
                switch try self.runner.start(round: round, global: body) {
                case .started: return self.json(Message(round: round, state: "training", message: "started"), status: .accepted)
                case .alreadyRunning: return self.json(Message(round: round, state: "training", message: "already training this round"), status: .accepted)
                case .alreadyDone: return self.json(Message(round: round, state: "done", message: "update ready"))
                }
            } catch let refusal as TaskRunner.Refusal {
                self.logger.warning("round \(round): refused: \(refusal)")
                return self.json(Message(round: round, state: "refused", message: refusal.description), status: .serviceUnavailable)
            } catch let stale as TaskRunner.Stale {
                self.logger.warning("round \(round): refused: \(stale)")
                return self.json(Message(round: round, state: "stale", message: stale.description), status: .conflict)
            } catch {
                let reason = "\(error)".clipped()
                self.logger.warning("round \(round): rejected the task: \(reason)")
                return self.json(Message(round: round, state: "error", message: reason), status: .badRequest)
            }
        }
        router.get("v1/rounds/:round/update") { request, context in
            guard let round = context.parameters.get("round", as: Int.self) else {
                return self.json(Message(state: "error", message: "round must be an integer"), status: .badRequest)
            }
            let wait = min(WorkerService.maxWait, max(0, request.uri.queryParameters.get("wait").flatMap { Double(String($0)) } ?? 0))
            let deadline = ContinuousClock.now + .milliseconds(Int(wait * 1000))
            while true {
                switch self.runner.answer(round: round) {
                case .ready(let bytes):
                    return Response(status: .ok, headers: [.contentType: "application/octet-stream"],
                                    body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
                case .training(let s):
                    if ContinuousClock.now >= deadline {
                        return self.json(Message(round: round, state: "training",
                                                 message: "\(s.samples)/\(s.total) samples"), status: .accepted)
                    }
                    try await Task.sleep(for: .milliseconds(50))
                case .unknown:
                    return self.json(Message(round: round, state: "unknown", message: "unknown round"), status: .notFound)
                case .superseded(let current):
                    return self.json(Message(round: current, state: "superseded", message: "round \(round) was superseded by round \(current)"),
                                     status: .gone)
                case .failed(let reason):
                    return self.json(Message(round: round, state: "failed", message: reason), status: .internalServerError)
                }
            }
        }
        router.delete("v1/rounds/:round") { _, context in
            guard let round = context.parameters.get("round", as: Int.self), self.runner.cancel(round: round) else {
                return self.json(Message(state: "unknown", message: "no such task"), status: .notFound)
            }
            return self.json(Message(round: round, state: "cancelled"))
        }
        router.post("v1/evaluate") { request, _ in
            // one evaluation at a time, off the event loop: health answers and the watchdog pings meanwhile
            guard self.evaluating.withLock({ busy in
                defer { busy = true }
                return !busy
            }) else {
                return self.json(Message(state: "busy", message: "an evaluation is running; try again shortly"),
                                 status: .tooManyRequests, headers: [.retryAfter: "5"])
            }
            defer { self.evaluating.withLock { $0 = false } }
            guard let body = try await self.body(of: request) else { return self.tooLarge(round: nil) }
            let test: LabeledImages
            switch await Task.detached(operation: { self.testSplit() }).value {
            case .success(let t): test = t
            case .failure(let e): return self.json(Message(state: "error", message: "no local test split: \(e)".clipped()), status: .conflict)
            }
            do {
                let net = try ModelZoo.make(self.model, seed: 1)
                let (values, _) = try ModelFile.decode(body, expecting: net.parameters.entries, model: self.model)
                net.parameters.load(values)
                let e = try await Task.detached { try Trainer.evaluate(net, on: test, lanes: 1) }.value
                return self.json(Evaluation(accuracy: e.accuracy, loss: e.loss, samples: e.count, seconds: e.seconds, confusion: e.confusion))
            } catch {
                return self.json(Message(state: "error", message: "\(error)".clipped()), status: .badRequest)
            }
        }
        router.get("metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.scrape(self.runner))))
        }
        return router
    }

    func testSplit() -> Result<LabeledImages, DatasetError> {
        test.withLock { cached in
            if let cached { return cached }
            let settings = self.settings
            let loaded = Result { () throws -> LabeledImages in
                try DataDirectory(settings.data).load(.test, height: self.inputShape[0], width: self.inputShape[1]) {
                    Partition.sample(Array($0.indices), limit: settings.testLimit, seed: settings.seed).sorted()
                }
            }.mapError { DatasetError("\($0)") }
            cached = loaded
            return loaded
        }
    }

    /// The most a model file for `layout` can take: f32 values and a header allowance.
    static func bodyLimit(_ layout: [ParameterInfo]) -> Int {
        layout.reduce(0) { $0 + $1.count } * 4 + (256 << 10)
    }

    /// The request body, or nil when it is larger than `maxBodyBytes` (held once, refused early).
    func body(of request: Request) async throws -> [UInt8]? {
        try await JSONResponse.body(of: request, limit: maxBodyBytes)
    }

    func tooLarge(round: Int?) -> Response {
        json(Message(round: round, state: "error", message: "request body larger than \(maxBodyBytes) bytes, the most a \(model) file can be"),
             status: .contentTooLarge, headers: [.connection: "close"])
    }

    func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        JSONResponse.make(value, status: status, headers: extra)
    }

    /// One line for `systemctl status`: what the worker is doing now, and a certificate about to expire.
    func statusLine(_ s: TaskRunner.Snapshot) -> String {
        WorkerService.statusLine(s) + (identity?.expiryWarning().map { "; " + $0 } ?? "")
    }

    static func statusLine(_ s: TaskRunner.Snapshot) -> String {
        guard let round = s.round else { return "idle, waiting for an aggregator" }
        switch s.phase {
        case .training:
            return "round \(round): training \(s.samples)/\(s.total) samples" + (s.loss.map { ", loss \(Format.fixed($0, 3))" } ?? "")
        case .done: return "round \(round): update ready"
        case .failed: return "round \(round): training failed: \(s.reason ?? "")"
        case .cancelled: return "round \(round): cancelled"
        case .idle: return "idle"
        }
    }

    /// Healthy while the HTTP event loop answers within a second and a running training step has made
    /// progress within `stallLimit`; what the systemd watchdog pings depend on.
    func healthy(stallLimit: Duration) async -> Bool {
        let s = runner.snapshot
        if s.phase == .training, ContinuousClock.now - s.lastProgress > stallLimit {
            logger.error("training has made no progress for \(stallLimit); withholding the watchdog ping")
            return false
        }
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await loop.submit { true }.get()) ?? false }
            group.addTask {
                try? await Task.sleep(for: .seconds(1))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully. `onListening` receives the bound port.
    /// Under systemd: READY=1 once the port is bound, STATUS= as tasks progress, WATCHDOG=1 while healthy,
    /// STOPPING=1 on SIGTERM.
    public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let logger = self.logger
        let notifier = SystemdNotifier()
        runner.setOnChange { notifier.status(self.statusLine($0)) }
        let stallLimit = max(.seconds(60), (notifier.watchdogInterval ?? .zero) * 2)
        let watchdog = WatchdogService(notifier: notifier, logger: logger) { await self.healthy(stallLimit: stallLimit) }
        var services: [any Service] = [watchdog]
        let server: HTTPServerBuilder
        // a connection that sends nothing (no headers, a stalled body, an idle keep-alive) for this long
        // is closed; one whose request is being answered (a collect's long poll) is not
        let http = HTTP1Channel.Configuration(idleTimeout: .seconds(30))
        if let identity {
            server = FleetTLSChannel.builder(configuration: http) { identity.context }
            services.append(ReloadService(identity: identity, deny: currentDeny, notifier: notifier, logger: logger) {
                notifier.status(self.statusLine(self.runner.snapshot))
            })
            let c = identity.certificate
            logger.info("serving HTTPS with mutual TLS: clients need a certificate of the fleet CA; only the aggregator's may send tasks",
                        metadata: ["certificate": "\(c.name ?? "?")", "expires": "\(IdentityFiles.day(c.notValidAfter))"])
            if let warning = identity.expiryWarning() { logger.warning("\(warning)") }
        } else {
            server = .http1(configuration: http)
            logger.warning("no TLS configured: this worker accepts unauthenticated requests from anyone who can reach its port")
        }
        let app = Application(
            router: router(),
            server: server,
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "fedpi-worker"),
            services: services,
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                // Hummingbird itself logs "Server started and listening on HOST:PORT" with the node's metadata
                notifier.ready(status: "listening on port \(port); " + self.statusLine(self.runner.snapshot))
                await onListening(port)
            },
            logger: logger)
        try await app.runService()
    }
}

/// Re-reads the certificates and the deny-list on SIGHUP (`systemctl reload fedpi-worker`). A file that
/// cannot be used is logged and the current identity stays; the running task is never touched.
struct ReloadService: Service {
    let identity: WorkerIdentity
    let deny: @Sendable () throws -> Set<String>
    let notifier: SystemdNotifier
    let logger: Logger
    let onReload: @Sendable () -> Void

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                notifier.reloading()
                do {
                    try identity.reload(deny: try deny())
                    let c = identity.certificate
                    logger.notice("reloaded the TLS certificate", metadata: [
                        "certificate": "\(c.name ?? "?")", "expires": "\(IdentityFiles.day(c.notValidAfter))", "sha256": "\(c.fingerprint)"])
                    if let warning = identity.expiryWarning() { logger.warning("\(warning)") }
                } catch {
                    logger.error("reload failed, keeping the current certificate: \(error)")
                }
                onReload()
                notifier.reloaded()
            }
        }
    }
}
