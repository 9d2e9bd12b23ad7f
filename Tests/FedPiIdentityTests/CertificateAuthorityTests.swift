import Crypto
import FedPiIdentity
import Foundation
import XCTest

/// The fleet CA: what its certificates say, how a request is signed, and every reason a certificate
/// is refused for a node.
final class CertificateAuthorityTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "fedpi-ca-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func issued(_ ca: CertificateAuthority, _ name: String, _ role: Role, days: Int = 30, now: Date = Date()) throws -> FleetCertificate {
        let (key, _) = try CertificateAuthority.request(name: name)
        return try ca.issue(name: name, role: role, publicKey: key.publicKey, ips: ["10.0.0.11", "::1"], dns: ["pi-1.local"], days: days, now: now)
    }

    func testInitWritesAPrivateKeyAndRefusesToOverwrite() throws {
        let ca = try CertificateAuthority.create(directory: dir, name: "Fleet", days: 100)
        XCTAssertTrue(ca.certificate.isAuthority)
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/ca.key")[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
        XCTAssertThrowsError(try CertificateAuthority.create(directory: dir, name: "Fleet", days: 100)) {
            XCTAssertTrue("\($0)".contains("already holds a CA"), "\($0)")
        }
        // reopened from disk: the same certificate
        XCTAssertEqual(try CertificateAuthority(directory: dir).certificate.fingerprint, ca.certificate.fingerprint)
    }

    func testIssuedCertificateCarriesNameRoleAndAddresses() throws {
        let ca = try CertificateAuthority.create(directory: dir, name: "Fleet", days: 100)
        let c = try issued(ca, "pi-1", .worker)
        XCTAssertEqual(c.name, "pi-1")
        XCTAssertEqual(c.role, .worker)
        XCTAssertEqual(c.dnsNames, ["pi-1", "pi-1.local"])
        XCTAssertEqual(c.ipAddresses, ["10.0.0.11", "::1"])
        XCTAssertFalse(c.isAuthority)
        XCTAssertTrue(c.isSigned(by: ca.certificate))
        XCTAssertEqual(c.fingerprint.count, 64)
        // never valid beyond the CA
        XCTAssertLessThanOrEqual(try issued(ca, "pi-2", .worker, days: 10_000).notValidAfter, ca.certificate.notValidAfter)
        // PEM round trip
        XCTAssertEqual(try FleetCertificate(pem: PEMText.certificate(c.der), source: "x").fingerprint, c.fingerprint)
    }

    func testEveryReasonACertificateCannotStandForANode() throws {
        let ca = try CertificateAuthority.create(directory: dir, name: "Fleet", days: 100)
        let other = try CertificateAuthority.create(directory: dir + "/other", name: "Other", days: 100)
        let good = try issued(ca, "pi-1", .worker)
        XCTAssertNil(good.problem(expectedName: "pi-1", role: .worker, authority: ca.certificate, deny: []))
        XCTAssertEqual(good.problem(expectedName: "pi-2", role: .worker, authority: ca.certificate, deny: []),
                       "the certificate of pi-2 is for pi-1")
        XCTAssertEqual(good.problem(expectedName: "pi-1", role: .aggregator, authority: ca.certificate, deny: []),
                       "the certificate of pi-1 has the role worker, not aggregator")
        XCTAssertEqual(try issued(other, "pi-1", .worker).problem(expectedName: "pi-1", role: .worker, authority: ca.certificate, deny: []),
                       "the certificate of pi-1 is not signed by the fleet CA")
        let old = try issued(ca, "pi-1", .worker, days: 1, now: Date().addingTimeInterval(-3 * 86_400))
        XCTAssertTrue(old.problem(expectedName: "pi-1", role: .worker, authority: ca.certificate, deny: [])?.contains("expired on") ?? false)
        let revoked = good.problem(expectedName: "pi-1", role: .worker, authority: ca.certificate, deny: [good.fingerprint])
        XCTAssertTrue(revoked?.contains("revoked") ?? false, revoked ?? "nil")
    }

    func testSigningARequestKeepsItsNamesButNotItsWishes() throws {
        let ca = try CertificateAuthority.create(directory: dir, name: "Fleet", days: 100)
        let (key, csr) = try CertificateAuthority.request(name: "pi-7", ips: ["192.168.1.7"], dns: ["pi-7.lan"])
        let c = try ca.sign(request: csr, source: "pi-7.csr", role: .observer, days: 30)
        XCTAssertEqual(c.name, "pi-7")
        XCTAssertEqual(c.role, .observer)
        XCTAssertEqual(c.certificate.publicKey, key.publicKey)
        XCTAssertEqual(c.dnsNames, ["pi-7", "pi-7.lan"])
        XCTAssertEqual(c.ipAddresses, ["192.168.1.7"])
        XCTAssertEqual(try ca.sign(request: csr, source: "x", role: .worker, name: "pi-8", days: 30).name, "pi-8")
        // a request whose bytes were changed no longer matches its signature, or is no request at all
        var tampered = Array(csr.utf8)
        tampered[tampered.count / 2] = tampered[tampered.count / 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        XCTAssertThrowsError(try ca.sign(request: String(decoding: tampered, as: UTF8.self), source: "t.csr", role: .worker, days: 30))
        XCTAssertThrowsError(try ca.sign(request: "garbage", source: "g.csr", role: .worker, days: 30)) {
            XCTAssertTrue("\($0)".contains("g.csr: not a PEM certificate request"), "\($0)")
        }
    }

    func testBadNamesFilesAndFingerprintsAreRefusedWithAReason() throws {
        for bad in ["", "pi_1", "-pi", "pi-", "a..b", "pi 1", "π", String(repeating: "a", count: 64)] {
            XCTAssertThrowsError(try NodeName.check(bad), bad)
        }
        for good in ["pi-1", "worker-3", "a.b.c", "PI1"] { XCTAssertNoThrow(try NodeName.check(good), good) }
        XCTAssertThrowsError(try FleetCertificate(file: dir + "/missing.crt")) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
        XCTAssertThrowsError(try FleetCertificate(pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", source: "t")) {
            XCTAssertTrue("\($0)".contains("not an X.509 certificate"), "\($0)")
        }
        XCTAssertThrowsError(try CertificateAuthority(directory: dir + "/none"))
        let fp = String(repeating: "ab", count: 32)
        XCTAssertEqual(FleetCertificate.normalizedFingerprint(fp.uppercased()), fp)
        XCTAssertEqual(FleetCertificate.normalizedFingerprint(stride(from: 0, to: 64, by: 2).map { _ in "AB" }.joined(separator: ":")), fp)
        XCTAssertNil(FleetCertificate.normalizedFingerprint("abc"))
        XCTAssertNil(FleetCertificate.normalizedFingerprint(String(repeating: "zz", count: 32)))
    }

    func testTLSMaterialChecksKeyCAAndRole() throws {
        let ca = try CertificateAuthority.create(directory: dir + "/ca", name: "Fleet", days: 100)
        let (key, _) = try CertificateAuthority.request(name: "pi-1")
        let (otherKey, _) = try CertificateAuthority.request(name: "pi-1")
        let c = try ca.issue(name: "pi-1", role: .worker, publicKey: key.publicKey, days: 30)
        try IdentityFiles.write(PEMText.certificate(c.der), to: dir + "/pi-1.crt")
        try Keys.write(key, to: dir + "/pi-1.key")
        try Keys.write(otherKey, to: dir + "/other.key")
        let files = TLSFiles(certificate: dir + "/pi-1.crt", key: dir + "/pi-1.key", authority: dir + "/ca/ca.crt")
        XCTAssertNoThrow(try TLSMaterial(files: files, role: .worker))
        XCTAssertThrowsError(try TLSMaterial(files: files, role: .aggregator)) { XCTAssertTrue("\($0)".contains("role worker"), "\($0)") }
        var wrongKey = files
        wrongKey.key = dir + "/other.key"
        XCTAssertThrowsError(try TLSMaterial(files: wrongKey, role: .worker)) { XCTAssertTrue("\($0)".contains("is not the key of"), "\($0)") }
        var notCA = files
        notCA.authority = dir + "/pi-1.crt"
        XCTAssertThrowsError(try TLSMaterial(files: notCA, role: .worker)) { XCTAssertTrue("\($0)".contains("not a CA"), "\($0)") }
    }

    func testTLSMaterialRefusesAForeignOrExpiredCertificate() throws {
        let ca = try CertificateAuthority.create(directory: dir + "/ca", name: "Fleet", days: 100)
        let other = try CertificateAuthority.create(directory: dir + "/other", name: "Other", days: 100)
        let (key, _) = try CertificateAuthority.request(name: "pi-1")
        try Keys.write(key, to: dir + "/pi-1.key")
        let foreign = try other.issue(name: "pi-1", role: .worker, publicKey: key.publicKey, days: 30)
        try IdentityFiles.write(PEMText.certificate(foreign.der), to: dir + "/foreign.crt")
        let files = TLSFiles(certificate: dir + "/foreign.crt", key: dir + "/pi-1.key", authority: dir + "/ca/ca.crt")
        XCTAssertThrowsError(try TLSMaterial(files: files, role: .worker)) { XCTAssertTrue("\($0)".contains("not signed by the fleet CA"), "\($0)") }
        let good = try ca.issue(name: "pi-1", role: .worker, publicKey: key.publicKey, days: 30)
        try IdentityFiles.write(PEMText.certificate(good.der), to: dir + "/pi-1.crt")
        var valid = files
        valid.certificate = dir + "/pi-1.crt"
        XCTAssertThrowsError(try TLSMaterial(files: valid, role: .worker, now: Date().addingTimeInterval(40 * 86_400))) {
            XCTAssertTrue("\($0)".contains("expired on"), "\($0)")
        }
        var keyAsCertificate = valid
        keyAsCertificate.certificate = dir + "/pi-1.key"
        XCTAssertThrowsError(try TLSMaterial(files: keyAsCertificate, role: .worker)) { XCTAssertTrue("\($0)".contains("not a PEM certificate"), "\($0)") }
    }

    /// The worker reads certificates with BoringSSL alone; it must see what swift-certificates sees.
    func testSummaryAgreesWithTheX509View() throws {
        let ca = try CertificateAuthority.create(directory: dir + "/ca", name: "Fleet", days: 100)
        let (key, _) = try CertificateAuthority.request(name: "pi-7")
        let c = try ca.issue(name: "pi-7", role: .observer, publicKey: key.publicKey, ips: ["10.0.0.7"], dns: ["pi-7.local"], days: 30)
        try IdentityFiles.write(PEMText.certificate(c.der), to: dir + "/pi-7.crt")
        for path in [dir + "/pi-7.crt", dir + "/ca/ca.crt"] {
            let full = try FleetCertificate(file: path)
            let summary = try CertificateSummary(file: path)
            XCTAssertEqual(summary.der, full.der)
            XCTAssertEqual(summary.fingerprint, full.fingerprint)
            XCTAssertEqual(summary.isAuthority, full.isAuthority)
            XCTAssertEqual(summary.role, full.role)
            XCTAssertEqual(summary.notValidAfter.timeIntervalSince1970, full.notValidAfter.timeIntervalSince1970, accuracy: 1)
            XCTAssertEqual(summary.notValidBefore.timeIntervalSince1970, full.notValidBefore.timeIntervalSince1970, accuracy: 1)
            if full.role != nil { XCTAssertEqual(summary.name, full.name) }
        }
        XCTAssertEqual(try CertificateSummary(file: dir + "/pi-7.crt").role, .observer)
        XCTAssertTrue(try CertificateSummary(file: dir + "/ca/ca.crt").isAuthority)
        XCTAssertFalse(try CertificateSummary(file: dir + "/pi-7.crt").isAuthority)
    }

    func testSHA256MatchesSwiftCrypto() {
        XCTAssertEqual(SHA256Digest.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256Digest.hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        var generator = SystemRandomNumberGenerator()
        for length in Array(0...130) + [1000, 4095, 4096, 65_537] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            XCTAssertEqual(SHA256Digest.hash(bytes), Array(SHA256.hash(data: bytes)), "length \(length)")
        }
    }
}
