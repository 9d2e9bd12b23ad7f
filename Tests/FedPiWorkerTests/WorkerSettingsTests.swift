import FedPiIdentity
import FedPiRuntime
import FedPiTesting
import Foundation
import XCTest

@testable import FedPiWorker

/// Secure by default: what the worker's TLS settings mean and when plain HTTP is refused.
final class WorkerSettingsTests: XCTestCase {
    func testPlainHTTPOnlyOnLoopbackUnlessInsecure() throws {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "localhost"] { XCTAssertTrue(WorkerSettings.isLoopback(host), host) }
        for host in ["0.0.0.0", "10.0.0.11", "::", "", "192.168.1.127"] { XCTAssertFalse(WorkerSettings.isLoopback(host), host) }
        var s = WorkerSettings()
        (s.host, s.port) = try WorkerSettings.parseListen("0.0.0.0:8470")
        XCTAssertThrowsError(try s.checkExposure(tls: false)) { XCTAssertTrue("\($0)".contains("refusing to serve plain HTTP on 0.0.0.0:8470"), "\($0)") }
        XCTAssertNoThrow(try s.checkExposure(tls: true))
        s.insecure = true
        XCTAssertNoThrow(try s.checkExposure(tls: false))
        s.insecure = false
        (s.host, s.port) = try WorkerSettings.parseListen("8470")
        XCTAssertNoThrow(try s.checkExposure(tls: false))
    }

    func testTLSFilesAllOrNoneAndTheSystemdCredential() throws {
        var s = WorkerSettings()
        XCTAssertNil(try s.tlsFiles(environment: [:]))
        s.tlsCertificate = "/etc/fedpi/tls/worker.crt"
        XCTAssertThrowsError(try s.tlsFiles(environment: [:])) { XCTAssertTrue("\($0)".contains("all three"), "\($0)") }
        s.tlsAuthority = "/etc/fedpi/tls/ca.crt"
        XCTAssertThrowsError(try s.tlsFiles(environment: [:]))
        // under systemd the key is the credential tls.key
        XCTAssertEqual(try s.tlsFiles(environment: ["CREDENTIALS_DIRECTORY": "/run/credentials/fedpi-worker.service"])?.key,
                       "/run/credentials/fedpi-worker.service/tls.key")
        s.tlsKey = "/k"
        XCTAssertEqual(try s.tlsFiles(environment: ["CREDENTIALS_DIRECTORY": "/run/c"])?.key, "/k")
    }

    func testWorkerTomlTLSKeys() throws {
        let dir = IDXFixtures.temporaryDirectory("fedpi-worker-toml")
        let fp = String(repeating: "ab", count: 32)
        let colons = stride(from: 0, to: 64, by: 2).map { _ in "AB" }.joined(separator: ":")
        try """
            listen = "0.0.0.0:8470"
            tls_cert = "/c"
            tls_key = "/k"
            tls_ca = "/a"
            tls_deny = ["\(colons)"]
            insecure = false
            """.write(toFile: dir + "/w.toml", atomically: true, encoding: .utf8)
        var s = WorkerSettings()
        try s.load(path: dir + "/w.toml")
        XCTAssertEqual(s.deny, [fp])
        XCTAssertEqual(try s.tlsFiles(environment: [:]), TLSFiles(certificate: "/c", key: "/k", authority: "/a"))
        try "tls_deny = [\"not-a-fingerprint\"]\n".write(toFile: dir + "/bad.toml", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try s.load(path: dir + "/bad.toml")) { XCTAssertTrue("\($0)".contains("not a SHA-256 fingerprint"), "\($0)") }
        try "tls_deny = \"x\"\n".write(toFile: dir + "/bad2.toml", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try s.load(path: dir + "/bad2.toml")) { XCTAssertTrue("\($0)".contains("an array of strings"), "\($0)") }
    }
}
