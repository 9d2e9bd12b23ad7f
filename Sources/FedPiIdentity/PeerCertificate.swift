import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// Opens a TLS connection without trusting anything, to read the certificate a node presents: used
/// to say why a node failed the real, verified connection ("the certificate of pi-1 is for pi-2",
/// "expired on …") and to hold the aggregator's deny-list against it.
public enum PeerCertificate {
    public static func fetch(host: String, port: Int, material: TLSMaterial, timeout: TimeAmount = .seconds(3)) async throws -> FleetCertificate {
        let context = try NIOSSLContext(configuration: material.clientConfiguration(verification: .none))
        let group = MultiThreadedEventLoopGroup.singleton
        let done = group.any().makePromise(of: NIOSSLCertificate?.self)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = try NIOSSLClientHandler(context: context, serverHostname: nil)
                    try channel.pipeline.syncOperations.addHandler(tls)
                    try channel.pipeline.syncOperations.addHandler(HandshakeWatcher(tls: tls, done: done))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            done.fail(error)  // a promise must be completed, even when nothing connected
            throw error
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) { done.fail(IdentityError("no TLS handshake within \(timeout.nanoseconds / 1_000_000_000) s")) }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        guard let certificate = try await done.futureResult.get() else { throw IdentityError("the node presented no certificate") }
        return try FleetCertificate(der: try certificate.toDERBytes())
    }

    final class HandshakeWatcher: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let tls: NIOSSLClientHandler
        let done: EventLoopPromise<NIOSSLCertificate?>

        init(tls: NIOSSLClientHandler, done: EventLoopPromise<NIOSSLCertificate?>) {
            self.tls = tls
            self.done = done
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case TLSUserEvent.handshakeCompleted = event { done.succeed(tls.peerCertificate) }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            done.fail(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            done.fail(IdentityError("the node closed the connection during the TLS handshake"))
            context.fireChannelInactive()
        }
    }
}
