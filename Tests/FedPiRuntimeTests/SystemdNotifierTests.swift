import FedPiTesting
import Foundation
import XCTest

@testable import FedPiRuntime

/// sd_notify against a datagram socket the test owns, as systemd's would be.
final class SystemdNotifierTests: XCTestCase {
    var fd: Int32 = -1
    var path = ""

    override func setUpWithError() throws {
        path = IDXFixtures.temporaryDirectory("fedpi-notify") + "/notify.sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0, String(cString: strerror(errno)))
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setenv("NOTIFY_SOCKET", path, 1)
    }

    override func tearDown() {
        unsetenv("NOTIFY_SOCKET")
        unsetenv("WATCHDOG_USEC")
        unsetenv("WATCHDOG_PID")
        close(fd)
    }

    /// Every datagram waiting on the socket.
    func received() -> [String] {
        var out: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return out }
            out.append(String(decoding: buffer[0..<n], as: UTF8.self))
        }
    }

    func testReadyStatusAndStopping() {
        let n = SystemdNotifier()
        XCTAssertTrue(n.isActive)
        n.ready(status: "listening on port 8470")
        n.status("round 3: training 10/20 samples")
        n.stopping()
        XCTAssertEqual(received(), ["READY=1\nSTATUS=listening on port 8470", "STATUS=round 3: training 10/20 samples",
                                    "STOPPING=1\nSTATUS=stopping"])
    }

    func testNothingIsSentWithoutNotifySocket() {
        unsetenv("NOTIFY_SOCKET")
        let n = SystemdNotifier()
        XCTAssertFalse(n.isActive)
        n.ready(status: "x")
        XCTAssertEqual(received(), [])
    }

    func testWatchdogPingsAtHalfTheIntervalOnlyWhileHealthy() async throws {
        setenv("WATCHDOG_USEC", "200000", 1)
        setenv("WATCHDOG_PID", String(getpid()), 1)
        let n = SystemdNotifier()
        XCTAssertEqual(n.watchdogInterval, .milliseconds(200))
        let healthy = Task { await n.runWatchdog { true } }
        try await Task.sleep(for: .milliseconds(1050))
        healthy.cancel()
        await healthy.value
        let pings = received().filter { $0 == "WATCHDOG=1" }.count
        XCTAssertTrue((6...13).contains(pings), "about 10 pings in 1 s at a 100 ms cadence, got \(pings)")

        let wedged = Task { await n.runWatchdog { false } }
        try await Task.sleep(for: .milliseconds(500))
        wedged.cancel()
        await wedged.value
        XCTAssertEqual(received().filter { $0 == "WATCHDOG=1" }.count, 0, "an unhealthy process must not ping")

        setenv("WATCHDOG_PID", "1", 1)  // the watchdog is for another process
        XCTAssertNil(SystemdNotifier().watchdogInterval)
    }

    func testJournalPrioritiesFollowSyslog() {
        XCTAssertEqual(LineLogHandler.priority(.error), 3)
        XCTAssertEqual(LineLogHandler.priority(.warning), 4)
        XCTAssertEqual(LineLogHandler.priority(.info), 6)
        XCTAssertEqual(LineLogHandler.priority(.debug), 7)
    }
}
