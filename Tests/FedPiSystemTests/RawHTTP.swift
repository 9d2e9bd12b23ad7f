import Foundation

/// HTTP/1.1 over a plain socket, for requests no client library would send.
enum RawHTTP {
    /// Sends `head`, then `body`, then up to `stream` bytes of zeros (as chunks when `chunked`) until
    /// the server stops reading; returns what the server answered (its first 64 KiB).
    /// A connected socket to 127.0.0.1:`port` with 30 s send and receive timeouts, or nil.
    static func connect(port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Writes all of `bytes`; false once the peer stops taking them.
    static func put(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    static func exchange(port: Int, head: String, body: [UInt8] = [], stream: Int = 0, chunked: Bool = false) -> String {
        guard let fd = connect(port: port) else { return "connect failed" }
        defer { close(fd) }
        func put(_ bytes: [UInt8]) -> Bool { RawHTTP.put(fd, bytes) }
        _ = put(Array(head.utf8)) && put(body)
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        var sent = 0
        while sent < stream {
            // stop as soon as the server has answered
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, 0) > 0 { break }
            let framed = chunked ? Array("\(String(chunk.count, radix: 16))\r\n".utf8) + chunk + Array("\r\n".utf8) : chunk
            guard put(framed) else { break }
            sent += chunk.count
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while answer.count < 65536 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            answer += buffer[0..<n]
            if let text = String(bytes: answer, encoding: .utf8), let end = text.range(of: "\r\n\r\n"),
               let length = text[..<end.lowerBound].split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("content-length:") })
                .flatMap({ Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }),
               answer.count >= text.utf8.distance(from: text.utf8.startIndex, to: end.upperBound.samePosition(in: text.utf8)!) + length {
                break
            }
        }
        return String(decoding: answer, as: UTF8.self)
    }
}
