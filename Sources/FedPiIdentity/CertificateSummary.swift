#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOSSL

/// What a daemon needs of a certificate at run time, read by BoringSSL (swift-nio-ssl) alone: the
/// node name (the first DNS name, which `fedpi certs` makes equal to the common name), the role (the
/// URI SAN `fedpi:role/<role>`), the validity and the SHA-256 fingerprint. The worker reads its own
/// and its clients' certificates this way; the full X.509 view (`FleetCertificate`, swift-certificates)
/// is for `fedpi certs` and the aggregator's explanations.
public struct CertificateSummary: Sendable {
    public let der: [UInt8]
    public let name: String?
    public let role: Role?
    public let notValidBefore: Date
    public let notValidAfter: Date
    /// basicConstraints cA = TRUE.
    public let isAuthority: Bool
    public let fingerprint: String

    public init(_ certificate: NIOSSLCertificate) throws(IdentityError) {
        do {
            der = try certificate.toDERBytes()
        } catch {
            throw IdentityError("not an X.509 certificate: \(error)")
        }
        var dns: [String] = []
        var role: Role?
        for alternative in certificate._subjectAlternativeNames() {
            let text = alternative.contents.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }
            if alternative.nameType == .dnsName { dns.append(text) }
            if alternative.nameType == .uri, text.hasPrefix("fedpi:role/") { role = Role(rawValue: String(text.dropFirst("fedpi:role/".count))) }
        }
        name = dns.first
        self.role = role
        notValidBefore = Date(timeIntervalSince1970: Double(certificate.notValidBefore))
        notValidAfter = Date(timeIntervalSince1970: Double(certificate.notValidAfter))
        // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, ... }: 30 len 01 01 FF when set.
        isAuthority = certificate._extensions.contains { e in
            "\(e.objectIdentifier)" == "2.5.29.19" && e.data.withUnsafeBufferPointer { d in
                d.count >= 5 && d[0] == 0x30 && d[2] == 0x01 && d[3] == 0x01 && d[4] != 0
            }
        }
        fingerprint = SHA256Digest.hex(der)
    }

    /// The first certificate of a PEM file.
    public init(file: String, what: String = "certificate") throws(IdentityError) {
        let text = try IdentityFiles.readText(file, what: what)
        guard text.contains("-----BEGIN CERTIFICATE-----") else { throw IdentityError("\(what) \(file): not a PEM certificate") }
        let first: NIOSSLCertificate
        do {
            guard let c = try NIOSSLCertificate.fromPEMBytes(Array(text.utf8)).first else { throw IdentityError("empty") }
            first = c
        } catch {
            throw IdentityError("\(what) \(file): not a readable PEM certificate")
        }
        try self.init(first)
    }
}
