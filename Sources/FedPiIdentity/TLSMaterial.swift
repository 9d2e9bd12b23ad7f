#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOSSL
import X509

/// Where a daemon's certificate, key and fleet CA are.
public struct TLSFiles: Sendable, Equatable {
    public var certificate: String
    public var key: String
    public var authority: String

    public init(certificate: String, key: String, authority: String) {
        self.certificate = certificate
        self.key = key
        self.authority = authority
    }
}

/// A daemon's own certificate, its key and the fleet CA, read and checked together: the key must be
/// the certificate's, the CA must have signed it, it must be valid now and carry the expected role.
/// Builds TLS 1.3 contexts that require and verify the peer's certificate against the fleet CA only.
public struct TLSMaterial: Sendable {
    public let files: TLSFiles
    public let own: FleetCertificate
    public let authority: FleetCertificate
    let chain: [NIOSSLCertificate]
    let key: NIOSSLPrivateKey
    let roots: [NIOSSLCertificate]

    public init(files: TLSFiles, role: Role, now: Date = Date()) throws(IdentityError) {
        self.files = files
        own = try FleetCertificate(file: files.certificate)
        authority = try FleetCertificate(file: files.authority)
        guard authority.isAuthority else { throw IdentityError("CA \(files.authority) is not a CA certificate (made by fedpi certs init)") }
        let keyText = try IdentityFiles.readText(files.key, what: "key")
        let parsed: Certificate.PrivateKey
        do {
            parsed = try Certificate.PrivateKey(pemEncoded: keyText)
        } catch {
            throw IdentityError("key \(files.key): not a PEM private key")
        }
        guard parsed.publicKey == own.certificate.publicKey else {
            throw IdentityError("key \(files.key) is not the key of certificate \(files.certificate)")
        }
        if let reason = own.problem(expectedName: nil, role: role, authority: authority, deny: [], now: now) {
            throw IdentityError("\(files.certificate): \(reason)")
        }
        do {
            chain = [try NIOSSLCertificate(bytes: own.der, format: .der)]
            roots = [try NIOSSLCertificate(bytes: authority.der, format: .der)]
            key = try NIOSSLPrivateKey(bytes: Array(keyText.utf8), format: .pem)
        } catch {
            throw IdentityError("\(files.certificate): TLS cannot use it: \(error)")
        }
    }

    /// Server side: TLS 1.3 only, a client certificate signed by the fleet CA required.
    public func serverConfiguration() -> TLSConfiguration {
        var c = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key), trustRoots: .certificates(roots))
        c.minimumTLSVersion = .tlsv13
        c.certificateVerification = .noHostnameVerification
        return c
    }

    /// Client side: TLS 1.3 only, presents this certificate, verifies the server's chain against the
    /// fleet CA and its DNS name against the host asked for (the node name, see `dialName`).
    public func clientConfiguration(verifyName: Bool = true) -> TLSConfiguration {
        var c = TLSConfiguration.makeClientConfiguration()
        c.minimumTLSVersion = .tlsv13
        c.trustRoots = .certificates(roots)
        c.certificateChain = chain.map { .certificate($0) }
        c.privateKey = .privateKey(key)
        c.certificateVerification = verifyName ? .fullVerification : .none
        return c
    }

    /// Days until this certificate expires (negative once it has).
    public func daysLeft(now: Date = Date()) -> Double { own.notValidAfter.timeIntervalSince(now) / 86_400 }
}
