import XCTest

@testable import FedPiData

final class PartitionTests: XCTestCase {
    /// 10 classes, uneven counts, interleaved.
    let labels: [Int] = (0..<1000).map { ($0 * 7 + $0 / 13) % 10 }

    private func assertDisjointAndComplete(_ shards: [[Int]], total: Int, line: UInt = #line) {
        let all = shards.flatMap { $0 }
        XCTAssertEqual(all.count, total, "samples lost or duplicated", line: line)
        XCTAssertEqual(Set(all).count, all.count, "shards overlap", line: line)
        XCTAssertEqual(Set(all), Set(0..<total), line: line)
    }

    func testParsesClassesAndGroups() throws {
        XCTAssertEqual(try Partition.parseClasses("0-3"), [0, 1, 2, 3])
        XCTAssertEqual(try Partition.parseClasses("1,3,5"), [1, 3, 5])
        XCTAssertEqual(try Partition.parseClasses("0-2, 7"), [0, 1, 2, 7])
        XCTAssertEqual(try Partition.parseClassGroups("0-3,4-6,7-9"), [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]])
        XCTAssertEqual(try Partition.parseClassGroups("0+2/1+3"), [[0, 2], [1, 3]])
        for bad in ["", "a", "3-1", "1-", "-1", "1,1", "0-3,2"] {
            XCTAssertThrowsError(try Partition.parseClasses(bad), bad)
        }
        XCTAssertThrowsError(try Partition.parseClassGroups("0-3,3-5"))
    }

    func testClassGroupsAreExact() throws {
        let groups = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
        let shards = try Partition.classGroups(labels: labels, groups: groups)
        assertDisjointAndComplete(shards, total: labels.count)
        for (shard, group) in zip(shards, groups) {
            XCTAssertEqual(Set(shard.map { labels[$0] }), Set(group))
            XCTAssertEqual(shard.count, labels.filter { group.contains($0) }.count)
        }
        // classes in no group are left out
        let partial = try Partition.classGroups(labels: labels, groups: [[0], [9]])
        XCTAssertEqual(partial[0].count + partial[1].count, labels.filter { $0 == 0 || $0 == 9 }.count)
        XCTAssertThrowsError(try Partition.classGroups(labels: labels, groups: [[0, 1], [1]]))
    }

    func testSampleIsASeededSortedSubset() {
        let pool = Array(stride(from: 0, to: 200, by: 2))
        let a = Partition.sample(pool, limit: 30, seed: 1)
        XCTAssertEqual(a.count, 30)
        XCTAssertEqual(a, a.sorted())
        XCTAssertTrue(Set(a).isSubset(of: Set(pool)))
        XCTAssertEqual(a, Partition.sample(pool, limit: 30, seed: 1))
        XCTAssertNotEqual(a, Partition.sample(pool, limit: 30, seed: 2))
        XCTAssertEqual(Partition.sample(pool, limit: nil, seed: 1), pool)
        XCTAssertEqual(Partition.sample(pool, limit: 500, seed: 1), pool)
    }

    func testIIDIsBalancedCompleteAndSeeded() {
        let a = Partition.iid(count: 1000, shards: 3, seed: 42)
        assertDisjointAndComplete(a, total: 1000)
        XCTAssertEqual(a.map(\.count).sorted(), [333, 333, 334])
        XCTAssertEqual(a, Partition.iid(count: 1000, shards: 3, seed: 42))
        XCTAssertNotEqual(a, Partition.iid(count: 1000, shards: 3, seed: 43))
        // every shard sees (nearly) every class
        for shard in a { XCTAssertEqual(Set(shard.map { labels[$0] }).count, 10) }
    }

    func testDirichletIsCompleteSeededAndSkewedBySmallAlpha() {
        let skewed = Partition.dirichlet(labels: labels, shards: 4, alpha: 0.1, seed: 5)
        assertDisjointAndComplete(skewed, total: labels.count)
        XCTAssertEqual(skewed, Partition.dirichlet(labels: labels, shards: 4, alpha: 0.1, seed: 5))
        XCTAssertNotEqual(skewed, Partition.dirichlet(labels: labels, shards: 4, alpha: 0.1, seed: 6))

        let even = Partition.dirichlet(labels: labels, shards: 4, alpha: 1000, seed: 5)
        assertDisjointAndComplete(even, total: labels.count)
        // share of the most common class in each shard: near 10% for large alpha, far above for small
        func dominance(_ shards: [[Int]]) -> Double {
            let shares = shards.filter { !$0.isEmpty }.map { shard -> Double in
                var counts = [Int](repeating: 0, count: 10)
                for i in shard { counts[labels[i]] += 1 }
                return Double(counts.max()!) / Double(shard.count)
            }
            return shares.reduce(0, +) / Double(shares.count)
        }
        XCTAssertLessThan(dominance(even), 0.13)
        XCTAssertGreaterThan(dominance(skewed), 0.3)
    }
}
