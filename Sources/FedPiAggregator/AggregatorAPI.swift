import FedPiEngine
import FedPiHTTP
import FedPiIdentity
import FedPiPredict
import FedPiWire
import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// The aggregator's HTTP API and dashboard: `GET /` (the dashboard), `GET /api/v1/fleet`,
/// `GET /api/v1/rounds[/R]`, `GET /api/v1/model`, `POST /api/v1/predict`, `POST /api/v1/control`,
/// `GET /metrics`. Under the fleet's mutual TLS every request needs a certificate of the fleet CA:
/// observer, admin and aggregator certificates read and predict; only admin and aggregator
/// certificates use the controls.
public struct AggregatorAPI: Sendable {
    let config: FleetConfig
    let operations: Operations
    let inventory: NodeInventory
    let history: History
    let metrics: AggregatorMetrics
    let predictor: Predictor
    let strategy: String
    let started = Date()
    let logger: Logger

    /// Largest body `POST /api/v1/predict` takes (an image file).
    public static let maxImageBytes = 4 << 20

    init(config: FleetConfig, operations: Operations, inventory: NodeInventory, history: History, metrics: AggregatorMetrics,
         strategy: String, logger: Logger) throws {
        self.config = config
        self.operations = operations
        self.inventory = inventory
        self.history = history
        self.metrics = metrics
        self.predictor = try Predictor(model: config.model)
        self.strategy = strategy
        self.logger = logger
    }

    struct Problem: Encodable { var error: String }

    func problem(_ message: String, _ status: HTTPResponse.Status) -> Response {
        JSONResponse.make(Problem(error: message), status: status)
    }

    /// What `GET /api/v1/fleet` answers.
    struct Fleet: Encodable {
        struct Aggregator: Encodable {
            var model: String, strategy: String, encoding: String, minNodes: Int, fleetRounds: Int, uptimeSeconds: Double
            var classNames: [String]
            /// The served model's moving average (0: the global model is served).
            var modelEma: Double
        }
        struct Node: Encodable {
            var name: String, url: String, state: String, since: String, lastSeen: String?, lastError: String?
            var samples: Int?, testSamples: Int?, classes: [Int]?, version: String?
            var health: BoardHealth?
            /// The node's own task: its state, round and progress.
            var task: Task?
        }
        struct Task: Encodable { var state: String, round: Int?, samples: Int, total: Int, loss: Double?, seconds: Double }
        var aggregator: Aggregator
        var control: Operations.Control
        var round: Operations.RoundProgress?
        var nodes: [Node]
    }

    func fleet() async -> Fleet {
        let nodes = await inventory.nodes
        return Fleet(
            aggregator: .init(model: config.model, strategy: strategy, encoding: config.encoding.rawValue, minNodes: config.minNodes,
                              fleetRounds: config.rounds, uptimeSeconds: Date().timeIntervalSince(started).rounded(),
                              classNames: config.classNames ?? (0..<predictor.classes).map(String.init), modelEma: config.modelEMA),
            control: operations.control, round: operations.round,
            nodes: nodes.map { n in
                Fleet.Node(
                    name: n.name, url: n.url, state: n.state.rawValue, since: n.since.formatted(.iso8601),
                    lastSeen: n.lastSeen?.formatted(.iso8601), lastError: n.lastError, samples: n.samples, testSamples: n.testSamples,
                    classes: n.info?.classes, version: n.info?.version, health: n.info?.health,
                    task: n.info.map {
                        Fleet.Task(state: $0.state, round: $0.round, samples: $0.progress.samples, total: $0.progress.total,
                                   loss: $0.progress.loss, seconds: $0.progress.seconds)
                    })
            })
    }

