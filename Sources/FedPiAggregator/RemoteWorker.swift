import AsyncHTTPClient
import FedPiEngine
import FedPiFederation
import FedPiTraining
import FedPiWire
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// A worker on another board, over HTTP: dispatch (`PUT /v1/rounds/r`), then long-poll collect
/// (`GET /v1/rounds/r/update?wait=S`). A worker that lost its task (404) gets it again; a dropped
/// connection is retried with backoff; a node that refuses connections for longer than the grace
/// period is given up for the round. The round's deadline arrives as task cancellation.
public final class RemoteWorker: WorkerClient, Sendable {
    public let node: String
    let url: String
    let client: HTTPClient
    let inventory: NodeInventory
    let grace: Double
    /// Largest update read from the node: the model's f32 file and a header allowance.
    let maxUpdateBytes: Int
    let logger: Logger
    /// Seconds a collect call asks the worker to hold the connection.
    static let longPoll = 20.0
    /// Most times a round's task is dispatched again to a node that says it lost it (404).
    static let maxRedispatches = 5

    public init(node: String, url: String, client: HTTPClient, inventory: NodeInventory, unreachableGrace: Double,
                maxUpdateBytes: Int = WireLimits().maxFileBytes, logger: Logger) {
        self.node = node
        self.url = url
        self.client = client
        self.inventory = inventory
        grace = unreachableGrace
        self.maxUpdateBytes = maxUpdateBytes
        self.logger = logger
    }

