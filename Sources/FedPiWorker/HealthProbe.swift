import FedPiIdentity
import NIOCore
import NIOPosix
import NIOSSL

/// `fedpi-worker --health-check`: one GET /v1/health to a running worker, the way a container's
/// HEALTHCHECK or a monitoring script asks, without curl or a shell in the image. Over mutual TLS it
/// presents a fleet certificate and verifies the worker's chain against the fleet CA (not its name:
/// the probe dials 127.0.0.1, which the certificate need not carry).
public enum HealthProbe {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The answer's status code and body. Throws `Failure` when nothing answers within `timeout`, the
    /// handshake fails, or the answer is not HTTP.
    public static func check(host: String, port: Int, tls: TLSFiles?, timeout: Duration = .seconds(5)) async throws -> (status: Int, body: String) {
        let context: NIOSSLContext?
        do {
            context = try tls.map { files throws in
                try NIOSSLContext(configuration: TLSMaterial(files: files, role: .worker).clientConfiguration(verification: .noHostnameVerification))
            }
        } catch {
            throw Failure(description: "cannot use the TLS files: \(error)")
        }
        return try await withThrowingTaskGroup(of: (Int, String).self) { group in
            group.addTask { try await request(host: host, port: port, context: context) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw Failure(description: "no answer from \(host):\(port) within \(timeout)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    static func request(host: String, port: Int, context: NIOSSLContext?) async throws -> (Int, String) {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(5))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context {
                            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                        }
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw Failure(description: "cannot connect to \(host):\(port): \(error)")
        }
        var answer = ByteBuffer()
        let scheme = context == nil ? "http" : "https"
        do {
            try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "GET /v1/health HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n\r\n"))
                for try await var chunk in inbound {
                    answer.writeBuffer(&chunk)
                    if answer.readableBytes > 65_536 { break }  // an answer this large is not the health endpoint's
                }
            }
        } catch where answer.readableBytes == 0 {
            throw Failure(description: "\(scheme)://\(host):\(port)/v1/health: \(error)")
        } catch {
            // the worker closed without TLS close_notify after answering: the answer is whole
        }
        let text = String(buffer: answer)
        let head = text.prefix(while: { $0 != "\r" && $0 != "\n" }).split(separator: " ")
        guard head.count >= 2, head[0].hasPrefix("HTTP/1."), let status = Int(head[1]) else {
            throw Failure(description: "\(scheme)://\(host):\(port)/v1/health did not answer HTTP")
        }
        let body = text.firstRange(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        return (status, body)
    }
}
