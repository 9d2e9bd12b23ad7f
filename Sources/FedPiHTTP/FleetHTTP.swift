import FedPiIdentity
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

/// A request context that keeps the connection, whose TLS handler holds the client's certificate.
/// The worker and the aggregator serve with it.
public struct FleetRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// The certificate the client presented on this connection (nil: plain HTTP or none).
    public func peerCertificate() async -> CertificateSummary? {
        let channel = self.channel
        let certificate = try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
        }.get()
        guard let certificate = certificate ?? nil else { return nil }
        return try? CertificateSummary(certificate)
    }
}

/// HTTP/1.1 inside TLS whose context is read per connection, so a reloaded certificate takes effect
/// for the next connection without restarting the server.
public struct FleetTLSChannel: ServerChildChannel, HTTPChannelHandler {
    public typealias Value = HTTP1Channel.Value
    let base: HTTP1Channel
    let context: @Sendable () -> NIOSSLContext

    public var responder: HTTPChannelHandler.Responder { base.responder }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let context = self.context()
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }

    public static func builder(configuration: HTTP1Channel.Configuration,
                               context: @escaping @Sendable () -> NIOSSLContext) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            FleetTLSChannel(base: HTTP1Channel(responder: responder, configuration: configuration), context: context)
        }
    }
}

/// JSON answers of FedPi's APIs: snake_case keys, sorted.
public enum JSONResponse {
    public static func make<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        var headers: HTTPFields = [.contentType: "application/json"]
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A request body of at most `limit` bytes, or nil when it is larger: refused by its declared
    /// length before anything is read, or as soon as a chunked body passes the bound. The chunks are
    /// copied once into the result.
    public static func body(of request: Request, limit: Int) async throws -> [UInt8]? {
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(limit, request.headers[.contentLength].flatMap { Int($0) } ?? 1 << 20))
        for try await chunk in request.body {
            guard bytes.count + chunk.readableBytes <= limit else { return nil }
            chunk.withUnsafeReadableBytes { bytes.append(contentsOf: $0) }
        }
        return bytes
    }
}
