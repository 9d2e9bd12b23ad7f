import FedPiWire
import Prometheus
import Synchronization

/// The worker's Prometheus metrics (`GET /metrics`), through swift-prometheus. Counters follow the
/// task runner's totals; gauges are read at each scrape.
final class WorkerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let rounds: Counter, samples: Counter, served: Counter
    let round: Gauge, samplesPerSecond: Gauge, resident: Gauge, temperature: Gauge, load: Gauge, memoryAvailable: Gauge
    let states: [(TaskRunner.Phase, Gauge)]
    /// The totals already added to the counters.
    let counted = Mutex((rounds: 0, samples: 0, served: 0))

    init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        rounds = registry.makeCounter(descriptor: describe("fedpi_worker_rounds_trained_total", "Rounds this process finished training."))
        samples = registry.makeCounter(descriptor: describe("fedpi_worker_samples_trained_total", "Samples trained on by this process."))
        served = registry.makeCounter(descriptor: describe("fedpi_worker_updates_served_total", "Updates sent to an aggregator."))
        round = registry.makeGauge(descriptor: describe("fedpi_worker_round", "The round of the current task (-1: none)."))
        samplesPerSecond = registry.makeGauge(descriptor: describe("fedpi_worker_training_samples_per_second", "Training speed of the current or last task."))
        states = [TaskRunner.Phase.idle, .training, .done, .failed, .cancelled].map {
            ($0, registry.makeGauge(descriptor: describe("fedpi_worker_state", "1 for the task's current state."), labels: [("state", $0.rawValue)]))
        }
        resident = registry.makeGauge(descriptor: describe("process_resident_memory_bytes", "Resident memory size in bytes."))
        temperature = registry.makeGauge(descriptor: describe("fedpi_board_temperature_celsius", "CPU temperature (thermal zone 0)."))
        load = registry.makeGauge(descriptor: describe("fedpi_board_load1", "One-minute load average."))
        memoryAvailable = registry.makeGauge(descriptor: describe("fedpi_board_memory_available_bytes", "Memory available to new processes."))
    }

    /// The text exposition format, brought up to date first.
    func scrape(_ runner: TaskRunner) -> [UInt8] {
        let s = runner.snapshot, t = runner.totals, h = BoardHealth.read()
        counted.withLock { c in
            rounds.increment(by: Int64(max(0, t.rounds - c.rounds)))
            samples.increment(by: Int64(max(0, t.samples - c.samples)))
            served.increment(by: Int64(max(0, t.served - c.served)))
            c = t
        }
        round.set(Double(s.round ?? -1))
        samplesPerSecond.set(s.seconds > 0 ? Double(s.samples) / s.seconds : 0)
        for (phase, gauge) in states { gauge.set(phase == s.phase ? 1.0 : 0.0) }
        if let r = h.residentBytes { resident.set(Double(r)) }
        if let v = h.temperatureCelsius { temperature.set(v) }
        if let v = h.load1 { load.set(v) }
        if let v = h.memoryAvailableBytes { memoryAvailable.set(Double(v)) }
        return registry.emitToBuffer()
    }
}

/// A metric's name split as swift-prometheus wants it: the unit is the part after the last underscore
/// (`_total`, `_bytes`, `_seconds`, …).
private func describe(_ name: String, _ help: String) -> MetricNameDescriptor {
    let cut = name.lastIndex(of: "_")!
    return MetricNameDescriptor(metricName: String(name[..<cut]), unitName: String(name[name.index(after: cut)...]), helpText: help)
}
