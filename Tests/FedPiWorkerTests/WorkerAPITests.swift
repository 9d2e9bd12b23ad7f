import FedPiData
import FedPiEngine
import FedPiTraining
import FedPiTesting
import FedPiWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import XCTest

@testable import FedPiWorker

/// The worker's HTTP API through Hummingbird's in-process router test client: hostile bodies are
/// refused with a reason and change nothing; a task trains, is idempotent, survives a restart.
final class WorkerAPITests: XCTestCase {
    static let data = IDXFixtures.syntheticDirectory(train: 300, test: 40, gzip: true)
    /// Training samples of classes 0-4, the test workers' share.
    static let shard = try! MNISTDirectory(data).load(.train).indices(ofClasses: [0, 1, 2, 3, 4]).count

    func service(stateDir: String? = nil, maxBody: Int? = nil, maxEpochs: Int = 20, logLevel: Logger.Level = .info) throws -> WorkerService {
        var s = WorkerSettings()
        s.name = "test-node"
        s.data = WorkerAPITests.data
        s.classes = "0-4"
        s.stateDir = stateDir ?? IDXFixtures.temporaryDirectory("fedpi-worker-state")
        s.lanes = 1
        s.maxLocalEpochs = maxEpochs
        var logger = Logger(label: "test")
        logger.logLevel = logLevel
        return try WorkerService(settings: s, model: "mnist-mlp", maxBodyBytes: maxBody, logger: logger)
    }

    static func global(round: Int, metadata: [String: String] = [:]) throws -> ByteBuffer {
        let net = try ModelZoo.make("mnist-mlp", seed: 4)
        var config = TrainingConfig()
        config.batchSize = 16
        let bytes = net.parameters.flatValues.withUnsafeBufferPointer {
            ModelFile.encode($0, layout: net.parameters.entries, model: "mnist-mlp", encoding: .f16, round: round,
                             extra: config.metadata.merging(metadata) { $1 })
        }
        return ByteBuffer(bytes: bytes)
    }

    static func text(_ r: TestResponse) -> String { String(buffer: r.body) }

