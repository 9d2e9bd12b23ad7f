import FedPiHTTP
import FedPiIdentity
import FedPiRuntime
import FedPiWire
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// The worker's TLS identity: its certificate, key and the fleet CA, the deny-list, and the TLS
/// context new connections use. `reload` reads the files again (SIGHUP): connections opened after it
/// use the new certificate; open connections and the running task are not touched.
public final class WorkerIdentity: Sendable {
    struct Current {
        var material: TLSMaterial
        var context: NIOSSLContext
        var deny: Set<String>
    }

    let current: Mutex<Current>
    let files: TLSFiles
    /// Days before expiry from which the worker warns (log and STATUS line).
    static let warnDays = 30.0

    public init(files: TLSFiles, deny: Set<String>) throws(IdentityError) {
        self.files = files
        current = Mutex(try WorkerIdentity.load(files, deny: deny))
    }

    static func load(_ files: TLSFiles, deny: Set<String>) throws(IdentityError) -> Current {
        let material = try TLSMaterial(files: files, role: .worker)
        if deny.contains(material.own.fingerprint) {
            throw IdentityError("\(files.certificate) is on this worker's own deny-list (tls_deny)")
        }
        do {
            return Current(material: material, context: try NIOSSLContext(configuration: material.serverConfiguration()), deny: deny)
        } catch {
            throw IdentityError("\(files.certificate): TLS cannot use it: \(error)")
        }
    }

    /// Reads the files again; on any error the old identity stays in use.
    public func reload(deny: Set<String>) throws(IdentityError) {
        let fresh = try WorkerIdentity.load(files, deny: deny)
        current.withLock { $0 = fresh }
    }

    var context: NIOSSLContext { current.withLock { $0.context } }
    public var certificate: CertificateSummary { current.withLock { $0.material.own } }
    var deny: Set<String> { current.withLock { $0.deny } }

    /// A warning for the log and the STATUS line when the certificate expires within `warnDays`.
    public func expiryWarning(now: Date = Date()) -> String? {
        let c = certificate
        let days = c.notValidAfter.timeIntervalSince(now) / 86_400
        guard days < WorkerIdentity.warnDays else { return nil }
        return "TLS certificate expires on \(IdentityFiles.day(c.notValidAfter)) (\(max(0, Int(days))) days): issue a new one and run systemctl reload fedpi-worker"
    }

    /// What a request may do: any certificate of the fleet reads health, node info and metrics; only
    /// the aggregator's sends tasks, collects updates, cancels and evaluates. nil: allowed; otherwise
    /// the reason for a 403.
    func refusal(peer: CertificateSummary?, method: HTTPRequest.Method, path: String) -> String? {
        guard let peer else { return "no client certificate" }
        let who = "\(peer.name ?? "?") (\(peer.role?.rawValue ?? "no role"))"
        if deny.contains(peer.fingerprint) { return "the certificate of \(who) is revoked (on this worker's tls_deny list)" }
        if method == .get, WorkerIdentity.readOnlyPaths.contains(path) { return nil }
        if peer.role == .aggregator { return nil }
        return "\(method.rawValue) \(path) needs the aggregator's certificate; this one is \(who)"
    }

    static let readOnlyPaths: Set<String> = ["/v1/health", "/v1/node", "/metrics"]
}

/// The worker's request context: the connection's client certificate is read from it.
public typealias WorkerContext = FleetRequestContext

/// Refuses requests whose client certificate may not make them (403 with the reason).
struct AccessMiddleware: RouterMiddleware {
    let identity: WorkerIdentity
    let logger: Logger

    func handle(_ request: Request, context: WorkerContext, next: (Request, WorkerContext) async throws -> Response) async throws -> Response {
        let peer = await context.peerCertificate()
        if let reason = identity.refusal(peer: peer, method: request.method, path: request.uri.path) {
            logger.warning("refused \(request.method.rawValue) \(request.uri.path.prefix(100)): \(reason)")
            return JSONResponse.make(Control.Message(state: "forbidden", message: reason), status: .forbidden)
        }
        return try await next(request, context)
    }
}
