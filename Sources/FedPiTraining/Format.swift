#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Small number formatting without Foundation (keeps the tool's memory small).
public enum Format {
    /// `x` with exactly `digits` decimals.
    public static func fixed(_ x: Double, _ digits: Int) -> String {
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

    public static func percent(_ x: Double) -> String { fixed(x * 100, 2) + "%" }

    /// 75 → "1:15", 3725 → "1:02:05"
    public static func duration(_ seconds: Double) -> String {
        let s = max(0, Int(seconds.rounded()))
        let two = { (v: Int) in v < 10 ? "0\(v)" : "\(v)" }
        return s >= 3600 ? "\(s / 3600):\(two(s / 60 % 60)):\(two(s % 60))" : "\(s / 60):\(two(s % 60))"
    }

    public static func mebibytes(_ bytes: Int) -> String { fixed(Double(bytes) / 1_048_576, 1) + " MiB" }

    public static func padRight(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }

    public static func padLeft(_ s: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
}

/// This process's memory, as the CLI and the daemons report it.
public enum ProcessMemory {
    /// Peak resident set size of this process so far, in bytes. On Linux this is VmHWM from
    /// /proc/self/status, which starts afresh at exec; getrusage's ru_maxrss would include the peak of
    /// the parent the process was forked from (a test runner, a shell script's Python).
    public static var peakResidentBytes: Int {
        if let bytes = status("VmHWM:") { return bytes }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        #if os(Linux)
        return Int(usage.ru_maxrss) * 1024
        #else
        return Int(usage.ru_maxrss)
        #endif
    }

    /// Resident set size now, in bytes (VmRSS; 0 where /proc is missing).
    public static var residentBytes: Int { status("VmRSS:") ?? 0 }

    /// A size in kB from /proc/self/status, in bytes.
    static func status(_ key: String) -> Int? {
        #if os(Linux)
        guard let f = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), f) != nil {
            let text = String(cString: line)
            if text.hasPrefix(key), let kb = Int(text.dropFirst(key.count).filter(\.isNumber)) { return kb * 1024 }
        }
        #endif
        return nil
    }

    /// CPU time this process has used (user + system), seconds.
    public static var cpuSeconds: Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}
