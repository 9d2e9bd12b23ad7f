/// What a certificate of the fleet may do.
public enum Role: String, Sendable, CaseIterable {
    /// Runs a worker; may read another worker's health and node info.
    case worker
    /// Runs rounds: may send tasks, collect updates, cancel, evaluate.
    case aggregator
    /// Monitoring (Prometheus, dashboards): reads health, node info and metrics only.
    case observer
    /// An operator: reads what observers read and uses the aggregator's controls (pause, resume, add
    /// rounds). Workers treat it like an observer.
    case admin
}
