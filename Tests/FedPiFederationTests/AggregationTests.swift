import XCTest

@testable import FedPiFederation
import FedPiTraining

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

    func testCenteredClippingByHand() {
        // median 2.5; deviations -1.5 -0.5 0.5 97.5; tau = median norm 1.0; clipped -1 -0.5 0.5 1 -> mean 0
        XCTAssertEqual(Aggregation.centeredClip([[1], [2], [3], [100]], weights: [1, 1, 1, 1]), [2.5])
        // median 1; deviations -1 0 9; tau 1; clipped -1 0 1, weights 1 1 2 -> (-1 + 2) / 4 = 0.25
        XCTAssertEqual(Aggregation.centeredClip([[0], [1], [10]], weights: [1, 1, 2]), [1.25])
        // a hostile update of any size or sign moves the result by at most tau * its weight share
        let honest: [[Float]] = [[1, 1], [1.2, 0.9], [0.9, 1.1], [1.1, 1]]
        for hostile: [Float] in [[-1e6, -1e6], [1e9, 0], [-10, -10]] {
            let r = Aggregation.centeredClip(honest + [hostile], weights: [1, 1, 1, 1, 1])
            XCTAssertLessThan(Aggregation.norm(zip(r, [1.05, 1]).map { $0 - $1 }), 0.2, "\(hostile) -> \(r)")
        }
        XCTAssertEqual(Aggregation.centeredClip([[4, 4]], weights: [3]), [4, 4])
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
