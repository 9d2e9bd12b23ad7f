#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOEmbedded
import NIOSSL

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

/// A daemon's own certificate, its key and the fleet CA, read and checked together: the CA must be a
/// CA, the certificate must be valid now and carry the expected role, the key must be the
/// certificate's and the CA must have signed it. The last two are proven by a TLS handshake of the
/// material with itself in memory, so the checks use the same BoringSSL code as serving does and no
/// other (see `CertificateSummary`). Builds TLS 1.3 contexts that require and verify the peer's
/// certificate against the fleet CA only.
public struct TLSMaterial: Sendable {
    public let files: TLSFiles
    public let own: CertificateSummary
    public let authority: CertificateSummary
    let chain: [NIOSSLCertificate]
    let key: NIOSSLPrivateKey
    let roots: [NIOSSLCertificate]

    public init(files: TLSFiles, role: Role, now: Date = Date()) throws(IdentityError) {
        self.files = files
        own = try CertificateSummary(file: files.certificate)
        authority = try CertificateSummary(file: files.authority, what: "CA")
        guard authority.isAuthority else { throw IdentityError("CA \(files.authority) is not a CA certificate (made by fedpi certs init)") }
        let who = "the certificate of \(own.name ?? "(no name)")"
        if now > own.notValidAfter { throw IdentityError("\(files.certificate): \(who) expired on \(IdentityFiles.day(own.notValidAfter))") }
        if now < own.notValidBefore { throw IdentityError("\(files.certificate): \(who) is not valid before \(IdentityFiles.day(own.notValidBefore))") }
        guard own.role == role else {
            throw IdentityError("\(files.certificate): \(who) has the role \(own.role?.rawValue ?? "none"), not \(role.rawValue)")
        }
        let keyText = try IdentityFiles.readText(files.key, what: "key")
        do {
            key = try NIOSSLPrivateKey(bytes: Array(keyText.utf8), format: .pem)
        } catch {
            throw IdentityError("key \(files.key): not a PEM private key")
        }
        do {
            chain = [try NIOSSLCertificate(bytes: own.der, format: .der)]
            roots = [try NIOSSLCertificate(bytes: authority.der, format: .der)]
        } catch {
            throw IdentityError("\(files.certificate): TLS cannot use it: \(error)")
        }
        try handshakeWithItself()
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
    /// fleet CA and (`.fullVerification`) its DNS name against the host asked for (the node name).
    /// `.none` only to read a certificate that is then judged by hand (`PeerCertificate`).
    public func clientConfiguration(verification: CertificateVerification = .fullVerification) -> TLSConfiguration {
        var c = TLSConfiguration.makeClientConfiguration()
        c.minimumTLSVersion = .tlsv13
        c.trustRoots = .certificates(roots)
        c.certificateChain = chain.map { .certificate($0) }
        c.privateKey = .privateKey(key)
        c.certificateVerification = verification
        return c
    }

    /// Days until this certificate expires (negative once it has).
    public func daysLeft(now: Date = Date()) -> Double { own.notValidAfter.timeIntervalSince(now) / 86_400 }

    /// A server and a client made of this material shake hands in memory, each verifying the other's
    /// certificate against the fleet CA: this fails when the key is not the certificate's or the CA
    /// did not sign it.
    func handshakeWithItself() throws(IdentityError) {
        let server: NIOSSLContext, client: NIOSSLContext
        do {
            server = try NIOSSLContext(configuration: serverConfiguration())
            client = try NIOSSLContext(configuration: clientConfiguration(verification: .noHostnameVerification))
        } catch NIOSSLError.failedToLoadPrivateKey {
            // the key parsed, so BoringSSL refused it for not matching the certificate
            throw IdentityError("key \(files.key) is not the key of certificate \(files.certificate)")
        } catch {
            throw IdentityError("\(files.certificate): TLS cannot use it: \(error)")
        }
        let serverChannel = EmbeddedChannel(), clientChannel = EmbeddedChannel()
        defer {
            // close_notify is answered by nobody: let the TLS handlers' shutdown timers fire
            for channel in [serverChannel, clientChannel] {
                channel.close(promise: nil)
                channel.embeddedEventLoop.advanceTime(by: .seconds(60))
            }
        }
        do {
            let serverHandler = NIOSSLServerHandler(context: server)
            try serverChannel.pipeline.syncOperations.addHandler(serverHandler)
            try clientChannel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: client, serverHostname: nil))
            let address = try SocketAddress(ipAddress: "127.0.0.1", port: 1)
            serverChannel.connect(to: address, promise: nil)
            clientChannel.connect(to: address, promise: nil)
            for _ in 0..<8 {
                while let bytes = try clientChannel.readOutbound(as: ByteBuffer.self) { try serverChannel.writeInbound(bytes) }
                while let bytes = try serverChannel.readOutbound(as: ByteBuffer.self) { try clientChannel.writeInbound(bytes) }
            }
            try serverChannel.throwIfErrorCaught()
            try clientChannel.throwIfErrorCaught()
            guard serverHandler.peerCertificate != nil else { throw IdentityError("the handshake did not complete") }
        } catch {
            throw IdentityError("\(files.certificate) is not signed by the fleet CA \(files.authority), or \(files.key) is not its key (TLS: \(error))")
        }
    }
}
