import FedPiData
import FedPiEngine
import FedPiIdentity
import FedPiRuntime
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Everything a worker needs to start: from a TOML file, then overridden by flags.
public struct WorkerSettings: Sendable {
    public var name = "worker"
    public var host = "127.0.0.1"
    public var port = 8470
    public var data = "/usr/share/datasets/fashion-mnist"
    /// Keep only these classes ("0-3", "0,2,5"); nil: all.
    public var classes: String?
    /// Keep one shard of a seeded split: "iid:K/N" or "dirichlet:ALPHA:K/N" (K counts from 1).
    public var partition: String?
    /// Keep at most this many training samples (seeded subset).
    public var limit: Int?
    /// Evaluate posted models on at most this many test samples.
    public var testLimit: Int?
    public var seed: UInt64 = 1
    /// Where finished updates wait for the aggregator (survives restarts).
    public var stateDir = "/var/lib/fedpi"
    /// Training lanes (nil: one per core).
    public var lanes: Int?
    /// This worker's certificate, its key and the fleet CA (PEM files); all three or none.
    public var tlsCertificate: String?
    public var tlsKey: String?
    public var tlsAuthority: String?
    /// SHA-256 fingerprints of revoked certificates, refused whatever their signature.
    public var deny: Set<String> = []
    /// Serve plain HTTP on a non-loopback address (anyone who reaches the port may use the worker).
    public var insecure = false
    /// Most local epochs a task may ask for; more is refused with the reason.
    public var maxLocalEpochs = 20
    /// Longest a task may train, seconds; a task still training then fails with the reason.
    public var maxTaskSeconds = 3600.0

    public init() {}

    /// Reads a `worker.toml`; keys the file does not set keep their current values.
    public mutating func load(path: String) throws(ConfigError) {
        let f = try ConfigFile(path: path)
        if let v = try f.string("name") { name = v }
        if let v = try f.string("listen") { (host, port) = try WorkerSettings.parseListen(v, path: path) }
        if let v = try f.string("data") { data = v }
        if let v = try f.string("classes") { classes = v }
        if let v = try f.string("partition") { partition = v }
        if let v = try f.int("limit", in: 1...100_000_000) { limit = v }
        if let v = try f.int("test_limit", in: 1...100_000_000) { testLimit = v }
        if let v = try f.int("seed", in: 0...Int.max) { seed = UInt64(v) }
        if let v = try f.string("state_dir") { stateDir = v }
        if let v = try f.int("lanes", in: 1...256) { lanes = v }
        if let v = try f.string("tls_cert") { tlsCertificate = v }
        if let v = try f.string("tls_key") { tlsKey = v }
        if let v = try f.string("tls_ca") { tlsAuthority = v }
        if let v = try f.strings("tls_deny") { deny = try WorkerSettings.fingerprints(v, path: path) }
        if let v = try f.bool("insecure") { insecure = v }
        if let v = try f.int("max_local_epochs", in: 1...1000) { maxLocalEpochs = v }
        if let v = try f.double("max_task_seconds", in: 1...604_800) { maxTaskSeconds = v }
        try f.finish()
    }

    /// Deny-list entries as normalized fingerprints (64 hex digits, colons allowed).
    public static func fingerprints(_ entries: [String], path: String) throws(ConfigError) -> Set<String> {
        var out = Set<String>()
        for e in entries {
            guard let f = FleetCertificate.normalizedFingerprint(e) else {
                throw ConfigError("\(path): tls_deny entry \(e.prefix(80)) is not a SHA-256 fingerprint (64 hex digits, as fedpi certs inspect prints)")
            }
            out.insert(f)
        }
        return out
    }

    /// The TLS files, when configured. Without `tls_key`, systemd's credential `tls.key`
    /// (`LoadCredential=tls.key:…` puts it in `$CREDENTIALS_DIRECTORY`) is the key.
    public func tlsFiles(environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigError) -> TLSFiles? {
        var key = tlsKey
        if key == nil, tlsCertificate != nil, let credentials = environment["CREDENTIALS_DIRECTORY"] {
            key = credentials + "/tls.key"
        }
        switch (tlsCertificate, key, tlsAuthority) {
        case (nil, nil, nil): return nil
        case let (certificate?, key?, authority?): return TLSFiles(certificate: certificate, key: key, authority: authority)
        default: throw ConfigError("TLS needs all three of tls_cert, tls_key and tls_ca (--tls-cert, --tls-key, --tls-ca)")
        }
    }

    /// Whether `host` only reaches this machine.
    public static func isLoopback(_ host: String) -> Bool { ListenAddress.isLoopback(host) }

    /// Secure by default: plain HTTP only on loopback unless `insecure` is set.
    public func checkExposure(tls: Bool) throws(ConfigError) {
        if !tls, !insecure, !WorkerSettings.isLoopback(host) {
            throw ConfigError("""
                refusing to serve plain HTTP on \(host):\(port): anyone who reaches it could send tasks and read updates. \
                Give tls_cert, tls_key and tls_ca (made with fedpi certs; README "Security"), listen on 127.0.0.1, \
                or pass --insecure (insecure = true) on a network you trust
                """)
        }
    }

    /// "HOST:PORT" or ":PORT" (all interfaces) or "PORT" (loopback).
    public static func parseListen(_ text: String, path: String = "--listen") throws(ConfigError) -> (String, Int) {
        try ListenAddress.parse(text, path: path)
    }

    /// This node's share of a training set with these labels, as ascending sample indices.
    public func shard(labels: [UInt8], names: [String]? = nil) throws -> [Int] {
        var keep = Array(0..<labels.count)
        if let classes {
            let wanted = Set(try Partition.parseClasses(classes, names: names))
            keep = keep.filter { wanted.contains(Int(labels[$0])) }
        }
        if let partition {
            let parts = partition.split(separator: ":").map(String.init)
            let which = parts.last?.split(separator: "/").compactMap { Int($0) } ?? []
            guard which.count == 2, which[1] >= 1, (1...which[1]).contains(which[0]) else {
                throw ConfigError("partition \(partition): write iid:K/N or dirichlet:ALPHA:K/N, with 1 <= K <= N")
            }
            let shards: [[Int]]
            switch (parts.first, parts.count) {
            case ("iid", 2):
                shards = Partition.iid(count: keep.count, shards: which[1], seed: seed)
            case ("dirichlet", 3):
                guard let alpha = Double(parts[1]), alpha > 0 else { throw ConfigError("partition \(partition): ALPHA must be a positive number") }
                shards = Partition.dirichlet(labels: keep.map { Int(labels[$0]) }, shards: which[1], alpha: alpha, seed: seed)
            default:
                throw ConfigError("partition \(partition): write iid:K/N or dirichlet:ALPHA:K/N")
            }
            keep = shards[which[0] - 1].map { keep[$0] }.sorted()
        }
        return Partition.sample(keep, limit: limit, seed: seed).sorted()
    }
}
