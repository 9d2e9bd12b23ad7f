import FedPiAggregator
import FedPiEngine
import FedPiTesting
import FedPiWire
import Foundation
import Synchronization
import XCTest

/// One hostile or broken node against a fleet of real workers and a real aggregator on loopback (a
/// scripted fake node, `fake_node.py`), and hostile requests straight to a real worker: the fleet
/// keeps working, nothing crashes, nothing poisoned is kept, requests and memory stay bounded.
final class HostileNodeTests: XCTestCase {
    var fleet: FleetHarness!

    override func setUpWithError() throws {
        fleet = FleetHarness(model: "mnist-mlp")
    }

    override func tearDown() {
        fleet.stopAll()
        fleet = nil
    }

    func startTwo() throws {
        try fleet.startWorker("w1", classes: "0-4")
        try fleet.startWorker("w2", classes: "5-9")
    }

    func testAbsurdEvaluationCountsCannotCrashTheAggregator() throws {
        try startTwo()
        try fleet.startFake("evil", mode: "huge-eval")
        // no test set here: the workers (and the fake) evaluate, and their counts are added up
        try fleet.writeFleet(rounds: 2, minNodes: 2, centralTest: false)
        try fleet.startAggregator()
        XCTAssertEqual(try fleet.waitForAggregator(timeout: 120), 0, fleet.aggregatorLog())
        XCTAssertTrue(fleet.aggregatorLog().contains("evil did not evaluate: evaluated 9223372036854775807 samples"), fleet.aggregatorLog())
        let rounds = try fleet.history()
        XCTAssertEqual(rounds.filter(\.completed).map(\.round), [0, 1, 2])
        XCTAssertTrue(rounds.allSatisfy { ($0.accuracy ?? 0) != 0.5 }, "the fake's made-up accuracy must not be the round's: \(rounds)")
    }

    /// A node that registered 1,000 test samples and answers "99%" for 10^8 would outweigh the fleet.
    func testAnEvaluationForMoreSamplesThanRegisteredIsLeftOut() throws {
        try startTwo()
        try fleet.startFake("boast", mode: "inflated-eval")
        try fleet.writeFleet(rounds: 1, minNodes: 2, centralTest: false)
        try fleet.startAggregator()
        XCTAssertEqual(try fleet.waitForAggregator(timeout: 120), 0, fleet.aggregatorLog())
        XCTAssertTrue(fleet.aggregatorLog().contains("boast did not evaluate: it answered for 100000000 samples, but registered 1000 test samples"),
                      fleet.aggregatorLog())
        let rounds = try fleet.history()
        XCTAssertEqual(rounds.filter(\.completed).map(\.round), [0, 1])
        XCTAssertTrue(rounds.allSatisfy { ($0.accuracy ?? 0) < 0.9 }, "the fake's 99% must not be the fleet's: \(rounds)")
    }

    func testPoisonedUpdatesAreRejectedAndTheCheckpointStaysSane() throws {
        try startTwo()
        try fleet.startFake("evil-claim", mode: "poison")
        try fleet.startFake("evil-norm", mode: "poison-norm")
        try fleet.writeFleet(rounds: 2, minNodes: 2)
        try fleet.startAggregator()
        XCTAssertEqual(try fleet.waitForAggregator(timeout: 120), 0, fleet.aggregatorLog())
        let rounds = try fleet.history()
        XCTAssertEqual(rounds.filter(\.completed).map(\.round), [0, 1, 2])
        for r in rounds where r.round > 0 {
            XCTAssertEqual(r.participants, ["w1", "w2"])
            let reasons = r.failures.joined(separator: " | ")
            XCTAssertTrue(reasons.contains("claims 1000000000000000 training examples"), reasons)
            XCTAssertTrue(reasons.contains("max_norm_ratio"), reasons)
        }
        let net = try ModelZoo.make("mnist-mlp", seed: 1)
        let (values, header) = try ModelFile.decode(try FileIO.read(fleet.stateDir + "/checkpoint.safetensors"),
                                                    expecting: net.parameters.entries, model: "mnist-mlp")
        XCTAssertEqual(header.round, 2)
        XCTAssertLessThan(values.map { abs($0) }.max() ?? .infinity, 10, "no poisoned weight went into the checkpoint")
        XCTAssertGreaterThan(try XCTUnwrap(rounds.last?.accuracy), 0.5)
    }

