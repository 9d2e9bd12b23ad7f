#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Small number formatting without Foundation (keeps the tool's memory small).
enum Format {
    /// `x` with exactly `digits` decimals.
    static func fixed(_ x: Double, _ digits: Int) -> String {
        guard x.isFinite else { return String(x) }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(x) * scale).rounded()
        let whole = Int(scaled / scale)
        let frac = Int(scaled - Double(whole) * scale)
        var f = String(frac)
        while f.count < digits { f = "0" + f }
        return (x < 0 && scaled != 0 ? "-" : "") + String(whole) + (digits > 0 ? "." + f : "")
    }

    static func percent(_ x: Double) -> String { fixed(x * 100, 2) + "%" }

    /// 75 → "1:15", 3725 → "1:02:05"
    static func duration(_ seconds: Double) -> String {
        let s = max(0, Int(seconds.rounded()))
        let two = { (v: Int) in v < 10 ? "0\(v)" : "\(v)" }
        return s >= 3600 ? "\(s / 3600):\(two(s / 60 % 60)):\(two(s % 60))" : "\(s / 60):\(two(s % 60))"
    }

    static func mebibytes(_ bytes: Int) -> String { fixed(Double(bytes) / 1_048_576, 1) + " MiB" }

    static func padRight(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }

    static func padLeft(_ s: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
}

/// Process facts the CLI reports.
enum ProcessInfoLite {
    /// Peak resident set size of this process so far, in bytes. On Linux this is VmHWM from
    /// /proc/self/status, which starts afresh at exec; getrusage's ru_maxrss would include the peak of
    /// the parent the process was forked from (a test runner, a shell script's Python).
    static var peakResidentBytes: Int {
        #if os(Linux)
        if let f = fopen("/proc/self/status", "r") {
            defer { fclose(f) }
            var line = [CChar](repeating: 0, count: 256)
            while fgets(&line, Int32(line.count), f) != nil {
                let text = String(cString: line)
                if text.hasPrefix("VmHWM:"), let kb = Int(text.dropFirst(6).filter(\.isNumber)) { return kb * 1024 }
            }
        }
        #endif
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        #if os(Linux)
        return Int(usage.ru_maxrss) * 1024
        #else
        return Int(usage.ru_maxrss)
        #endif
    }

    static var stderrIsTerminal: Bool { isatty(2) == 1 }

    static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}

/// Writes progress to standard error: one line rewritten in place on a terminal, a new line every
/// `interval` seconds otherwise (logs, CI).
struct ProgressLine {
    let interactive = ProcessInfoLite.stderrIsTerminal
    let interval: Double
    private var lastShown = -1e9
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
