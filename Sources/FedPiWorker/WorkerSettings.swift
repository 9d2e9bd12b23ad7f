import FedPiData
import FedPiEngine
import FedPiRuntime

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
        try f.finish()
    }

    /// "HOST:PORT" or ":PORT" (all interfaces) or "PORT" (loopback).
    public static func parseListen(_ text: String, path: String = "--listen") throws(ConfigError) -> (String, Int) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let host = parts.count == 2 ? (parts[0].isEmpty ? "0.0.0.0" : String(parts[0])) : "127.0.0.1"
        guard parts.count <= 2, let port = Int(parts.last ?? ""), (0...65535).contains(port) else {
            throw ConfigError("\(path): listen address \(text) is not HOST:PORT (e.g. 0.0.0.0:8470)")
        }
        return (host, port)
    }

    /// This node's share of a training set with these labels, as ascending sample indices.
    public func shard(labels: [UInt8]) throws -> [Int] {
        var keep = Array(0..<labels.count)
        if let classes {
            let wanted = Set(try Partition.parseClasses(classes))
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