    public func router() -> Router<FleetRequestContext> {
        let router = Router(context: FleetRequestContext.self)
        if config.tls != nil { router.add(middleware: AccessMiddleware(rules: AccessRules(deny: config.deny), logger: logger)) }
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                     body: .init(byteBuffer: ByteBuffer(string: Dashboard.html)))
        }
        router.get("api/v1/fleet") { _, _ in JSONResponse.make(await self.fleet()) }
        router.get("api/v1/rounds") { request, _ in
            let text = request.uri.queryParameters.get("limit").map { String($0) }
            guard let limit = text.map({ Int($0) }) ?? 10_000, (1...10_000).contains(limit) else { return self.problem("limit must be 1...10000", .badRequest) }
            return try await self.rows { try self.history.rows(limit: limit) }
        }
        router.get("api/v1/rounds/:round") { _, context in
            guard let round = context.parameters.get("round", as: Int.self), round >= 0 else {
                return self.problem("round must be a non-negative integer", .badRequest)
            }
            let rows = try await Task.detached { try self.history.rows(round: round) }.value
            guard !rows.isEmpty else { return self.problem("round \(round) is not in the history", .notFound) }
            return JSONResponse.make(rows)
        }
        router.get("api/v1/model") { request, _ in
            let encoding = request.uri.queryParameters.get("encoding").map { String($0) } ?? "f32"
            guard let e = Encoding(rawValue: encoding), e != .i8 else { return self.problem("encoding must be f32 or f16", .badRequest) }
            guard let current = self.operations.model else { return self.problem("no round has completed yet", .serviceUnavailable) }
            let (round, bytes) = try await Task.detached { try self.predictor.file(current, encoding: e) }.value
            return Response(status: .ok, headers: [
                .contentType: "application/octet-stream",
                .contentDisposition: "attachment; filename=\"\(self.config.model)-round\(round)-\(e.rawValue).safetensors\"",
            ], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.post("api/v1/predict") { request, _ in
            guard let body = try await JSONResponse.body(of: request, limit: AggregatorAPI.maxImageBytes) else {
                return self.problem("image larger than \(AggregatorAPI.maxImageBytes) bytes", .contentTooLarge)
            }
            guard let current = self.operations.model else { return self.problem("no round has completed yet", .serviceUnavailable) }
            do {
                return JSONResponse.make(try await Task.detached { try self.predictor.predict(body, model: current) }.value)
            } catch let e as ImageError {
                return self.problem("\(e)", .badRequest)
            }
        }
        router.post("api/v1/control") { request, _ in
            guard let body = try await JSONResponse.body(of: request, limit: 4096) else { return self.problem("body too large", .contentTooLarge) }
            do {
                let command = try Operations.Command(json: body)
                let control = self.operations.apply(command)
                self.logger.notice("control: \(command)", metadata: [
                    "paused": "\(control.paused)", "target_rounds": "\(control.targetRounds)"])
                return JSONResponse.make(control)
            } catch {
                return self.problem("\(error)", .badRequest)
            }
        }
        router.get("metrics") { _, _ in
            let nodes = await self.inventory.nodes
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.scrape(nodes: nodes))))
        }
        return router
    }

    /// History reads run off the event loop.
    func rows(_ read: @escaping @Sendable () throws -> [History.Row]) async throws -> Response {
        JSONResponse.make(try await Task.detached { try read() }.value)
    }
}

/// The served model for the API, read from its file (the moving average's with `model_ema`, else the
/// checkpoint; the aggregator holds no other copy): as a file, and as a network for predictions, made
/// on the first prediction, loaded again when a newer round's file exists, used by one request at a time.
final class Predictor: Sendable {
    let id: String
    let layout: [ParameterInfo]
    let classes: Int
    let network = Mutex<(round: Int, model: Model)?>(nil)

    init(model id: String) throws {
        self.id = id
        let model = try ModelZoo.make(id, seed: 0)
        layout = model.parameters.entries
        classes = model.classes
    }

    struct Answer: Encodable {
        var round: Int
        var predictedClass: Int
        var probabilities: [Double]
    }

    /// The model file of `current` in `encoding` (f32 as the checkpoint is; f16 converted).
    func file(_ current: (round: Int, file: String), encoding: Encoding) throws -> (round: Int, bytes: [UInt8]) {
        let bytes = try FileIO.read(current.file)
        guard encoding != .f32 else { return (current.round, bytes) }
        let (values, header) = try ModelFile.decode(bytes, expecting: layout, model: id)
        return (header.round, values.withUnsafeBufferPointer {
            ModelFile.encode($0, layout: layout, model: id, encoding: encoding, round: header.round)
        })
    }

    func predict(_ image: [UInt8], model current: (round: Int, file: String)) throws -> Answer {
        try network.withLock { n in
            if n == nil { n = (-1, try ModelZoo.make(id, seed: 0)) }
            let model = n!.model
            let shape = model.inputShape
            let pixels = try ImageInput.pixels(from: image, width: shape[1], height: shape[0], invertLightBorder: ModelZoo.lightOnDark(id))
            if n!.round != current.round {
                let (values, header) = try ModelFile.decode(try FileIO.read(current.file), expecting: layout, model: id)
                model.parameters.load(values)
                n!.round = header.round
            }
            let p = try Prediction(model: model, pixels: pixels)
            return Answer(round: n!.round, predictedClass: p.predictedClass, probabilities: p.probabilities)
        }
    }
}

/// Who may do what on the aggregator's API under mutual TLS.
struct AccessRules: Sendable {
    /// Fingerprints of revoked certificates (`[tls] deny`).
    let deny: Set<String>

    /// nil: allowed; otherwise the reason for a 403.
    func refusal(peer: CertificateSummary?, method: HTTPRequest.Method, path: String) -> String? {
        guard let peer else { return "no client certificate" }
        let who = "\(peer.name ?? "?") (\(peer.role?.rawValue ?? "no role"))"
        if deny.contains(peer.fingerprint) { return "the certificate of \(who) is revoked ([tls] deny)" }
        switch peer.role {
        case .admin?, .aggregator?: return nil
        case .observer?:
            if method == .get || path == "/api/v1/predict" { return nil }
            return "\(method.rawValue) \(path) needs an admin certificate; this one is \(who)"
        default:
            return "the aggregator's API takes observer, admin and aggregator certificates; this one is \(who)"
        }
    }
}

struct AccessMiddleware: RouterMiddleware {
    let rules: AccessRules
    let logger: Logger

    func handle(_ request: Request, context: FleetRequestContext,
                next: (Request, FleetRequestContext) async throws -> Response) async throws -> Response {
        let peer = await context.peerCertificate()
        if let reason = rules.refusal(peer: peer, method: request.method, path: request.uri.path) {
            logger.warning("refused \(request.method.rawValue) \(request.uri.path.prefix(100)): \(reason)")
            return JSONResponse.make(AggregatorAPI.Problem(error: reason), status: .forbidden)
        }
        return try await next(request, context)
    }
}
