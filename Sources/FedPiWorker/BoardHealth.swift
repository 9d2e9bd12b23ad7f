import Foundation

/// What the board itself says about its state: load, memory, temperature. Every field is optional:
/// a laptop has no thermal zone, a container may hide /proc files.
public struct BoardHealth: Codable, Sendable {
    public var load1: Double?
    public var memoryAvailableBytes: Int?
    public var memoryTotalBytes: Int?
    public var temperatureCelsius: Double?
    public var residentBytes: Int?

    public static func read() -> BoardHealth {
        var h = BoardHealth()
        if let l = text("/proc/loadavg")?.split(separator: " ").first { h.load1 = Double(l) }
        if let m = text("/proc/meminfo") {
            h.memoryAvailableBytes = kilobytes(m, "MemAvailable:")
            h.memoryTotalBytes = kilobytes(m, "MemTotal:")
        }
        if let s = text("/proc/self/status") { h.residentBytes = kilobytes(s, "VmRSS:") }
        if let t = text("/sys/class/thermal/thermal_zone0/temp").flatMap({ Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            h.temperatureCelsius = t / 1000
        }
        return h
    }

    static func text(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).flatMap { String(data: $0, encoding: .utf8) }
    }

    static func kilobytes(_ text: String, _ key: String) -> Int? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 * 1024 }
    }
}
