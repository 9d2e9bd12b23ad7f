import AsyncHTTPClient
import FedPiEngine
import FedPiIdentity
import FedPiWire
import Foundation
import Logging
import NIOCore

/// What the aggregator knows about each node: `unknown → online → busy → offline(backoff)`. Offline
/// nodes are probed (`GET /v1/node`) again after an exponential backoff with jitter, so a board that
/// comes back is used again without anybody restarting anything.
public actor NodeInventory {
    public enum State: String, Sendable { case unknown, online, busy, offline }

    /// The fleet's TLS material and deny-list: each probe reads the certificate a node presents and
    /// holds it against the node name, the worker role, the CA, its validity and the deny-list, so a
    /// failure has a reason ("the certificate of pi-1 is for pi-2"). The requests themselves are
    /// verified by TLS against the CA and the node name.
    public struct Identity: Sendable {
        public let material: TLSMaterial
        /// The fleet CA read by swift-certificates, to judge what a node presents.
        public let authority: FleetCertificate
        public let deny: Set<String>
        public init(material: TLSMaterial, deny: Set<String>) throws(IdentityError) {
            self.material = material
            authority = try FleetCertificate(file: material.files.authority)
            self.deny = deny
        }
    }

    public struct Node: Sendable {
        public let name: String
        /// What requests go to (over TLS: https://NAME:PORT).
        public let url: String
        /// Where the node is, from fleet.toml.
        public let host: String
        public let port: Int
        public var state: State = .unknown
        /// Consecutive failed contacts; sets the backoff.
        public var failures = 0
        public var nextProbe = ContinuousClock.now
        public var samples: Int?
        /// The test samples it reported (bounds its federated evaluation answers).
        public var testSamples: Int?
        public var lastError: String?
        /// When the node entered its state (online and busy count as one).
        public var since = Date()
        /// The last answer from the node, and when it came.
        public var lastSeen: Date?
        public var info: Control.NodeInfo?
        /// When the node was last probed (health probes of online nodes keep this recent).
        var lastProbe = ContinuousClock.now - .seconds(3600)
    }

    public private(set) var nodes: [Node]
    let client: HTTPClient
    let identity: Identity?
    let probeTimeout: Double
    let maxBackoff: Double
    let logger: Logger
    var jitter: SeededGenerator
    /// Every state change, for the history.
    var onTransition: (@Sendable (String, State, String) -> Void)?

    public init(nodes: [FleetConfig.Node], client: HTTPClient, identity: Identity? = nil, probeTimeout: Double, maxBackoff: Double,
                seed: UInt64, logger: Logger) {
        self.nodes = nodes.map {
            Node(name: $0.name, url: $0.dialURL(tls: identity != nil), host: $0.endpoint.host, port: $0.endpoint.port)
        }
        self.client = client
        self.identity = identity
        self.probeTimeout = probeTimeout
        self.maxBackoff = maxBackoff
        self.logger = logger
        jitter = SeededGenerator(seed: seed, stream: "backoff")
    }

    public func setOnTransition(_ f: @escaping @Sendable (String, State, String) -> Void) { onTransition = f }

    /// Seconds to wait after `failures` consecutive failures: 0.5·2^(n−1), capped, times a jitter in [0.5, 1].
    public static func backoff(failures: Int, cap: Double, jitter u: Double) -> Double {
        guard failures > 0 else { return 0 }
        return min(cap, 0.5 * pow(2, Double(min(failures - 1, 30)))) * (0.5 + 0.5 * u)
    }

    func index(_ name: String) -> Int? { nodes.firstIndex { $0.name == name } }

    /// The training samples `name` reported at its last probe.
    public func samples(of name: String) -> Int? { index(name).flatMap { nodes[$0].samples } }
    /// The test samples `name` reported at its last probe.
    public func testSamples(of name: String) -> Int? { index(name).flatMap { nodes[$0].testSamples } }

    private func transition(_ i: Int, to state: State, _ detail: String) {
        let old = nodes[i].state
        nodes[i].state = state
        guard old != state, !(old == .online && state == .busy), !(old == .busy && state == .online) else { return }
        nodes[i].since = Date()
        switch state {
        case .online: logger.info("node \(nodes[i].name) online", metadata: ["url": "\(nodes[i].url)", "detail": "\(detail)"])
        case .offline: logger.warning("node \(nodes[i].name) offline: \(detail)")
        default: break
        }
        onTransition?(nodes[i].name, state, detail)
    }

    /// A contact worked: the node is online (or busy with a task).
    public func succeeded(_ name: String, busy: Bool = false, samples: Int? = nil, testSamples: Int? = nil, info: Control.NodeInfo? = nil) {
        guard let i = index(name) else { return }
        nodes[i].failures = 0
        nodes[i].lastError = nil
        nodes[i].lastSeen = Date()
        if let info { nodes[i].info = info }
        if let samples { nodes[i].samples = samples }
        if let testSamples { nodes[i].testSamples = testSamples }
        transition(i, to: busy ? .busy : .online, samples.map { "\($0) samples" } ?? "")
    }

    /// A contact failed: offline until the next probe, which backs off exponentially.
    public func failed(_ name: String, _ error: String) {
        guard let i = index(name) else { return }
        nodes[i].failures += 1
        nodes[i].lastError = error
        let wait = NodeInventory.backoff(failures: nodes[i].failures, cap: maxBackoff, jitter: Double.random(in: 0...1, using: &jitter))
        nodes[i].nextProbe = ContinuousClock.now + .milliseconds(Int(wait * 1000))
        let wasOffline = nodes[i].state == .offline
        transition(i, to: .offline, "\(error); next probe in \(String(format: "%.1f", wait)) s")
        if wasOffline { logger.debug("node \(name) still offline: \(error)") }
    }

    /// Probes the nodes whose backoff has run out (every node when `all`), concurrently. With
    /// `healthEvery`, online nodes not probed for that many seconds are probed too (board health, task
    /// progress, and a node that went away noticed between rounds).
    public func refresh(all: Bool = false, healthEvery: Double? = nil) async {
        let now = ContinuousClock.now
        let healthDue = healthEvery.map { now - .milliseconds(Int64($0 * 1000)) }
        let due = nodes.filter { n in
            if all || n.state == .unknown || (n.state == .offline && n.nextProbe <= now) { return true }
            guard let healthDue, n.state == .online || n.state == .busy else { return false }
            return n.lastProbe <= healthDue
        }
        for node in due { if let i = index(node.name) { nodes[i].lastProbe = now } }
        let results = await withTaskGroup(of: (String, Result<Control.NodeInfo, any Error>).self) { group in
            for node in due {
                group.addTask { [client, probeTimeout, identity] in
                    // a node online over TLS is verified by each request; the certificate is read to explain a failure
                    if let identity, node.state != .online, node.state != .busy,
                       let problem = await Self.checkCertificate(of: node, identity, timeout: probeTimeout) {
                        return (node.name, .failure(RemoteWorker.Failure(problem)))
                    }
                    return (node.name, await Self.probe(node.url, client: client, timeout: probeTimeout))
                }
            }
            var out: [(String, Result<Control.NodeInfo, any Error>)] = []
            for await r in group { out.append(r) }
            return out
        }
        for (name, result) in results {
            switch result {
            case .success(let info): succeeded(name, busy: info.state == "training", samples: info.samples, testSamples: info.testSamples, info: info)
            case .failure(let error): failed(name, RemoteWorker.describe(error))
            }
        }
    }

    /// Why the certificate `node` presents cannot stand for it, or nil when it can (or when the node
    /// cannot be reached: the probe then says so).
    static func checkCertificate(of node: Node, _ identity: Identity, timeout: Double) async -> String? {
        let peer: FleetCertificate
        do {
            peer = try await PeerCertificate.fetch(host: node.host, port: node.port, material: identity.material,
                                                   timeout: .milliseconds(Int64(timeout * 1000)))
        } catch let e as IdentityError {
            return "TLS: \(e.description)"
        } catch {
            return nil
        }
        return peer.problem(expectedName: node.name, role: .worker, authority: identity.authority, deny: identity.deny)
    }

    static func probe(_ url: String, client: HTTPClient, timeout: Double) async -> Result<Control.NodeInfo, any Error> {
        do {
            let response = try await client.execute(HTTPClientRequest(url: url + "/v1/node"), timeout: .milliseconds(Int64(timeout * 1000)))
            let body = try await response.body.collect(upTo: Control.maxMessageBytes)
            guard response.status == .ok else { return .failure(RemoteWorker.Failure("GET /v1/node answered \(response.status.code)")) }
            return .success(try RemoteWorker.decode(Control.NodeInfo.self, body).check())
        } catch {
            return .failure(error)
        }
    }


    /// The nodes to ask this round: online ones, all or `fraction` of them (at least `minimum`),
    /// chosen with the round's seed.
    public func pick(fraction: Double, minimum: Int, seed: UInt64) -> [String] {
        var online = nodes.filter { $0.state == .online || $0.state == .busy }.map(\.name)
        guard fraction < 1 else { return online }
        var g = SeededGenerator(seed: seed, stream: "pick")
        online.shuffle(using: &g)
        let n = min(online.count, max(minimum, Int((fraction * Double(online.count)).rounded(.up))))
        return Array(online.prefix(n))
    }

    public var onlineCount: Int { nodes.filter { $0.state == .online || $0.state == .busy }.count }
}
