import FedPiFederation
import FedPiTraining

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Process facts the CLI reports.
enum ProcessInfoLite {
    static var stderrIsTerminal: Bool { isatty(2) == 1 }

    static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}

/// Writes progress to standard error: one line rewritten in place on a terminal, a new line every
/// `interval` seconds otherwise (logs, CI).
struct ProgressLine {
    let interactive = ProcessInfoLite.stderrIsTerminal
    let interval: Double
    /// Times count from the start of the work: the first line comes after one interval.
    private var lastShown = 0.0
    private var lastLength = 0

    init(interval: Double = 5) { self.interval = interval }

    mutating func show(_ text: String, at time: Double, force: Bool = false) {
        if interactive {
            guard force || time - lastShown >= 0.2 else { return }
            let pad = String(repeating: " ", count: max(0, lastLength - text.count))
            writeError("\r" + text + pad)
            lastLength = text.count
        } else {
            guard force || time - lastShown >= interval else { return }
            writeError(text + "\n")
        }
        lastShown = time
    }

    mutating func finish() {
        if interactive && lastLength > 0 { writeError("\n") }
        lastLength = 0
    }
}

func writeError(_ s: String) {
    var s = s
    s.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
