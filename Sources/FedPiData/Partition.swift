import FedPiEngine

/// Ways to split one data set among several workers. Every function is deterministic: the same
/// labels, parameters and seed give the same shards, on every machine.
public enum Partition {
    /// Parses a class list: `0-3`, `1,3,5`, `0-2,7`.
    public static func parseClasses(_ text: String, names: [String]? = nil) throws -> [Int] {
        var result: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            if let names, let i = names.firstIndex(of: String(part.trimmingSpaces)) {
                result.append(i)
                continue
            }
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { $0.trimmingSpaces }
            guard (1...2).contains(bounds.count), let lo = Int(bounds[0]), let hi = Int(bounds.last!), lo >= 0, hi >= lo else {
                throw DatasetError("'\(text)' is not a class list; write classes like 0-3 or 1,3,5"
                                   + (names.map { " or by name: " + $0.joined(separator: ", ") } ?? ""))
            }
            result.append(contentsOf: lo...hi)
        }
        guard Set(result).count == result.count else { throw DatasetError("class list '\(text)' names a class twice") }
        return result
    }

    /// Parses groups of classes, one group per worker, separated by `,` (or `/`, `;`); a group is a
    /// class, a range, or classes joined by `+`: `0-3,4-6,7-9` gives three groups, `0+2,1+3` two.
    public static func parseClassGroups(_ text: String, names: [String]? = nil) throws -> [[Int]] {
        let groups = try text.split(separator: ",", omittingEmptySubsequences: false)
            .flatMap { $0.split(whereSeparator: { $0 == "/" || $0 == ";" }) }
            .map { try parseClasses($0.replacingPlus, names: names) }
        let all = groups.flatMap { $0 }
        guard !groups.isEmpty, Set(all).count == all.count else {
            throw DatasetError("class groups '\(text)' must be non-empty and disjoint, e.g. 0-3,4-6,7-9")
        }
        return groups
    }

    /// At most `limit` of `indices`, chosen at random from `seed` and returned in ascending order
    /// (all of them when `limit` is nil or not smaller).
    public static func sample(_ indices: [Int], limit: Int?, seed: UInt64) -> [Int] {
        guard let limit, limit < indices.count else { return indices }
        var order = indices
        var g = SeededGenerator(seed: seed, stream: "limit")
        Trainer.shuffle(&order, using: &g)
        return Array(order.prefix(limit)).sorted()
    }

    /// One shard per group, holding every sample whose label is in that group (ascending indices).
    /// Groups must be disjoint; samples of classes in no group are left out.
    public static func classGroups(labels: [Int], groups: [[Int]]) throws -> [[Int]] {
        var owner: [Int: Int] = [:]
        for (g, group) in groups.enumerated() {
            for c in group {
                guard owner[c] == nil else { throw DatasetError("class \(c) is in two groups") }
                owner[c] = g
            }
        }
        var shards = [[Int]](repeating: [], count: groups.count)
        for (i, label) in labels.enumerated() {
            if let g = owner[label] { shards[g].append(i) }
        }
        return shards
    }

    /// `shards` shards of equal size (±1) drawn uniformly at random: every worker sees every class.
    public static func iid(count: Int, shards: Int, seed: UInt64) -> [[Int]] {
        precondition(shards > 0, "need at least one shard")
        var order = Array(0..<count)
        var g = SeededGenerator(seed: seed, stream: "partition.iid")
        Trainer.shuffle(&order, using: &g)
        return (0..<shards).map { s in
            let lo = s * count / shards, hi = (s + 1) * count / shards
            return order[lo..<hi].sorted()
        }
    }

    /// Label-skewed shards: for each class, its samples are split among the shards in proportions drawn
    /// from Dirichlet(alpha). Small alpha (0.1) gives each worker a few dominant classes; large alpha
    /// (100) approaches IID. A shard can come out empty when alpha is very small.
    public static func dirichlet(labels: [Int], shards: Int, alpha: Double, seed: UInt64) -> [[Int]] {
        precondition(shards > 0 && alpha > 0, "need at least one shard and alpha > 0")
        var g = SeededGenerator(seed: seed, stream: "partition.dirichlet")
        var byClass: [Int: [Int]] = [:]
        for (i, l) in labels.enumerated() { byClass[l, default: []].append(i) }
        var result = [[Int]](repeating: [], count: shards)
        for c in byClass.keys.sorted() {
            var members = byClass[c]!
            Trainer.shuffle(&members, using: &g)
            let draws = (0..<shards).map { _ in g.nextGamma(shape: alpha) }
            let total = draws.reduce(0, +)
            var cumulative = 0.0, lo = 0
            for s in 0..<shards {
                cumulative += draws[s]
                let hi = s == shards - 1 ? members.count : min(members.count, Int((cumulative / total * Double(members.count)).rounded()))
                if hi > lo { result[s].append(contentsOf: members[lo..<hi]) }
                lo = max(lo, hi)
            }
        }
        return result.map { $0.sorted() }
    }
}

extension Substring {
    var replacingPlus: String { String(map { $0 == "+" ? "," : $0 }) }

    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