    /// Seconds to pause before try `n` (1, 2, …) of something that did not work: 0.25·2^(n−1) s,
    /// capped at `cap`, times a jitter in [0.5, 1].
    static func pause(_ n: Int, cap: Double) -> Double {
        min(cap, 0.25 * pow(2, Double(min(max(n, 1) - 1, 20)))) * Double.random(in: 0.5...1)
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// A refusal that retrying cannot fix (the worker says the request itself is wrong).
    struct Refused: Error, CustomStringConvertible {
        let description: String
    }

    public func train(round: Int, global: [UInt8], config: TrainingConfig) async throws -> [UInt8] {
        let clock = ContinuousClock()
        var dispatched = false
        var unreachableSince: ContinuousClock.Instant?
        var retry = 0, redispatches = 0, hastyAnswers = 0
        // the same warning again and again is logged the first time and then every 10th time, with a count
        var repeats: [String: Int] = [:]
        func warn(_ key: String, _ message: @autoclosure () -> String) {
            let n = (repeats[key] ?? 0) + 1
            repeats[key] = n
            if n == 1 { logger.warning("\(message())") } else if n % 10 == 0 { logger.warning("\(message()) (\(n) times this round)") }
        }
        while true {
            try Task.checkCancellation()
            do {
                if !dispatched {
                    var put = HTTPClientRequest(url: "\(url)/v1/rounds/\(round)")
                    put.method = .PUT
                    put.headers.add(name: "Content-Type", value: "application/octet-stream")
                    put.body = .bytes(ByteBuffer(bytes: global))
                    let response = try await client.execute(put, timeout: .seconds(60))
                    let body = try await response.body.collect(upTo: 1 << 20)
                    switch response.status.code {
                    case 200, 202:
                        dispatched = true
                        await inventory.succeeded(node, busy: true)
                    case 400..<500, 503:
                        throw Refused(description: "the node refused round \(round): \(RemoteWorker.message(body))")
                    default:
                        throw Failure("PUT answered \(response.status.code): \(RemoteWorker.message(body))")
                    }
                }
                let wait = RemoteWorker.longPoll
                let asked = clock.now
                let get = HTTPClientRequest(url: "\(url)/v1/rounds/\(round)/update?wait=\(Int(wait))")
                let response = try await client.execute(get, timeout: .seconds(Int64(wait) + 15))
                if response.status.code == 200,
                   let declared = response.headers.first(name: "Content-Length").flatMap(Int.init), declared > maxUpdateBytes {
                    throw Refused(description: "update too large: \(declared) bytes, more than the \(maxUpdateBytes) a \(node) update can be")
                }
                let body: ByteBuffer
                do {
                    body = try await response.body.collect(upTo: response.status.code == 200 ? maxUpdateBytes : Control.maxMessageBytes)
                } catch is NIOTooManyBytesError {
                    throw Refused(description: response.status.code == 200
                        ? "update too large: more than the \(maxUpdateBytes) bytes an update of this model can be"
                        : "answer \(response.status.code) too large: more than \(Control.maxMessageBytes) bytes")
                }
                unreachableSince = nil
                retry = 0
                switch response.status.code {
                case 200:
                    try await checkExamples(body)
                    await inventory.succeeded(node)
                    return Array(buffer: body)
                case 202:
                    logger.debug("\(node): round \(round) still training: \(RemoteWorker.message(body))")
                    // a node that answers 202 at once instead of holding the long poll is asked less often
                    if clock.now - asked < .seconds(1) {
                        hastyAnswers += 1
                        try await Task.sleep(for: .milliseconds(Int(RemoteWorker.pause(hastyAnswers, cap: 5) * 1000)))
                    } else {
                        hastyAnswers = 0
                    }
                case 404:
                    redispatches += 1
                    guard redispatches <= RemoteWorker.maxRedispatches else {
                        throw Refused(description: "lost its task for round \(round) \(RemoteWorker.maxRedispatches) times after it was dispatched again")
                    }
                    warn("404", "node \(node) lost its task for round \(round) (restarted?); dispatching again")
                    try await Task.sleep(for: .milliseconds(Int(RemoteWorker.pause(redispatches, cap: 10) * 1000)))
                    dispatched = false
                case 410:
                    throw Refused(description: "the node moved on: \(RemoteWorker.message(body))")
                case 500:
                    await inventory.succeeded(node)
                    throw Refused(description: "training failed on the node: \(RemoteWorker.message(body))")
                default:
                    throw Failure("GET update answered \(response.status.code): \(RemoteWorker.message(body))")
                }
            } catch let e as Refused {
                throw e
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                let reason = RemoteWorker.describe(error)
                if RemoteWorker.isSilence(error) {
                    // connected but no answer: a frozen or overloaded node; only the round deadline ends this
                    warn("silent", "node \(node) did not answer (\(reason)); asking again")
                } else {
                    let since = unreachableSince ?? clock.now
                    unreachableSince = since
                    await inventory.failed(node, reason)
                    let out = Double((clock.now - since).components.seconds)
                    if out >= grace {
                        throw Failure("unreachable for \(Int(out)) s during round \(round): \(reason)")
                    }
                }
                retry += 1
                try await Task.sleep(for: .milliseconds(Int(RemoteWorker.pause(retry, cap: 2) * 1000)))
            }
        }
    }

    /// An update may claim no more training examples than the node registered when it was probed
    /// (nor more than any board could hold): its weight in the average is bounded by what it said it has.
    func checkExamples(_ body: ByteBuffer) async throws {
        let claimed = (try? SafetensorsFile.decode(Array(buffer: body)))?.metadata["examples"].flatMap(Int.init) ?? 0
        let registered = await inventory.samples(of: node) ?? Control.maxSamples
        guard claimed <= min(registered, Control.maxSamples) else {
            throw Refused(description: "update rejected: it claims \(claimed) training examples, but the node registered \(registered) samples")
        }
    }

    /// Federated evaluation: the global model (f16) goes to each worker's `POST /v1/evaluate`; the
    /// answers are averaged weighted by test samples. A worker that fails to answer, answers what
    /// cannot be true (`Control.Evaluation.check`) or for more samples than the test split it
    /// registered, is left out with the reason in the log.
    static func evaluate(_ model: Model, on workers: [RemoteWorker], logger: Logger) async throws -> EvaluationResult {
        let body = ModelFile.encode(weightsOf: model, encoding: .f16)
        let clock = ContinuousClock(), start = clock.now
        let answers = await withTaskGroup(of: Control.Evaluation?.self) { group in
            for w in workers {
                group.addTask {
                    var request = HTTPClientRequest(url: "\(w.url)/v1/evaluate")
                    request.method = .POST
                    request.body = .bytes(ByteBuffer(bytes: body))
                    do {
                        let response = try await w.client.execute(request, timeout: .seconds(120))
                        let bytes = try await response.body.collect(upTo: Control.maxMessageBytes)
                        guard response.status == .ok else {
                            logger.warning("\(w.node) did not evaluate: \(response.status.code) \(RemoteWorker.message(bytes))")
                            return nil
                        }
                        let answer = try RemoteWorker.decode(Control.Evaluation.self, bytes).check(classes: model.classes)
                        // its weight in the fleet's accuracy is bounded by the test split it registered
                        if let registered = await w.inventory.testSamples(of: w.node), answer.samples > registered {
                            logger.warning("\(w.node) did not evaluate: it answered for \(answer.samples) samples, but registered \(registered) test samples")
                            return nil
                        }
                        return answer
                    } catch {
                        logger.warning("\(w.node) did not evaluate: \(RemoteWorker.describe(error))")
                        return nil
                    }
                }
            }
            var out: [Control.Evaluation] = []
            for await a in group { if let a { out.append(a) } }
            return out
        }
        // each count is at most Control.maxSamples, so the sums stay far inside Int and Double
        let n = answers.reduce(0) { $0 + $1.samples }
        guard n > 0 else { throw Failure("no worker could evaluate the model") }
        // the fleet's confusion matrix: the sum of the nodes', when every node sent one (checked above)
        var confusion: [[Int]] = []
        if answers.allSatisfy({ $0.confusion != nil }) {
            confusion = [[Int]](repeating: [Int](repeating: 0, count: model.classes), count: model.classes)
            for a in answers { for (t, row) in a.confusion!.enumerated() { for (p, v) in row.enumerated() { confusion[t][p] += v } } }
        }
        return EvaluationResult(loss: answers.reduce(0) { $0 + $1.loss * Double($1.samples) } / Double(n),
                                accuracy: answers.reduce(0) { $0 + $1.accuracy * Double($1.samples) } / Double(n), count: n,
                                seconds: Federation.seconds(clock.now - start), confusion: confusion)
    }

    /// A node's JSON answer as `T`, or a `ControlError` saying why not.
    static func decode<T: Decodable>(_ type: T.Type, _ body: ByteBuffer) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(T.self, from: Data(Array(buffer: body)))
        } catch {
            throw ControlError("answered something that is not a \(T.self): \(String(decoding: Array(buffer: body).prefix(200), as: UTF8.self).clipped(200))")
        }
    }

    /// Timeouts on an open connection: the node is there but silent.
    static func isSilence(_ error: any Error) -> Bool {
        if let e = error as? HTTPClientError { return e == .readTimeout || e == .deadlineExceeded }
        return false
    }

    /// A short, human reading of a transport error.
    static func describe(_ error: any Error) -> String {
        if let e = error as? ControlError { return e.description }
        if error is NIOTooManyBytesError { return "the answer is larger than anything it could rightly be" }
        if "\(type(of: error))".hasPrefix("NIOSSL") { return "TLS failed: \(error)" }
        if let e = error as? HTTPClientError {
            switch e {
            case .readTimeout, .deadlineExceeded: return "no answer before the timeout"
            case .connectTimeout: return "connect timed out"
            case .remoteConnectionClosed: return "connection closed by the node"
            default: return "\(e)"
            }
        }
        let text = "\(error)"
        if text.contains("refused") || text.contains("ECONNREFUSED") { return "connection refused" }
        if text.contains("reset by peer") { return "connection reset" }
        return text
    }

    /// The `message` of a worker's JSON answer, or the body's first 200 bytes; at most 300 characters.
    static func message(_ body: ByteBuffer) -> String {
        if let m = try? decode(Control.Message.self, body), let text = m.message { return text.clipped() }
        return String(decoding: Array(buffer: body).prefix(200), as: UTF8.self).clipped(200)
    }
}