    func testHealthNodeAndMetrics() async throws {
        let app = Application(router: try service().router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/health", method: .get) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/v1/node", method: .get) { r in
                XCTAssertEqual(r.status, .ok)
                let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(WorkerAPITests.text(r).utf8)) as? [String: Any])
                XCTAssertEqual(o["node"] as? String, "test-node")
                XCTAssertEqual(o["state"] as? String, "idle")
                XCTAssertEqual(o["classes"] as? [Int], [0, 1, 2, 3, 4])
                XCTAssertEqual(o["samples"] as? Int, WorkerAPITests.shard)
            }
            try await client.execute(uri: "/metrics", method: .get) { r in
                XCTAssertTrue(WorkerAPITests.text(r).contains("fedpi_worker_state{state=\"idle\"} 1"), WorkerAPITests.text(r))
            }
        }
    }

    func testHostileBodiesAreRefusedAndChangeNothing() async throws {
        let svc = try service(maxBody: 1_500_000)
        let app = Application(router: svc.router())
        let good = Array(buffer: try WorkerAPITests.global(round: 1))
        try await app.test(.router) { client in
            var bodies: [(String, [UInt8])] = [
                ("empty", []), ("truncated", Array(good.prefix(good.count / 2))), ("garbage", Array(repeating: 0x41, count: 1000)),
                ("header lie", [0xFF, 0xFF, 0, 0, 0, 0, 0, 0] + good.dropFirst(8)),
            ]
            var flipped = good
            flipped[flipped.count - 3] ^= 0x40
            bodies.append(("checksum", flipped))
            bodies.append(("bad config", Array(buffer: try WorkerAPITests.global(round: 1, metadata: ["train.lr": "-2"]))))
            bodies.append(("wrong round", Array(buffer: try WorkerAPITests.global(round: 7))))
            let other = try ModelZoo.make("mnist-cnn", seed: 1)
            bodies.append(("other model", other.parameters.flatValues.withUnsafeBufferPointer {
                ModelFile.encode($0, layout: other.parameters.entries, model: "mnist-cnn", encoding: .i8, round: 1)
            }))
            for (what, body) in bodies {
                try await client.execute(uri: "/v1/rounds/1", method: .put, body: ByteBuffer(bytes: body)) { r in
                    XCTAssertEqual(r.status, .badRequest, what)
                    XCTAssertTrue(WorkerAPITests.text(r).contains("\"state\":\"error\""), "\(what): \(WorkerAPITests.text(r))")
                }
            }
            try await client.execute(uri: "/v1/rounds/1", method: .put, body: ByteBuffer(bytes: [UInt8](repeating: 1, count: 1_600_000))) { r in
                XCTAssertEqual(r.status, .contentTooLarge)
            }
            try await client.execute(uri: "/v1/rounds/x", method: .put, body: ByteBuffer(bytes: good)) { XCTAssertEqual($0.status, .badRequest) }
            try await client.execute(uri: "/v1/rounds/1/update", method: .get) { XCTAssertEqual($0.status, .notFound) }
        }
        XCTAssertEqual(svc.runner.snapshot.phase, .idle)
        XCTAssertNil(svc.runner.snapshot.round)
    }

    func testTaskTrainsIsIdempotentIsSupersededAndSurvivesARestart() async throws {
        let state = IDXFixtures.temporaryDirectory("fedpi-worker-state")
        let svc = try service(stateDir: state)
        let app = Application(router: svc.router())
        let body = try WorkerAPITests.global(round: 2)
        let update = try await app.test(.router) { client -> [UInt8] in
            try await client.execute(uri: "/v1/rounds/2", method: .put, body: body) { XCTAssertEqual($0.status, .accepted) }
            let update = try await client.execute(uri: "/v1/rounds/2/update?wait=60", method: .get) { r in
                XCTAssertEqual(r.status, .ok)
                return Array(buffer: r.body)
            }
            // the same round and model again: nothing retrains, the same update is served
            try await client.execute(uri: "/v1/rounds/2", method: .put, body: body) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertTrue(WorkerAPITests.text(r).contains("update ready"))
            }
            try await client.execute(uri: "/v1/rounds/2/update", method: .get) { XCTAssertEqual(Array(buffer: $0.body), update) }
            try await client.execute(uri: "/v1/rounds/3/update", method: .get) { XCTAssertEqual($0.status, .notFound) }
            return update
        }
        XCTAssertEqual(svc.runner.totals.rounds, 1)
        let net = try ModelZoo.make("mnist-mlp", seed: 1)
        let (delta, header) = try ModelFile.decode(update, expecting: net.parameters.entries, model: "mnist-mlp")
        XCTAssertEqual(header.kind, .delta)
        XCTAssertEqual(header.round, 2)
        XCTAssertEqual(header.examples, WorkerAPITests.shard)
        XCTAssertGreaterThan(delta.map { abs($0) }.max() ?? 0, 0, "training must move the weights")
        XCTAssertNotNil(header.metadata["train_seconds"].flatMap(Double.init))

        // a new process on the same state folder still serves the finished update
        let restarted = try service(stateDir: state)
        try await Application(router: restarted.router()).test(.router) { client in
            try await client.execute(uri: "/v1/rounds/2/update", method: .get) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual(Array(buffer: r.body), update)
            }
            // a newer round supersedes it
            try await client.execute(uri: "/v1/rounds/3", method: .put, body: try WorkerAPITests.global(round: 3)) { XCTAssertEqual($0.status, .accepted) }
            try await client.execute(uri: "/v1/rounds/2/update", method: .get) { XCTAssertEqual($0.status, .gone) }
            try await client.execute(uri: "/v1/rounds/3", method: .delete) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/v1/rounds/3/update", method: .get) { XCTAssertEqual($0.status, .notFound) }
        }
    }

    func testATaskThatDoesNotFitInMemoryIsRefusedWithTheReason() async throws {
        let svc = try service()
        svc.runner.availableMemory = { 8 << 20 }
        try await Application(router: svc.router()).test(.router) { client in
            try await client.execute(uri: "/v1/rounds/1", method: .put, body: try WorkerAPITests.global(round: 1)) { r in
                XCTAssertEqual(r.status, .serviceUnavailable)
                XCTAssertTrue(WorkerAPITests.text(r).contains("not enough memory"), WorkerAPITests.text(r))
                XCTAssertTrue(WorkerAPITests.text(r).contains("8 MiB available"), WorkerAPITests.text(r))
            }
        }
        XCTAssertEqual(svc.runner.snapshot.phase, .idle)
    }

    func testEvaluateScoresAPostedModel() async throws {
        let app = Application(router: try service().router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/evaluate", method: .post, body: try WorkerAPITests.global(round: 0)) { r in
                XCTAssertEqual(r.status, .ok, WorkerAPITests.text(r))
                let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(WorkerAPITests.text(r).utf8)) as? [String: Any])
                XCTAssertEqual(o["samples"] as? Int, 40)
                XCTAssertNotNil(o["accuracy"] as? Double)
            }
            try await client.execute(uri: "/v1/evaluate", method: .post, body: ByteBuffer(bytes: [1, 2, 3])) { XCTAssertEqual($0.status, .badRequest) }
        }
    }

    func testSettingsFromTOMLAndShards() throws {
        let path = IDXFixtures.temporaryDirectory("fedpi-toml") + "/worker.toml"
        try "name = \"pi-7\"\nlisten = \":9000\"\nclasses = \"4-6\"\nlimit = 50\nstate_dir = \"/tmp/x\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        var s = WorkerSettings()
        try s.load(path: path)
        XCTAssertEqual(s.name, "pi-7")
        XCTAssertEqual(s.host, "0.0.0.0")
        XCTAssertEqual(s.port, 9000)
        XCTAssertEqual(s.classes, "4-6")
        try "name = \"x\"\nlisen = \"1\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try s.load(path: path)) { XCTAssertTrue("\($0)".contains("unknown key lisen"), "\($0)") }
        try "limit = \"many\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try s.load(path: path)) { XCTAssertTrue("\($0)".contains("limit must be an integer"), "\($0)") }
        XCTAssertEqual(try WorkerSettings.parseListen("8471").1, 8471)
        XCTAssertThrowsError(try WorkerSettings.parseListen("host:port"))

        let labels: [UInt8] = (0..<1000).map { UInt8($0 % 10) }
        var t = WorkerSettings()
        t.classes = "4-6"
        XCTAssertEqual(Set(try t.shard(labels: labels).map { labels[$0] }), [4, 5, 6])
        t.classes = nil
        var union: [Int] = []
        for k in 1...3 {
            t.partition = "iid:\(k)/3"
            union += try t.shard(labels: labels)
        }
        XCTAssertEqual(union.sorted(), Array(0..<1000), "the three iid shards tile the set")
        t.partition = "iid:4/3"
        XCTAssertThrowsError(try t.shard(labels: labels))
        t.partition = "dirichlet:0.5:2/2"
        t.limit = 10
        XCTAssertEqual(try t.shard(labels: labels).count, 10)
    }

    func testBoardHealthSpellsOutFirmwareThrottling() {
        XCTAssertEqual(BoardHealth.describeThrottled(0), [])
        XCTAssertEqual(BoardHealth.describeThrottled(0x50005), ["under-voltage", "under-voltage since boot", "throttled", "throttled since boot"])
        XCTAssertEqual(BoardHealth.describeThrottled(0x80008), ["soft temperature limit", "soft temperature limit since boot"])
        let h = BoardHealth.read()
        XCTAssertNotNil(h.memoryAvailableBytes, "Linux has /proc/meminfo")
        XCTAssertTrue(h.summary.contains("MiB available"), h.summary)
    }

    func testStatusLineSaysWhatTheWorkerDoes() {
        var s = TaskRunner.Snapshot()
        XCTAssertEqual(WorkerService.statusLine(s), "idle, waiting for an aggregator")
        s.round = 3
        s.phase = .training
        s.samples = 1200
        s.total = 24000
        s.loss = 0.41234
        XCTAssertEqual(WorkerService.statusLine(s), "round 3: training 1200/24000 samples, loss 0.412")
        s.phase = .done
        XCTAssertEqual(WorkerService.statusLine(s), "round 3: update ready")
    }

    func testBodiesAreBoundedByTheModelsSizeBeforeTheyAreRead() async throws {
        let svc = try service()
        let limit = WorkerService.bodyLimit(try ModelZoo.make("mnist-mlp", seed: 1).parameters.entries)
        XCTAssertEqual(svc.maxBodyBytes, limit)
        XCTAssertLessThan(limit, 1_100_000, "an mnist-mlp file is ~0.8 MB")
        try await Application(router: svc.router()).test(.router) { client in
            for path in ["/v1/rounds/1", "/v1/evaluate"] {
                let method: HTTPRequest.Method = path == "/v1/evaluate" ? .post : .put
                try await client.execute(uri: path, method: method, body: ByteBuffer(bytes: [UInt8](repeating: 7, count: limit + 1))) { r in
                    XCTAssertEqual(r.status, .contentTooLarge, path)
                    XCTAssertTrue(WorkerAPITests.text(r).contains("the most a mnist-mlp file can be"), WorkerAPITests.text(r))
                }
            }
        }
        XCTAssertNil(svc.runner.snapshot.round)
    }

    func testAnOlderRoundNeverReplacesANewerOne() async throws {
        let svc = try service()
        try await Application(router: svc.router()).test(.router) { client in
            try await client.execute(uri: "/v1/rounds/5", method: .put, body: try WorkerAPITests.global(round: 5)) { XCTAssertEqual($0.status, .accepted) }
            let update = try await client.execute(uri: "/v1/rounds/5/update?wait=60", method: .get) { r in
                XCTAssertEqual(r.status, .ok)
                return Array(buffer: r.body)
            }
            try await client.execute(uri: "/v1/rounds/4", method: .put, body: try WorkerAPITests.global(round: 4)) { r in
                XCTAssertEqual(r.status, .conflict)
                XCTAssertTrue(WorkerAPITests.text(r).contains("older than this worker's round 5"), WorkerAPITests.text(r))
            }
            // the finished newer update is still there
            try await client.execute(uri: "/v1/rounds/5/update", method: .get) { XCTAssertEqual(Array(buffer: $0.body), update) }
            // after a DELETE of round 5 (a new federation starting over) round 1 is taken
            try await client.execute(uri: "/v1/rounds/5", method: .delete) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/v1/rounds/1", method: .put, body: try WorkerAPITests.global(round: 1)) { XCTAssertEqual($0.status, .accepted) }
        }
    }

    func testTooMuchWorkAndLongReasonsAreRefusedShortly() async throws {
        let svc = try service(maxEpochs: 3)
        try await Application(router: svc.router()).test(.router) { client in
            let body = try WorkerAPITests.global(round: 1, metadata: ["train.epochs": "1000"])
            try await client.execute(uri: "/v1/rounds/1", method: .put, body: body) { r in
                XCTAssertEqual(r.status, .badRequest)
                XCTAssertTrue(WorkerAPITests.text(r).contains("at most 3 (max_local_epochs)"), WorkerAPITests.text(r))
            }
            let huge = String(repeating: "9", count: 500_000)
            try await client.execute(uri: "/v1/rounds/1", method: .put, body: try WorkerAPITests.global(round: 1, metadata: ["train.lr": huge])) { r in
                XCTAssertEqual(r.status, .badRequest)
                XCTAssertLessThan(r.body.readableBytes, 1000, "the reason quoting the input is cut short")
            }
        }
        XCTAssertNil(svc.runner.snapshot.round)
    }

    func testOneEvaluationAtATime() async throws {
        let svc = try service()
        svc.evaluating.withLock { $0 = true }  // as if one were running
        try await Application(router: svc.router()).test(.router) { client in
            try await client.execute(uri: "/v1/evaluate", method: .post, body: try WorkerAPITests.global(round: 0)) { r in
                XCTAssertEqual(r.status, .tooManyRequests)
                XCTAssertEqual(r.headers[.retryAfter], "5")
            }
            try await client.execute(uri: "/v1/health", method: .get) { XCTAssertEqual($0.status, .ok) }
            svc.evaluating.withLock { $0 = false }
            try await client.execute(uri: "/v1/evaluate", method: .post, body: try WorkerAPITests.global(round: 0)) { XCTAssertEqual($0.status, .ok) }
            XCTAssertFalse(svc.evaluating.withLock { $0 }, "the gate opens again after an evaluation")
        }
    }

    func testDivergedTrainingFailsWithTheReasonNeverServesAnUpdate() async throws {
        let svc = try service()
        try await Application(router: svc.router()).test(.router) { client in
            let body = try WorkerAPITests.global(round: 1, metadata: ["train.lr": "10", "train.momentum": "0.99"])
            try await client.execute(uri: "/v1/rounds/1", method: .put, body: body) { XCTAssertEqual($0.status, .accepted) }
            try await client.execute(uri: "/v1/rounds/1/update?wait=60", method: .get) { r in
                XCTAssertEqual(r.status, .internalServerError)
                XCTAssertTrue(WorkerAPITests.text(r).contains("training diverged"), WorkerAPITests.text(r))
            }
        }
    }

    /// Random methods, paths, query strings and mutated model files through the router: every answer
    /// is one of the API's statuses, nothing traps, the worker still answers. FEDPI_FUZZ_REQUESTS sets
    /// the number of requests and FEDPI_FUZZ_SEED the stream (BENCHMARKS.md reports a long run, made
    /// of several processes: HummingbirdTesting's router client keeps ~5 KB per request, a bare
    /// router too, so one process cannot take millions).
    func testFuzzedRequestsGetAnAPIAnswerAndNeverTrap() async throws {
        let iterations = ProcessInfo.processInfo.environment["FEDPI_FUZZ_REQUESTS"].flatMap(Int.init) ?? 3000
        let svc = try service(logLevel: .critical)  // a line per refused request would be most of the run
        let valid = Array(buffer: try WorkerAPITests.global(round: 1))
        let allowed: Set<Int> = [200, 202, 400, 403, 404, 405, 409, 410, 413, 429, 500, 503]
        let methods: [HTTPRequest.Method] = [.get, .put, .post, .delete, .patch, .head]
        let numbers = ["0", "1", "2", "-1", "9223372036854775807", "9223372036854775808", "x", "1e3", "", "%00", "..%2F"]
        let waits = ["0", "-1", "abc", "1e308", "nan", "inf", "0.01", ""]
        let started = Date()
        let seen = try await Application(router: svc.router()).test(.router) { client -> [Int: Int] in
            var g = SeededGenerator(seed: ProcessInfo.processInfo.environment["FEDPI_FUZZ_SEED"].flatMap(UInt64.init) ?? 42, stream: "fuzz")
            var seen: [Int: Int] = [:]
            for k in 0..<iterations {
                if k > 0, k % 500_000 == 0 { print("\(k) fuzzed requests in \(Int(Date().timeIntervalSince(started))) s") }
                let n = numbers.randomElement(using: &g)!
                let path = [
                    "/v1/rounds/\(n)", "/v1/rounds/\(n)/update?wait=\(waits.randomElement(using: &g)!)", "/v1/evaluate", "/v1/node",
                    "/v1/health", "/metrics", "/v1/rounds", "/v1//rounds/1", "/v1/rounds/1/update/extra", "/\(n)",
                ].randomElement(using: &g)!
                var body = valid
                switch Int.random(in: 0..<6, using: &g) {
                case 0: body = Array(body.prefix(Int.random(in: 0...body.count, using: &g)))
                case 1: for _ in 0..<Int.random(in: 1...8, using: &g) { body[Int.random(in: 0..<body.count, using: &g)] ^= UInt8.random(in: 1...255, using: &g) }
                case 2: for i in 0..<8 { body[i] = UInt8.random(in: 0...255, using: &g) }  // the header length
                case 3:
                    let at = Int.random(in: 8..<min(body.count, 2000), using: &g)  // inside the JSON header
                    body[at] = [UInt8(ascii: "{"), UInt8(ascii: "\""), UInt8(ascii: "9"), 0, 0xFF].randomElement(using: &g)!
                case 4: body = (0..<Int.random(in: 0...64, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
                default: break  // the valid file
                }
                let status = try await client.execute(uri: path, method: methods.randomElement(using: &g)!, body: ByteBuffer(bytes: body)) {
                    Int($0.status.code)
                }
                seen[status, default: 0] += 1
                XCTAssertTrue(allowed.contains(status), "\(path) answered \(status)")
            }
            try await client.execute(uri: "/v1/health", method: .get) { XCTAssertEqual($0.status, .ok) }
            return seen
        }
        print("\(iterations) fuzzed requests in \(Int(Date().timeIntervalSince(started))) s; statuses \(seen.sorted { $0.key < $1.key })")
    }
}
