/// The JSON messages the worker and the aggregator exchange besides model files, one definition for
/// both daemons. Keys travel in snake_case (`samples`, `test_samples`, `days_left`). The aggregator
/// holds every number a node reports to `check()` before it uses it: a node's claims are bounded, and
/// a violation is that node's failure with a reason.
public enum Control {
    /// Largest sample count a node may claim (training or test split): far beyond any board's data.
    public static let maxSamples = 100_000_000
    /// Largest control message read from a node, bytes (a node info is ~1 KB).
    public static let maxMessageBytes = 64 << 10

    /// `GET /v1/node`.
    public struct NodeInfo: Codable, Sendable {
        public var node: String
        public var version: String
        public var models: [String]
        public var model: String
        public var dataset: String
        public var samples: Int
        public var classes: [Int]
        public var testSamples: Int?
        public var state: String
        public var round: Int?
        public var progress: Progress
        public var uptimeSeconds: Double
        public var health: BoardHealth
        public var tls: CertificateInfo?

        public init(node: String, version: String, models: [String], model: String, dataset: String, samples: Int, classes: [Int],
                    testSamples: Int?, state: String, round: Int?, progress: Progress, uptimeSeconds: Double, health: BoardHealth,
                    tls: CertificateInfo?) {
            self.node = node
            self.version = version
            self.models = models
            self.model = model
            self.dataset = dataset
            self.samples = samples
            self.classes = classes
            self.testSamples = testSamples
            self.state = state
            self.round = round
            self.progress = progress
            self.uptimeSeconds = uptimeSeconds
            self.health = health
            self.tls = tls
        }

        /// The node's claims within bounds, or the reason they are not.
        public func check() throws(ControlError) -> NodeInfo {
            guard (1...Control.maxSamples).contains(samples) else { throw ControlError("reports \(samples) training samples") }
            if let t = testSamples, !(0...Control.maxSamples).contains(t) { throw ControlError("reports \(t) test samples") }
            return self
        }
    }

    /// A task's progress, inside `NodeInfo`.
    public struct Progress: Codable, Sendable {
        public var samples: Int
        public var total: Int
        public var loss: Double?
        public var seconds: Double
        public var reason: String?

        public init(samples: Int, total: Int, loss: Double?, seconds: Double, reason: String?) {
            self.samples = samples
            self.total = total
            self.loss = loss
            self.seconds = seconds
            self.reason = reason
        }
    }

    /// The worker's own certificate, inside `NodeInfo`.
    public struct CertificateInfo: Codable, Sendable {
        public var name: String?
        public var role: String?
        public var expires: String
        public var daysLeft: Int
        public var fingerprint: String
        public var warning: String?

        public init(name: String?, role: String?, expires: String, daysLeft: Int, fingerprint: String, warning: String?) {
            self.name = name
            self.role = role
            self.expires = expires
            self.daysLeft = daysLeft
            self.fingerprint = fingerprint
            self.warning = warning
        }
    }

    /// Every answer that is not a file or a node info: a state and a sentence.
    public struct Message: Codable, Sendable {
        public var round: Int?
        public var state: String
        public var message: String?

        public init(round: Int? = nil, state: String, message: String? = nil) {
            self.round = round
            self.state = state
            self.message = message
        }
    }

    /// `POST /v1/evaluate`: the posted model on the node's test split.
    public struct Evaluation: Codable, Sendable {
        public var accuracy: Double
        public var loss: Double
        public var samples: Int
        public var seconds: Double
        /// True × predicted counts over the node's test split (absent from older workers).
        public var confusion: [[Int]]?

        public init(accuracy: Double, loss: Double, samples: Int, seconds: Double, confusion: [[Int]]? = nil) {
            self.accuracy = accuracy
            self.loss = loss
            self.samples = samples
            self.seconds = seconds
            self.confusion = confusion
        }

        /// An answer that can be true: accuracy in [0, 1] and a whole number of right answers out of
        /// `samples`, a finite non-negative loss, 1 ≤ samples ≤ `limit`; a confusion matrix, when
        /// there is one, `classes` × `classes` of non-negative counts that add up to `samples`, with
        /// the right answers on its diagonal.
        public func check(limit: Int = Control.maxSamples, classes: Int = 256) throws(ControlError) -> Evaluation {
            guard (1...max(1, limit)).contains(samples) else { throw ControlError("evaluated \(samples) samples (at most \(limit) possible)") }
            guard accuracy.isFinite, (0...1).contains(accuracy) else { throw ControlError("reports accuracy \(accuracy), outside [0, 1]") }
            let right = accuracy * Double(samples)
            guard abs(right - right.rounded()) <= 1e-6 * Double(samples) + 1e-9 else {
                throw ControlError("reports accuracy \(accuracy), which is no whole number of \(samples) samples")
            }
            guard loss.isFinite, loss >= 0 else { throw ControlError("reports loss \(loss)") }
            if let confusion {
                guard confusion.count == classes, confusion.allSatisfy({ $0.count == classes }) else {
                    throw ControlError("reports a confusion matrix that is not \(classes)x\(classes)")
                }
                var total = 0, diagonal = 0
                for (t, row) in confusion.enumerated() {
                    for v in row {
                        // each count is at most samples ≤ limit, so the sums cannot overflow
                        guard (0...samples).contains(v) else { throw ControlError("reports a confusion count \(v)") }
                        total += v
                    }
                    diagonal += row[t]
                }
                guard total == samples, diagonal == Int(right.rounded()) else {
                    throw ControlError("reports a confusion matrix of \(total) samples, \(diagonal) right; its answer says \(samples) and \(Int(right.rounded()))")
                }
            }
            return self
        }
    }
}

/// What the board itself says about its state: load, memory, temperature. Every field is optional:
/// a laptop has no thermal zone, a container may hide /proc files.
public struct BoardHealth: Codable, Sendable {
    public var load1: Double?
    public var memoryAvailableBytes: Int?
    public var memoryTotalBytes: Int?
    public var temperatureCelsius: Double?
    public var residentBytes: Int?
    /// Raspberry Pi firmware throttling bits (`get_throttled`), where the kernel exposes them.
    public var throttledBits: Int?
    /// The bits spelled out: "under-voltage", "frequency capped", "throttled", "soft temperature limit",
    /// each now or "… since boot".
    public var throttled: [String]?

    public init() {}
}

/// A node's message that cannot be true or cannot be read.
public struct ControlError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension String {
    /// At most `limit` characters of text quoted from input, marked when cut.
    public func clipped(_ limit: Int = 300) -> String {
        count <= limit ? self : String(prefix(limit)) + "… (\(utf8.count) bytes)"
    }
}
