#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One line per event on stderr, `level: message key=value…`, without a timestamp (journald and
/// terminals add their own); `FEDPI_LOG_TIMESTAMPS=1` adds one for plain log files. Under journald
/// (JOURNAL_STREAM set) each line starts with its syslog priority, `<3>` for errors … `<7>` for debug,
/// so `journalctl -p warning` works.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    let label: String
    let timestamps: Bool
    let priorities: Bool

    public init(label: String) {
        self.label = label
        timestamps = ProcessInfo.processInfo.environment["FEDPI_LOG_TIMESTAMPS"] == "1"
        priorities = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
    }

    /// syslog(3) priority of a swift-log level.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = priorities ? "<\(LineLogHandler.priority(event.level))>" : ""
        if timestamps { line += Date().formatted(.iso8601) + " " }
        line += "\(event.level.rawValue): \(event.message)"
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) { line += " \(k)=\(v)" }
        line += "\n"
        // one write(2) per line, so lines from different threads never interleave
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }

    /// Routes swift-log to this handler once per process; `level` from `--log-level` or LOG_LEVEL.
    public static func bootstrap(level: Logger.Level = .info) {
        let level = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? level
        LoggingSystem.bootstrap { label in
            var h = LineLogHandler(label: label)
            h.logLevel = level
            return h
        }
    }
}
