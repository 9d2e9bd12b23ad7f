import FedPiFederation
import FedPiTraining
import Foundation
import Logging
import XCTest

@testable import FedPiAggregator

/// Rows are written when a round's model exists and get their metrics when its evaluation (run beside
/// the next round) ends; a restart finds the completed round whose metrics never came.
final class HistoryTests: XCTestCase {
    func record(_ round: Int, completed: Bool, accuracy: Double? = nil) -> RoundRecord {
        RoundRecord(round: round, completed: completed, participants: [], failures: [], testAccuracy: accuracy,
                    testLoss: accuracy.map { 1 - $0 }, seconds: 1, bytesDown: 0, bytesUp: 0)
    }

    func testMetricsFilledInLaterAndMissingOnesFound() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("history-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let history = try History(path: dir + "/history.sqlite")
        try history.record(record(1, completed: true, accuracy: 0.5), strategy: "fedavg", encoding: "f16")
        XCTAssertNil(try history.completedRoundWithoutMetrics(1))
        try history.record(record(2, completed: false), strategy: "fedavg", encoding: "f16")
        XCTAssertNil(try history.completedRoundWithoutMetrics(2), "a failed attempt has no model to evaluate")
        let id = try history.record(record(2, completed: true), strategy: "fedavg", encoding: "f16")
        XCTAssertEqual(try history.completedRoundWithoutMetrics(2), id)
        history.setMetrics(id, accuracy: 0.75, loss: 0.6, logger: Logger(label: "test"))
        XCTAssertNil(try history.completedRoundWithoutMetrics(2))
        XCTAssertEqual(try history.rounds().map(\.accuracy), [0.5, nil, 0.75])
        // a reopened file keeps them
        XCTAssertEqual(try History(path: dir + "/history.sqlite").rounds().map(\.round), [1, 2, 2])
    }
}
