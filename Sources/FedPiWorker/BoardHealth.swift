import FedPiTraining
import FedPiWire
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Reading the board's health (the type is shared with the aggregator in FedPiWire).
extension BoardHealth {
    public static func read() -> BoardHealth {
        var h = BoardHealth()
        if let l = text("/proc/loadavg")?.split(separator: " ").first { h.load1 = Double(l) }
        if let m = text("/proc/meminfo") {
            h.memoryAvailableBytes = kilobytes(m, "MemAvailable:")
            h.memoryTotalBytes = kilobytes(m, "MemTotal:")
        }
        if let s = text("/proc/self/status") { h.residentBytes = kilobytes(s, "VmRSS:") }
        if let t = text("/sys/class/thermal/thermal_zone0/temp").flatMap({ Double($0.trimmedWhitespace) }) {
            h.temperatureCelsius = t / 1000
        }
        for path in ["/sys/devices/platform/soc/soc:firmware/get_throttled", "/sys/devices/platform/soc/soc:firmware/raspberrypi-hwmon/get_throttled"] {
            if let t = text(path)?.trimmedWhitespace,
               let bits = Int(t.hasPrefix("0x") ? String(t.dropFirst(2)) : t, radix: 16) {
                h.throttledBits = bits
                h.throttled = BoardHealth.describeThrottled(bits)
                break
            }
        }
        return h
    }

    /// The documented meaning of the firmware's throttling bits (0–3 now, 16–19 since boot).
    public static func describeThrottled(_ bits: Int) -> [String] {
        let names = ["under-voltage", "frequency capped", "throttled", "soft temperature limit"]
        var out: [String] = []
        for (i, n) in names.enumerated() {
            if bits & (1 << i) != 0 { out.append(n) }
            if bits & (1 << (16 + i)) != 0 { out.append(n + " since boot") }
        }
        return out
    }

    /// One line for the log: temperature, throttling, load, free memory.
    public var summary: String {
        var parts: [String] = []
        if let t = temperatureCelsius { parts.append(Format.fixed(t, 1) + " °C") }
        if let th = throttled, !th.isEmpty { parts.append("firmware: " + th.joined(separator: ", ")) }
        if let l = load1 { parts.append("load " + Format.fixed(l, 2)) }
        if let m = memoryAvailableBytes { parts.append("\(m >> 20) MiB available") }
        return parts.joined(separator: ", ")
    }

    static func text(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).flatMap { String(data: $0, encoding: .utf8) }
    }

    static func kilobytes(_ text: String, _ key: String) -> Int? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 * 1024 }
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and line breaks (sysfs values end in a newline).
    var trimmedWhitespace: String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        return String(drop(while: blank).reversed().drop(while: blank).reversed())
    }
}
