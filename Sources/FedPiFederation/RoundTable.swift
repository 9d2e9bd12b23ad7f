import FedPiTraining

/// The per-round table that `fedpi simulate` and `fedpi-aggregator` print.
public enum RoundTable {
    public static let header = "round  try  accuracy    loss  seconds  bytes down   bytes up  nodes  notes"

    public static func row(_ r: RoundRecord) -> String {
        let notes = (r.completed ? "" : "FAILED (too few updates) ") + r.failures.map { "\($0.node): \($0.reason)" }.joined(separator: "; ")
        return Format.padLeft(String(r.round), 5) + Format.padLeft(String(r.attempt), 5)
            + Format.padLeft(r.testAccuracy.map(Format.percent) ?? "-", 10)
            + Format.padLeft(r.testLoss.map { Format.fixed($0, 4) } ?? "-", 8) + Format.padLeft(Format.fixed(r.seconds, 1), 9)
            + Format.padLeft(String(r.bytesDown), 12) + Format.padLeft(String(r.bytesUp), 11)
            + Format.padLeft(String(r.participants.count), 7) + "  " + notes
    }
}
