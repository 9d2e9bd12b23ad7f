import AsyncHTTPClient
import FedPiAggregator
import FedPiEngine
import FedPiFederation
import FedPiTraining
import FedPiIdentity
import FedPiTesting
import FedPiWire
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import XCTest

/// Fleet identity with real processes on loopback: the fleet over mutual TLS, who may do what, what
/// is refused at the handshake, a worker presenting another node's certificate, a certificate reload
/// during a task, and the loopback-only default without TLS.
final class TLSFleetTests: XCTestCase {
    var fleet: FleetHarness!
    /// Shut down in tearDown, whatever the test did.
    var clients: [HTTPClient] = []

    override func setUpWithError() throws {
        fleet = FleetHarness()
        try fleet.enableTLS()
    }

    override func tearDown() async throws {
        for c in clients { try? await c.shutdown() }
        clients = []
        fleet.stopAll()
        fleet = nil
    }

    /// An HTTPS client presenting `certificate` (a name in the harness's tls folder; nil: none),
    /// trusting the fleet CA.
    func client(_ certificate: String?) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(fleet.tlsDir + "/ca/ca.crt"))
        tls.certificateVerification = .noHostnameVerification
        if let certificate {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile("\(fleet.tlsDir)/\(certificate).crt").map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: "\(fleet.tlsDir)/\(certificate).key", format: .pem))
        }
        var c = HTTPClient.Configuration(tlsConfiguration: tls)
        c.timeout = .init(connect: .seconds(3), read: .seconds(70))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
        clients.append(client)
        return client
    }

    func call(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, body: [UInt8]? = nil) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await client.execute(request, timeout: .seconds(70))
        let text = String(buffer: try await response.body.collect(upTo: 16 << 20))
        return (Int(response.status.code), text)
    }

    /// Whether a request with `client` fails before any HTTP answer (refused at the handshake).
    func refusedAtHandshake(_ client: HTTPClient, _ url: String) async -> Bool {
        do {
            _ = try await call(client, .GET, url)
            return false
        } catch {
            return true
        }
    }

    func testFleetOverMutualTLSAndWhoMayDoWhat() async throws {
        for (name, classes) in [("w1", "0-3"), ("w2", "4-6"), ("w3", "7-9")] { try fleet.startWorker(name, classes: classes) }
        try fleet.writeFleet(rounds: 2, minNodes: 3)
        try fleet.startAggregator()
        XCTAssertEqual(try fleet.waitForAggregator(timeout: 240), 0, fleet.aggregatorLog())
        let rounds = try fleet.history()
        XCTAssertEqual(rounds.filter(\.completed).map(\.round), [0, 1, 2])
        XCTAssertEqual(rounds.last?.participants, ["w1", "w2", "w3"])
        XCTAssertTrue(fleet.log("w1").contains("serving HTTPS with mutual TLS"), fleet.log("w1"))

        let base = "https://127.0.0.1:\(fleet.ports["w1"]!)"
        // refused at the handshake: no certificate, another CA's, an expired one
        let anonymous = try client(nil)
        var refused = await refusedAtHandshake(anonymous, base + "/v1/health")
        XCTAssertTrue(refused)
        let other = try CertificateAuthority.create(directory: fleet.tlsDir + "/other-ca", name: "other", days: 30)
        try fleet.issue("intruder", role: .aggregator, by: other)
        let intruder = try client("intruder")
        refused = await refusedAtHandshake(intruder, base + "/v1/health")
        XCTAssertTrue(refused)
        try fleet.issue("expired", role: .aggregator, days: 1, now: Date().addingTimeInterval(-10 * 86_400))
        let expired = try client("expired")
        refused = await refusedAtHandshake(expired, base + "/v1/health")
        XCTAssertTrue(refused)

        // a worker's certificate may read, not act
        let worker = try client("w2")
        var (status, text) = try await call(worker, .GET, base + "/v1/health")
        XCTAssertEqual(status, 200)
        (status, text) = try await call(worker, .PUT, base + "/v1/rounds/9", body: [1, 2, 3])
        XCTAssertEqual(status, 403)
        XCTAssertTrue(text.contains("needs the aggregator's certificate"), text)
        (status, _) = try await call(worker, .GET, base + "/v1/rounds/2/update")
        XCTAssertEqual(status, 403)
        (status, _) = try await call(worker, .POST, base + "/v1/evaluate", body: [1, 2, 3])
        XCTAssertEqual(status, 403)
        (status, _) = try await call(worker, .DELETE, base + "/v1/rounds/2")
        XCTAssertEqual(status, 403)
        // an observer reads metrics; the aggregator collects the round-2 update the worker kept
        try fleet.issue("prometheus", role: .observer)
        let observer = try client("prometheus")
        (status, text) = try await call(observer, .GET, base + "/metrics")
        XCTAssertEqual(status, 200)
        XCTAssertTrue(text.contains("fedpi_worker_rounds_trained_total 2"), text)
        let aggregator = try client("aggregator")
        (status, _) = try await call(aggregator, .GET, base + "/v1/rounds/2/update")
        XCTAssertEqual(status, 200)

        // plain HTTP and garbage at the TLS port fail without harming the worker
        let plain = HTTPClient(eventLoopGroupProvider: .singleton)
        clients.append(plain)
        refused = await refusedAtHandshake(plain, "http://127.0.0.1:\(fleet.ports["w1"]!)/v1/health")
        XCTAssertTrue(refused)
        let port = fleet.ports["w1"]!
        for i in 0..<300 { TLSFleetTests.sendRaw(port: port, bytes: i % 3 == 0 ? [] : (0..<(i % 7) * 100).map { UInt8(truncatingIfNeeded: $0 &* 31) }) }
        let started = Date()
        (status, _) = try await call(aggregator, .GET, base + "/v1/health")
        XCTAssertEqual(status, 200)
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.0, "health must answer promptly after the flood")
        XCTAssertTrue(fleet.workers["w1"]!.isRunning)
    }

    func testAnotherNodesCertificateFailsThatNodeWithTheReason() throws {
        try fleet.startWorker("w1", classes: "0-4")
        // w2 presents w1's certificate: a stolen key cannot stand in for another node
        try fleet.startWorker("w2", classes: "5-9", certificate: "w1")
        try fleet.writeFleet(rounds: 1, minNodes: 1)
        try fleet.startAggregator()
        XCTAssertEqual(try fleet.waitForAggregator(timeout: 120), 0, fleet.aggregatorLog())
        XCTAssertTrue(fleet.aggregatorLog().contains("node w2 offline: the certificate of w2 is for w1"), fleet.aggregatorLog())
        XCTAssertEqual(try fleet.history().last?.participants, ["w1"])
    }

    func testReloadTakesANewCertificateWithoutLosingTheRunningTask() async throws {
        try fleet.startWorker("w1", classes: "0-9", limit: 12000)
        let base = "https://127.0.0.1:\(fleet.ports["w1"]!)"
        let aggregator = try client("aggregator")
        let net = try ModelZoo.make("mnist-cnn", seed: 3)
        var config = TrainingConfig()
        config.batchSize = 32
        config.epochs = 2
        let global = net.parameters.flatValues.withUnsafeBufferPointer {
            ModelFile.encode($0, layout: net.parameters.entries, model: "mnist-cnn", encoding: .f16, round: 1, extra: config.metadata)
        }
        var (status, text) = try await call(aggregator, .PUT, base + "/v1/rounds/1", body: global)
        XCTAssertEqual(status, 202, text)
        let material = try TLSMaterial(files: TLSFiles(certificate: fleet.tlsDir + "/aggregator.crt", key: fleet.tlsDir + "/aggregator.key",
                                                       authority: fleet.tlsDir + "/ca/ca.crt"), role: .aggregator)
        let before = try await PeerCertificate.fetch(host: "127.0.0.1", port: fleet.ports["w1"]!, material: material)
        let renewed = try fleet.issue("w1", role: .worker, days: 20)
        XCTAssertNotEqual(before.fingerprint, renewed.fingerprint)
        fleet.signal("w1", SIGHUP)
        try fleet.waitFor("the reload", timeout: 10) { fleet.log("w1").contains("reloaded the TLS certificate") }
        let after = try await PeerCertificate.fetch(host: "127.0.0.1", port: fleet.ports["w1"]!, material: material)
        XCTAssertEqual(after.fingerprint, renewed.fingerprint)
        (status, text) = try await call(aggregator, .GET, base + "/v1/node")
        XCTAssertTrue(text.contains(renewed.fingerprint), text)
        XCTAssertTrue(text.contains(#""round":1"#) && text.contains(#""state":"training""#), "still training after the reload: \(text)")
        // the task that was running during the reload delivers
        (status, text) = try await call(aggregator, .GET, base + "/v1/rounds/1/update?wait=60")
        XCTAssertEqual(status, 200, text)
        XCTAssertTrue(fleet.workers["w1"]!.isRunning)
        XCTAssertEqual(fleet.log("w1").components(separatedBy: "round 1: training started").count, 2, "trained once: \(fleet.log("w1"))")
        try await aggregator.shutdown()
    }

    func testPlainHTTPOffLoopbackNeedsInsecure() throws {
        fleet.authority = nil
        let worker = fleet.binaries.appendingPathComponent("fedpi-worker").path
        let data = IDXFixtures.syntheticDirectory(train: 50, test: 10, gzip: false)
        let refused = Process()
        refused.executableURL = URL(fileURLWithPath: worker)
        refused.arguments = ["--listen", "0.0.0.0:0", "--data", data, "--state-dir", fleet.dir + "/insecure"]
        let pipe = Pipe()
        refused.standardError = pipe
        try refused.run()
        refused.waitUntilExit()
        let message = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertNotEqual(refused.terminationStatus, 0)
        XCTAssertTrue(message.contains("refusing to serve plain HTTP on 0.0.0.0"), message)
        // with --insecure it serves, and says so
        try fleet.startWorker("w9", classes: "0-9", limit: 50, extra: ["--insecure"])
        XCTAssertTrue(fleet.log("w9").contains("no TLS configured"), fleet.log("w9"))
    }

    /// `fedpi-worker --health-check` (the image's HEALTHCHECK): exit 0 and the answer over mutual TLS
    /// with a fleet certificate, from flags or from FEDPI_HEALTH_*; exit 1 with another CA's
    /// certificate, without TLS against a TLS worker, and when nothing listens.
    func testHealthCheckCommand() throws {
        try fleet.startWorker("w1", classes: "0-3", limit: 50)
        let port = fleet.ports["w1"]!
        func probe(_ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
            let p = Process()
            p.executableURL = fleet.binaries.appendingPathComponent("fedpi-worker")
            p.arguments = ["--health-check"] + arguments
            p.environment = environment
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            return (p.terminationStatus, text)
        }
        var (code, text) = try probe(["--listen", "127.0.0.1:\(port)"] + fleet.tlsArguments("w1"))
        XCTAssertEqual(code, 0, text)
        XCTAssertTrue(text.hasPrefix("200 {\"state\":\"ok\"}"), text)
        // the image's way: no flags but the port, another fleet certificate from the environment
        try fleet.issue("probe", role: .worker)
        let tls = fleet.tlsDir
        (code, text) = try probe(["--listen", "0.0.0.0:\(port)"], environment: [
            "FEDPI_HEALTH_CERT": "\(tls)/probe.crt", "FEDPI_HEALTH_KEY": "\(tls)/probe.key", "FEDPI_HEALTH_CA": "\(tls)/ca/ca.crt"])
        XCTAssertEqual(code, 0, text)
        let other = try CertificateAuthority.create(directory: tls + "/other-ca", name: "other", days: 30)
        try fleet.issue("intruder", role: .worker, by: other)
        (code, text) = try probe(["--listen", "127.0.0.1:\(port)", "--tls-cert", "\(tls)/intruder.crt", "--tls-key", "\(tls)/intruder.key",
                                  "--tls-ca", "\(tls)/other-ca/ca.crt"])
        XCTAssertEqual(code, 1, text)
        XCTAssertTrue(text.contains("unhealthy"), text)
        (code, text) = try probe(["--listen", "127.0.0.1:\(port)"])
        XCTAssertEqual(code, 1, "plain HTTP to a TLS worker: \(text)")
        fleet.stopAll()
        (code, text) = try probe(["--listen", "127.0.0.1:\(port)"] + fleet.tlsArguments("w1"))
        XCTAssertEqual(code, 1, text)
        XCTAssertTrue(text.contains("cannot connect"), text)
    }

    /// Connects, writes `bytes` (maybe none) and closes.
    static func sendRaw(port: Int, bytes: [UInt8]) {
        guard let fd = RawHTTP.connect(port: port) else { return }
        _ = RawHTTP.put(fd, bytes)
        close(fd)
    }
}
