import FedPiFederation
import FedPiTraining
import FedPiRuntime
import Prometheus
import Synchronization

/// The aggregator's Prometheus metrics (`GET /metrics`), through swift-prometheus.
final class AggregatorMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let roundsCompleted: Counter, roundsFailed: Counter
    let roundDuration: ValueHistogram
    let accuracy: Gauge, loss: Gauge, lastRound: Gauge, resident: Gauge

    init() {
        roundsCompleted = registry.makeCounter(descriptor: describe("fedpi_rounds_completed_total", "Rounds that moved the global model."))
        roundsFailed = registry.makeCounter(descriptor: describe("fedpi_rounds_failed_total", "Round attempts with too few usable updates."))
        roundDuration = registry.makeValueHistogram(
            descriptor: describe("fedpi_round_duration_seconds", "Seconds from dispatch to the new global model (or the round's failure)."),
            buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800])
        accuracy = registry.makeGauge(descriptor: describe("fedpi_test_accuracy_ratio", "Test accuracy of the global model (0-1)."))
        loss = registry.makeGauge(descriptor: describe("fedpi_test_loss", "Test loss (cross-entropy) of the global model."))
        lastRound = registry.makeGauge(descriptor: describe("fedpi_round", "The last completed round."))
        resident = registry.makeGauge(descriptor: describe("process_resident_memory_bytes", "Resident memory size in bytes."))
    }

    /// A round attempt ended: counts, duration, and bytes and failures by node.
    func record(_ r: RoundRecord) {
        guard r.round > 0 else { return }
        (r.completed ? roundsCompleted : roundsFailed).increment()
        roundDuration.record(r.seconds)
        if r.completed { lastRound.set(Double(r.round)) }
        let dispatched = Set(r.participants.map(\.node) + r.failures.map(\.node)).subtracting(["(aggregate)"])
        let down = dispatched.isEmpty ? 0 : r.bytesDown / dispatched.count
        for node in dispatched {
            transfer(node, "down").increment(by: Int64(down))
        }
        for p in r.participants {
            transfer(p.node, "up").increment(by: Int64(p.bytes))
            if let t = p.trainSeconds, t > 0 {
                registry.makeGauge(descriptor: describe("fedpi_node_training_samples_per_second", "Samples per second of the node's last training task."),
                               labels: [("node", p.node)])
                    .set(Double(p.examples) / t)
            }
        }
        for f in r.failures {
            registry.makeCounter(descriptor: describe("fedpi_update_rejections_total", "Updates not used, by node and reason."),
                                 labels: [("node", f.node), ("reason", AggregatorMetrics.category(f.reason))])
                .increment()
        }
    }

    func transfer(_ node: String, _ direction: String) -> Counter {
        registry.makeCounter(descriptor: describe("fedpi_transfer_bytes_total", "Bytes of models sent to (down) and updates received from (up) each node."),
                             labels: [("node", node), ("direction", direction)])
    }

    func evaluated(accuracy a: Double, loss l: Double) {
        accuracy.set(a)
        if l.isFinite { loss.set(l) }
    }

    /// A short, bounded label for a failure's reason (the reason itself is in the history and the API).
    static func category(_ reason: String) -> String {
        if reason.contains("norm") && reason.contains("median update norm") { return "norm_screened" }
        if reason.contains("too large") { return "too_large" }
        if reason.hasPrefix("update rejected") { return "invalid" }
        if reason.contains("round deadline") { return "deadline" }
        if reason.contains("examples") { return "examples" }
        if reason.contains("aggregated model") { return "aggregate_unusable" }
        if reason.contains("refus") || reason.contains("unreachable") || reason.contains("connect") { return "unreachable" }
        return "node_error"
    }

    func scrape(nodes: [NodeInventory.Node]) -> [UInt8] {
        for n in nodes {
            registry.makeGauge(descriptor: describe("fedpi_node_up", "1 when the node answers its probes."), labels: [("node", n.name)])
                .set(n.state == .online || n.state == .busy ? 1.0 : 0.0)
        }
        resident.set(Double(ProcessMemory.residentBytes))
        return registry.emitToBuffer()
    }
}

/// A metric's name split as swift-prometheus wants it: the unit is the part after the last underscore
/// (`_total`, `_bytes`, `_seconds`, …).
private func describe(_ name: String, _ help: String) -> MetricNameDescriptor {
    let cut = name.lastIndex(of: "_")!
    return MetricNameDescriptor(metricName: String(name[..<cut]), unitName: String(name[name.index(after: cut)...]), helpText: help)
}
