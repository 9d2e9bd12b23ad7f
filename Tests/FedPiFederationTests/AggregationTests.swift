import XCTest

@testable import FedPiFederation

final class AggregationTests: XCTestCase {
    func testWeightedMeanByHand() {
        var m = Aggregation.WeightedMean(parameters: 2)
        XCTAssertNil(m.mean)
        m.add([1, 2], weight: 1)
        m.add([3, 6], weight: 3)
        XCTAssertEqual(m.mean, [2.5, 5])  // (1·1 + 3·3)/4, (2 + 18)/4
        XCTAssertEqual(m.count, 2)
    }

    func testMedianTrimmedMeanAndClipping() {
        XCTAssertEqual(Aggregation.coordinateMedian([[1, 10], [5, 20], [3, -7]]), [3, 10])
        XCTAssertEqual(Aggregation.coordinateMedian([[1], [2], [3], [10]]), [2.5])
        XCTAssertEqual(Aggregation.trimmedMean([[1], [2], [3], [100]], trim: 1), [2.5])
        XCTAssertEqual(Aggregation.clipped([3, 4], to: 1), [0.6, 0.8])
        XCTAssertEqual(Aggregation.clipped([0.3, 0.4], to: 1), [0.3, 0.4])
    }

    func testStrategiesByHand() {
        let updates = [NodeUpdate(node: "a", delta: [1, 1], examples: 1), NodeUpdate(node: "b", delta: [3, 3], examples: 3)]
        XCTAssertEqual(FedAvg().aggregate(global: [10, 0], updates: updates), [12.5, 2.5])
        XCTAssertEqual(FedProx(mu: 0.1).aggregate(global: [10, 0], updates: updates), [12.5, 2.5])
        XCTAssertEqual(FedMedian().aggregate(global: [0, 0], updates: updates + [NodeUpdate(node: "c", delta: [100, -100], examples: 1)]), [3, 1])
        // an attacker's huge update is bounded by clipping to norm √2
        let clipped = FedAvg(clipNorm: 2.squareRoot()).aggregate(global: [0, 0], updates: [NodeUpdate(node: "x", delta: [300, 300], examples: 1)])
        XCTAssertEqual(clipped[0], 1, accuracy: 1e-6)
        // (1·w + 1·(g + δ))/2 applied in arrival order: 0 → 1 → 2.5
        XCTAssertEqual(AsyncMerge().aggregate(global: [0], updates: [NodeUpdate(node: "a", delta: [2], examples: 1), NodeUpdate(node: "b", delta: [4], examples: 1)]), [2.5])
    }
}
