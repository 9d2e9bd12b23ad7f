import CSystemd
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The daemon's side of systemd's notify protocol (sd_notify): READY=1 once serving, STATUS= lines for
/// `systemctl status`, WATCHDOG=1 while healthy, STOPPING=1 on the way out. Outside systemd (no
/// NOTIFY_SOCKET) every call is a no-op.
public struct SystemdNotifier: Sendable {
    public init() {}

    /// True when a service manager listens (NOTIFY_SOCKET is set).
    public var isActive: Bool { getenv("NOTIFY_SOCKET") != nil }

    public func send(_ state: String) {
        guard isActive else { return }
        _ = sd_notify(0, state)
    }

    public func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    public func status(_ text: String) { send("STATUS=\(text)") }
    /// Around a reload (SIGHUP): RELOADING=1, then READY=1 when done.
    public func reloading() { send("RELOADING=1") }
    public func reloaded() { send("READY=1") }
    public func stopping(status: String = "stopping") { send("STOPPING=1\nSTATUS=\(status)") }

    /// WatchdogSec= of the unit, from WATCHDOG_USEC (nil: no watchdog for this process).
    public var watchdogInterval: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec))
    }

    /// Sends WATCHDOG=1 at half the watchdog interval for as long as `healthy()` says so; a check that
    /// fails (or hangs) means no ping, and systemd restarts the wedged process. Returns when cancelled
    /// or when there is no watchdog.
    public func runWatchdog(healthy: @escaping @Sendable () async -> Bool) async {
        guard let interval = watchdogInterval else { return }
        let period = interval / 2
        while !Task.isCancelled {
            if await healthy() { send("WATCHDOG=1") }
            try? await Task.sleep(for: period)
        }
    }
}

/// Pings the systemd watchdog while the daemon is healthy and, when a graceful shutdown (SIGTERM,
/// SIGINT) begins, says STOPPING=1 and logs it (outside systemd, e.g. under `docker stop`, the log
/// line is what shows).
public struct WatchdogService: Service {
    let notifier: SystemdNotifier
    let logger: Logger?
    let healthy: @Sendable () async -> Bool

    public init(notifier: SystemdNotifier, logger: Logger? = nil, healthy: @escaping @Sendable () async -> Bool) {
        self.notifier = notifier
        self.logger = logger
        self.healthy = healthy
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            _ = try? await cancelWhenGracefulShutdown {
                await notifier.runWatchdog(healthy: healthy)
                // no watchdog configured: wait for the shutdown
                try await Task.sleep(for: .seconds(100_000_000))
            }
        } onGracefulShutdown: {
            logger?.info("STOPPING: shutting down gracefully")
            notifier.stopping()
        }
    }
}
