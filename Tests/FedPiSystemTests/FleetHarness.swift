import FedPiAggregator
import FedPiIdentity
import FedPiTesting
import Foundation
import XCTest

/// Real `fedpi-worker` and `fedpi-aggregator` processes on loopback, with their logs in a temporary
/// folder. Everything started is killed when the harness goes away.
final class FleetHarness {
    let dir: String
    let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    var workers: [String: Process] = [:]
    var ports: [String: Int] = [:]
    var aggregator: Process?
    var aggregatorRuns = 0
    let model: String
    /// With `enableTLS()`: the fleet CA, the aggregator's certificate, one certificate per worker.
    var authority: CertificateAuthority?
    var tlsDir: String { dir + "/tls" }

    init(model: String = "mnist-cnn") {
        dir = IDXFixtures.temporaryDirectory("fedpi-fleet")
        self.model = model
    }

    deinit { stopAll() }

    func stopAll() {
        for p in workers.values where p.isRunning {
            kill(p.processIdentifier, SIGCONT)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        if let a = aggregator, a.isRunning {
            kill(a.processIdentifier, SIGKILL)
            a.waitUntilExit()
        }
    }

    /// Makes a fleet CA and the aggregator's certificate; workers started from now on serve mutual TLS.
    func enableTLS() throws {
        let ca = try CertificateAuthority.create(directory: tlsDir + "/ca", name: "test CA", days: 30)
        authority = ca
        try issue("aggregator", role: .aggregator)
    }

    /// A key and certificate for `name` in tlsDir (NAME.key, NAME.crt), signed by the fleet CA.
    @discardableResult
    func issue(_ name: String, role: Role, days: Int = 30, now: Date = Date(), by ca: CertificateAuthority? = nil) throws -> FleetCertificate {
        let signer = try XCTUnwrap(ca ?? authority)
        let (key, _) = try CertificateAuthority.request(name: name)
        let certificate = try signer.issue(name: name, role: role, publicKey: key.publicKey, ips: ["127.0.0.1"], days: days, now: now)
        try Keys.write(key, to: "\(tlsDir)/\(name).key")
        try IdentityFiles.write(PEMText.certificate(certificate.der), to: "\(tlsDir)/\(name).crt")
        return certificate
    }

    /// The worker flags for serving with certificate `certificate` (default: its own, issued on first use).
    func tlsArguments(_ name: String, certificate: String? = nil) throws -> [String] {
        guard authority != nil else { return [] }
        let cert = certificate ?? name
        if !FileManager.default.fileExists(atPath: "\(tlsDir)/\(cert).crt") { try issue(cert, role: .worker) }
        return ["--tls-cert", "\(tlsDir)/\(cert).crt", "--tls-key", "\(tlsDir)/\(cert).key", "--tls-ca", "\(tlsDir)/ca/ca.crt"]
    }

    func launch(_ name: String, _ arguments: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = binaries.appendingPathComponent(name)
        p.arguments = arguments
        FileManager.default.createFile(atPath: dir + "/" + log, contents: nil)
        let handle = FileHandle(forWritingAtPath: dir + "/" + log)!
        handle.seekToEndOfFile()
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    /// Starts (or restarts, on the same port and state folder) a worker and waits until it listens.
    func startWorker(_ name: String, classes: String, limit: Int = 900, extra: [String] = [], certificate: String? = nil,
                     data: String = IDXFixtures.fashionMNIST) throws {
        let portFile = "\(dir)/\(name).port"
        try? FileManager.default.removeItem(atPath: portFile)
        let listen = "127.0.0.1:\(ports[name] ?? 0)"
        workers[name] = try launch("fedpi-worker", [
            "--name", name, "--listen", listen, "--port-file", portFile, "--model", model,
            "--data", data, "--classes", classes, "--limit", String(limit), "--test-limit", "200",
            "--lanes", "1", "--state-dir", "\(dir)/\(name)-state",
        ] + tlsArguments(name, certificate: certificate) + extra, log: "\(name).log")
        try waitFor("\(name) to listen", timeout: 60) { FileManager.default.fileExists(atPath: portFile) }
        ports[name] = Int(try String(contentsOfFile: portFile, encoding: .utf8))
    }

    /// Starts `Tests/FedPiSystemTests/fake_node.py` in `mode` as node `name` (a hostile or broken node).
    func startFake(_ name: String, mode: String) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("fake_node.py").path
        let portFile = "\(dir)/\(name).port"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, mode, portFile, "\(dir)/\(name).counts"]
        try p.run()
        workers[name] = p
        try waitFor("fake node \(name) to listen", timeout: 20) { FileManager.default.fileExists(atPath: portFile) }
        ports[name] = Int(try String(contentsOfFile: portFile, encoding: .utf8))
    }

