import FedPiEngine
import FedPiFederation
import FedPiTraining
import FedPiIdentity
import FedPiRuntime
import FedPiWire
import Foundation

/// The aggregator's `fleet.toml`: the nodes, the training plan, the round rules and where state lives.
public struct FleetConfig: Sendable {
    public struct Node: Sendable, Equatable {
        public var name: String
        public var url: String

        /// Host and port of `url` ("https://10.0.0.11:8470", "http://[::1]:8470", "https://pi-1.local").
        public var endpoint: (host: String, port: Int) {
            let https = url.hasPrefix("https://")
            var rest = Substring(url.dropFirst(https ? 8 : 7))
            if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
            var host = rest, port = https ? 443 : 80
            if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
                host = rest[rest.index(after: rest.startIndex)..<close]
                if let p = Int(rest[rest.index(after: close)...].dropFirst()) { port = p }
            } else if let colon = rest.lastIndex(of: ":") {
                host = rest[..<colon]
                if let p = Int(rest[rest.index(after: colon)...]) { port = p }
            }
            return (String(host), port)
        }

        /// The URL the aggregator requests. Over TLS the host is the node name, so the TLS library
        /// checks that the worker's certificate names this node; `HTTPClient`'s DNS override sends the
        /// connection to the address in `url`.
        public func dialURL(tls: Bool) -> String {
            tls ? "https://\(name):\(endpoint.port)" : url
        }
    }

    /// The aggregator's certificate, key, the fleet CA and the deny-list (`[tls]`).
    public var tls: TLSFiles?
    public var deny: Set<String> = []

    public var nodes: [Node] = []
    public var model = "mnist-cnn"
    public var rounds = 10
    public var localEpochs = 1
    public var batchSize = 64
    public var learningRate = 0.01
    public var momentum = 0.9
    /// The workers' learning rate is multiplied by this each round (1: constant).
    public var learningRateDecay = Double(Federation.defaultLearningRateDecay)
    public var learningRateFloor = Double(Federation.defaultLearningRateFloor)
    /// The served model is this moving average of the global models (0: the global model itself).
    public var modelEMA = Double(Federation.defaultModelEMA)
    /// The workers' local loss (ce, or the label-skew-aware fedrs / fedlc).
    public var loss: LocalLoss = .crossEntropy
    /// At most this many local steps per round (nil: full epochs).
    public var localSteps: Int?
    /// Balanced class weights in the workers' loss, from each one's own class counts.
    public var classWeights = false
    /// Fewest usable updates for a round to count.
    public var minNodes = 1
    /// Share of the online nodes asked each round (at least `minNodes` of them).
    public var fraction = 1.0
    /// Longest a round waits for updates, seconds.
    public var roundTimeout = 600.0
    /// A node that refuses connections this long during a round is given up for that round, seconds.
    public var unreachableGrace = 10.0
    /// Timeout of a `GET /v1/node` probe, seconds.
    public var probeTimeout = 2.0
    /// Longest wait between probes of an offline node, seconds.
    public var maxBackoff = 30.0
    public var strategy = "fedavgm"
    public var mu = 0.01
    /// The server optimizer's settings (fedavgm, fedadam, fedyogi).
    public var server = FedOpt.Options()
    public var clipNorm: Double?
    /// Updates whose norm exceeds this many times the median update norm are rejected (0: off).
    public var maxNormRatio = 10.0
    public var encoding: Encoding = .f16
    public var stateDir = "fedpi-state"
    /// MNIST-format folder whose test split evaluates the global model after each round.
    public var testData: String?
    public var testLimit: Int?
    public var seed: UInt64 = 1
    /// Where the dashboard, the JSON API and /metrics are served ("off": nowhere).
    public var listen: (host: String, port: Int)? = ("127.0.0.1", 8480)
    /// Plain HTTP for the API on a non-loopback address without [tls].
    public var insecure = false
    /// After the last round, keep serving the API (more rounds can be added) until stopped.
    public var keepServing = false
    /// The names the dashboard and predictions give the classes (default "0"..."9").
    /// Names of the model's classes for predictions and the dashboard (nil: the test folder's class
    /// folder names when test_data is image folders, else the numbers).
    public var classNames: [String]?

    public static let strategies = Strategies.names

    public init() {}

    public init(path: String) throws(ConfigError) {
        try self.init(file: ConfigFile(path: path))
    }

    public init(text: String, path: String = "fleet.toml") throws(ConfigError) {
        try self.init(file: ConfigFile(text: text, path: path))
    }

    init(file f: ConfigFile) throws(ConfigError) {
        let path = f.path
        if let v = try f.string("model") { model = v }
        guard ModelZoo.names.contains(model) else {
            throw ConfigError("\(path): model \(model) is not one of \(ModelZoo.names.joined(separator: ", "))")
        }
        if let v = try f.int("rounds", in: 1...1_000_000) { rounds = v }
        if let v = try f.int("local_epochs", in: 1...1000) { localEpochs = v }
        if let v = try f.int("batch_size", in: 1...4096) { batchSize = v }
        if let v = try f.double("learning_rate", in: 1e-9...10) { learningRate = v }
        if let v = try f.double("momentum", in: 0...0.999) { momentum = v }
        if let v = try f.double("lr_decay", in: 0.5...1) { learningRateDecay = v }
        if let v = try f.double("lr_floor", in: 0...1) { learningRateFloor = v }
        if let v = try f.double("model_ema", in: 0...0.99) { modelEMA = v }
        localSteps = try f.int("local_steps", in: 1...10_000_000)
        if let v = try f.string("class_weights") {
            guard ["balanced", "none"].contains(v) else { throw ConfigError("\(path): class_weights must be \"balanced\" or \"none\"") }
            classWeights = v == "balanced"
        }
        let alpha = try f.double("fedrs_alpha", in: 0...1) ?? 0.5, tau = try f.double("fedlc_tau", in: 0...100) ?? 1
        if let v = try f.string("loss") {
            guard let l = LocalLoss.make(v, alpha: Float(alpha), tau: Float(tau)) else {
                throw ConfigError("\(path): loss \(v) is not one of \(LocalLoss.names.joined(separator: ", "))")
            }
            loss = l
        }
        if let v = try f.int("min_nodes", in: 1...100_000) { minNodes = v }
        if let v = try f.double("fraction", in: 0.001...1) { fraction = v }
        if let v = try f.double("round_timeout", in: 1...86_400) { roundTimeout = v }
        if let v = try f.double("unreachable_grace", in: 0...86_400) { unreachableGrace = v }
        if let v = try f.double("probe_timeout", in: 0.1...600) { probeTimeout = v }
        if let v = try f.double("max_backoff", in: 0.1...86_400) { maxBackoff = v }
        if let v = try f.string("strategy") {
            guard FleetConfig.strategies.contains(v) else {
                throw ConfigError("\(path): strategy \(v) is not one of \(FleetConfig.strategies.joined(separator: ", "))")
            }
            strategy = v
        }
        if let v = try f.double("mu", in: 0...100) { mu = v }
        if let v = try f.double("server_lr", in: 1e-9...10) { server.serverLR = Float(v) }
        if let v = try f.double("server_momentum", in: 0...0.999) { server.momentum = Float(v) }
        if let v = try f.double("beta1", in: 0...0.999) { server.beta1 = Float(v) }
        if let v = try f.double("beta2", in: 0...0.99999) { server.beta2 = Float(v) }
        if let v = try f.double("tau", in: 1e-12...1) { server.tau = Float(v) }
        clipNorm = try f.double("clip_norm", in: 1e-9...1e12)
        if let v = try f.double("max_norm_ratio", in: 0...1e9) { maxNormRatio = v }
        if let v = try f.string("encoding") {
            guard let e = Encoding(rawValue: v) else { throw ConfigError("\(path): encoding must be f32, f16 or i8") }
            encoding = e
        }
        if let v = try f.string("state_dir") { stateDir = v }
        testData = try f.string("test_data")
        testLimit = try f.int("test_limit", in: 1...100_000_000)
        if let v = try f.int("seed", in: 0...Int.max) { seed = UInt64(v) }
        if let v = try f.string("listen") { listen = v == "off" ? nil : try ListenAddress.parse(v, path: "\(path): listen") }
        if let v = try f.bool("insecure") { insecure = v }
        if let v = try f.bool("keep_serving") { keepServing = v }
        if let v = try f.strings("class_names") {
            let classes = (try? ModelZoo.make(model, seed: 0).classes) ?? 10
            guard v.count == classes, v.allSatisfy({ !$0.isEmpty && $0.count <= 40 }) else {
                throw ConfigError("\(path): class_names needs \(classes) names of 1-40 characters (\(model) has \(classes) classes)")
            }
            classNames = v
        }
        if let t = try f.table("tls") {
            // without `key`, systemd's credential tls.key (LoadCredential=, install-aggregator.sh --key)
            let credential = ProcessInfo.processInfo.environment["CREDENTIALS_DIRECTORY"].map { $0 + "/tls.key" }
            guard let cert = try t.string("cert"), let key = try t.string("key") ?? credential, let ca = try t.string("ca") else {
                throw ConfigError("\(path): [tls] needs cert, key and ca (made with fedpi certs)")
            }
            tls = TLSFiles(certificate: cert, key: key, authority: ca)
            for entry in try t.strings("deny") ?? [] {
                guard let fp = FleetCertificate.normalizedFingerprint(entry) else {
                    throw ConfigError("\(path): tls.deny entry \(entry.prefix(80)) is not a SHA-256 fingerprint (64 hex digits)")
                }
                deny.insert(fp)
            }
            try t.finish()
        }
        for (i, n) in try f.tables("nodes").enumerated() {
            guard let name = try n.string("name"), !name.isEmpty else { throw ConfigError("\(path): nodes[\(i + 1)] needs a name") }
            guard let url = try n.string("url"), url.hasPrefix("http://") || url.hasPrefix("https://") else {
                throw ConfigError("\(path): nodes[\(i + 1)] (\(name)) needs a url like http://10.0.0.11:8470")
            }
            try n.finish()
            if tls != nil {
                guard url.hasPrefix("https://") else {
                    throw ConfigError("\(path): nodes[\(i + 1)] (\(name)): with [tls] every url must be https://")
                }
                do {
                    try NodeName.check(name)
                } catch {
                    throw ConfigError("\(path): nodes[\(i + 1)]: \(error) (over TLS the name is checked against the worker's certificate)")
                }
            } else if url.hasPrefix("https://") {
                throw ConfigError("\(path): nodes[\(i + 1)] (\(name)) is https:// but there is no [tls] section with the fleet's certificates")
            }
            guard !nodes.contains(where: { $0.name == name }) else { throw ConfigError("\(path): node name \(name) appears twice") }
            nodes.append(Node(name: name, url: url.hasSuffix("/") ? String(url.dropLast()) : url))
        }
        try f.finish()
        guard !nodes.isEmpty else { throw ConfigError("\(path): no nodes; add [[nodes]] tables with name and url") }
        if let listen, tls == nil, !insecure, !ListenAddress.isLoopback(listen.host) {
            throw ConfigError("""
                \(path): refusing to serve the API over plain HTTP on \(listen.host): anyone who reaches it could pause the fleet. \
                Add [tls] (the API then takes observer and admin certificates), listen on 127.0.0.1, or set insecure = true
                """)
        }
        guard minNodes <= nodes.count else {
            throw ConfigError("\(path): min_nodes is \(minNodes) but only \(nodes.count) node(s) are listed")
        }
    }

    public func makeStrategy() -> Strategy {
        Strategies.make(strategy, mu: mu, clipNorm: clipNorm, server: server) ?? FedAvg(clipNorm: clipNorm)
    }

    public var training: TrainingConfig {
        var c = TrainingConfig()
        c.epochs = localEpochs
        c.batchSize = batchSize
        c.learningRate = Float(learningRate)
        c.momentum = Float(momentum)
        c.loss = loss
        c.localSteps = localSteps
        c.classWeights = classWeights
        c.encoding = encoding
        c.seed = seed
        return c
    }
}