    func testNodesAnswering404Or202OrAnEndlessUpdateGetBoundedRequests() throws {
        try fleet.startWorker("w1", classes: "0-9")
        try fleet.startFake("lost", mode: "lost")
        try fleet.startFake("hasty", mode: "hasty")
        try fleet.startFake("huge", mode: "huge-update")
        try fleet.writeFleet(rounds: 1, minNodes: 1, roundTimeout: 20)
        try fleet.startAggregator()
        XCTAssertEqual(try fleet.waitForAggregator(timeout: 120), 0, fleet.aggregatorLog())
        let log = fleet.aggregatorLog()
        let lost = fleet.counts("lost"), hasty = fleet.counts("hasty"), huge = fleet.counts("huge")
        print("requests in a 20 s round: lost \(lost), hasty \(hasty), huge \(huge)")
        XCTAssertLessThanOrEqual(lost["PUT"] ?? 0, 6, "dispatched again at most 5 times: \(lost)")
        XCTAssertTrue(log.contains("lost its task for round 1 5 times"), log)
        XCTAssertLessThanOrEqual(log.components(separatedBy: "lost its task for round 1 (restarted?)").count - 1, 1, "one warning, not one per try")
        let hastyGets = try XCTUnwrap(hasty["GET /v1/rounds/R/update"], "\(hasty)")
        XCTAssertLessThan(hastyGets, 30, "a node answering 202 at once is asked less often: \(hasty)")
        XCTAssertEqual(huge["GET /v1/rounds/R/update"], 1, "an oversized update is read once: \(huge)")
        XCTAssertLessThan(huge["MiB sent"] ?? 0, 100, "and not to its end: \(huge)")
        let round1 = try XCTUnwrap(try fleet.history().first { $0.round == 1 })
        XCTAssertTrue(round1.completed)
        XCTAssertEqual(round1.participants, ["w1"])
        XCTAssertTrue(round1.failures.contains { $0.contains("update too large") }, "\(round1.failures)")
    }

    func testOversizedBodiesAndConcurrentEvaluationsLeaveTheWorkerSmallAndAnswering() throws {
        try fleet.startWorker("w1", classes: "0-9", extra: ["--test-limit", "10000"])
        let port = fleet.ports["w1"]!
        let pid = fleet.workers["w1"]!.processIdentifier
        func peakMiB() -> Double {
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
            return (Double(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
        }
        let before = peakMiB()
        // a 10 GB declared body: 413 on the header, nothing read
        XCTAssertTrue(RawHTTP.exchange(port: port, head: "PUT /v1/rounds/1 HTTP/1.1\r\nHost: w\r\nContent-Length: 10000000000\r\n\r\n")
            .hasPrefix("HTTP/1.1 413"))
        // three concurrent 500 MB declared bodies and a chunked one, streamed until the worker stops reading
        let answers = Mutex([String](repeating: "", count: 4))
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            let head = i < 3
                ? "PUT /v1/rounds/1 HTTP/1.1\r\nHost: w\r\nContent-Length: 500000000\r\n\r\n"
                : "POST /v1/evaluate HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n"
            let a = RawHTTP.exchange(port: port, head: head, stream: 64 << 20, chunked: i == 3)
            answers.withLock { $0[i] = a }
        }
        for a in answers.withLock({ $0 }) { XCTAssertTrue(a.hasPrefix("HTTP/1.1 413"), a.prefix(200).description) }
        let afterBodies = peakMiB()
        XCTAssertLessThan(afterBodies - before, 40, "oversized bodies must not be held: peak \(before) -> \(afterBodies) MiB")

        // 16 concurrent evaluations: one runs, the rest are told to come back; health answers meanwhile
        let net = try ModelZoo.make("mnist-mlp", seed: 2)
        let model = ModelFile.encode(weightsOf: net, encoding: .f16)
        let results = Mutex([String](repeating: "", count: 16))
        var slowestHealth = 0.0
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            DispatchQueue.concurrentPerform(iterations: 16) { i in
                let status = String(RawHTTP.exchange(
                    port: port, head: "POST /v1/evaluate HTTP/1.1\r\nHost: w\r\nContent-Length: \(model.count)\r\n\r\n", body: model).prefix(12))
                results.withLock { $0[i] = status }
            }
        }
        for _ in 0..<10 {
            let t = Date()
            XCTAssertTrue(RawHTTP.exchange(port: port, head: "GET /v1/health HTTP/1.1\r\nHost: w\r\n\r\n").hasPrefix("HTTP/1.1 200"))
            slowestHealth = max(slowestHealth, Date().timeIntervalSince(t))
            usleep(50_000)
        }
        group.wait()
        let statuses = results.withLock { $0 }
        XCTAssertLessThan(slowestHealth, 1.0, "health answers within 1 s during 16 concurrent evaluations")
        XCTAssertTrue(statuses.allSatisfy { $0 == "HTTP/1.1 200" || $0 == "HTTP/1.1 429" }, "\(statuses)")
        XCTAssertTrue(statuses.contains("HTTP/1.1 200"), "\(statuses)")
        print("worker peak \(before) -> \(afterBodies) -> \(peakMiB()) MiB; evaluations \(statuses.filter { $0.hasSuffix("200") }.count) x 200, "
              + "\(statuses.filter { $0.hasSuffix("429") }.count) x 429; slowest health \(slowestHealth) s")
        XCTAssertTrue(fleet.workers["w1"]!.isRunning)
    }
}