    /// The requests a fake node received, by kind ("PUT", "GET /v1/rounds/R/update", …).
    func counts(_ name: String) -> [String: Int] {
        guard let data = FileManager.default.contents(atPath: "\(dir)/\(name).counts"),
              let o = try? JSONSerialization.jsonObject(with: data) as? [String: Int] else { return [:] }
        return o
    }

    func signal(_ name: String, _ sig: Int32) {
        guard let p = workers[name] else { return XCTFail("no worker \(name)") }
        kill(p.processIdentifier, sig)
        if sig == SIGKILL { p.waitUntilExit() }
    }

    var stateDir: String { dir + "/aggregator" }

    /// `centralTest: false` leaves out test_data, so the workers evaluate on their own test splits.
    func writeFleet(rounds: Int, minNodes: Int, roundTimeout: Double = 120, grace: Double = 3, centralTest: Bool = true,
                    testLimit: Int = 1000, testData: String = IDXFixtures.fashionMNIST, extra: String = "") throws {
        var text = """
            model = "\(model)"
            rounds = \(rounds)
            min_nodes = \(minNodes)
            round_timeout = \(roundTimeout)
            unreachable_grace = \(grace)
            probe_timeout = 1
            max_backoff = 1
            \(centralTest ? "test_data = \"\(testData)\"\ntest_limit = \(testLimit)" : "")
            state_dir = "\(stateDir)"
            listen = "127.0.0.1:0"
            \(extra)

            """
        if authority != nil {
            text += "[tls]\ncert = \"\(tlsDir)/aggregator.crt\"\nkey = \"\(tlsDir)/aggregator.key\"\nca = \"\(tlsDir)/ca/ca.crt\"\n"
        }
        let scheme = authority == nil ? "http" : "https"
        for name in ports.keys.sorted() {
            text += "[[nodes]]\nname = \"\(name)\"\nurl = \"\(scheme)://127.0.0.1:\(ports[name]!)\"\n"
        }
        try text.write(toFile: dir + "/fleet.toml", atomically: true, encoding: .utf8)
    }

    func startAggregator() throws {
        aggregatorRuns += 1
        try? FileManager.default.removeItem(atPath: dir + "/api.port")
        aggregator = try launch("fedpi-aggregator", ["--config", dir + "/fleet.toml", "--port-file", dir + "/api.port"],
                                log: "aggregator-\(aggregatorRuns).log")
    }

    func aggregatorLog(_ run: Int? = nil) -> String {
        (try? String(contentsOfFile: dir + "/aggregator-\(run ?? aggregatorRuns).log", encoding: .utf8)) ?? ""
    }

    func log(_ name: String) -> String { (try? String(contentsOfFile: "\(dir)/\(name).log", encoding: .utf8)) ?? "" }

    /// Waits for the aggregator to exit; fails the test (and kills it) after `timeout` seconds.
    func waitForAggregator(timeout: Double) throws -> Int32 {
        guard let a = aggregator else {
            throw NSError(domain: "FleetHarness", code: 2, userInfo: [NSLocalizedDescriptionKey: "no aggregator was started"])
        }
        try waitFor("the aggregator to finish", timeout: timeout) { !a.isRunning }
        return a.terminationStatus
    }

    func waitFor(_ what: String, timeout: Double, _ condition: () -> Bool) throws {
        let end = Date().addingTimeInterval(timeout)
        while !condition() {
            if Date() > end {
                let message = "timed out after \(timeout) s waiting for \(what)\n--- aggregator log:\n\(aggregatorLog())"
                stopAll()
                throw NSError(domain: "FleetHarness", code: 1, userInfo: [NSLocalizedDescriptionKey: message])
            }
            usleep(50_000)
        }
    }

    func history() throws -> [History.Summary] { try History(path: stateDir + "/history.sqlite").rounds() }
}
