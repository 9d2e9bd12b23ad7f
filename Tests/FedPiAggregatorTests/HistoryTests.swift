import FedPiFederation
import FedPiTraining
import Foundation
import GRDB
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

    /// Another process reading the history (the tests, `sqlite3`, a backup) while the aggregator
    /// records a round must not make the write fail: an aggregator once exited with "SQLite error 5:
    /// database is locked" in CI because a test read its history at that moment.
    func testAReaderHoldingATransactionDoesNotBlockRecording() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("history-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let history = try History(path: dir + "/history.sqlite")
        try history.record(record(1, completed: true, accuracy: 0.5), strategy: "fedavg", encoding: "f16")
        let reader = try DatabaseQueue(path: dir + "/history.sqlite")  // default settings, as another program has
        let started = Date()
        try reader.inDatabase { db in
            try db.execute(sql: "BEGIN")
            defer { try? db.execute(sql: "COMMIT") }
            XCTAssertEqual(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rounds"), 1)
            XCTAssertNoThrow(try history.record(record(2, completed: true, accuracy: 0.6), strategy: "fedavg", encoding: "f16"))
            history.setMetrics(1, accuracy: 0.55, loss: 0.45, logger: Logger(label: "test"))
            XCTAssertEqual(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rounds"), 1, "the reader keeps its snapshot")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 2, "the writes did not wait for the reader")
        XCTAssertEqual(try history.rounds().map(\.accuracy), [0.55, 0.6])
        XCTAssertEqual(try reader.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM rounds") }, 2)
    }

    /// A confusion matrix is kept with the round's metrics and shown with each class's recall and
    /// precision; a history file written before confusion matrices existed gains the column.
    func testConfusionMatricesAndAnOlderFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("history-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // the v1 schema as an older aggregator left it, with a row
        let old = try DatabaseQueue(path: dir + "/history.sqlite")
        try old.write { db in
            try db.execute(sql: """
                CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                INSERT INTO grdb_migrations VALUES ('v1');
                CREATE TABLE rounds (
                    id INTEGER PRIMARY KEY, round INTEGER NOT NULL, attempt INTEGER NOT NULL, completed INTEGER NOT NULL,
                    finished_at TEXT NOT NULL, seconds REAL NOT NULL, accuracy REAL, loss REAL,
                    bytes_down INTEGER NOT NULL, bytes_up INTEGER NOT NULL, strategy TEXT NOT NULL, encoding TEXT NOT NULL);
                CREATE TABLE participants (
                    round_id INTEGER NOT NULL REFERENCES rounds(id), node TEXT NOT NULL, examples INTEGER NOT NULL,
                    bytes INTEGER NOT NULL, seconds REAL NOT NULL, train_seconds REAL);
                CREATE TABLE failures (round_id INTEGER NOT NULL REFERENCES rounds(id), node TEXT NOT NULL, reason TEXT NOT NULL);
                CREATE TABLE node_events (at TEXT NOT NULL, node TEXT NOT NULL, state TEXT NOT NULL, detail TEXT NOT NULL);
                INSERT INTO rounds VALUES (1, 1, 1, 1, 'then', 1, 0.5, 0.7, 0, 0, 'fedavg', 'f16');
                """)
        }
        try old.close()
        let history = try History(path: dir + "/history.sqlite")
        var r = record(2, completed: true, accuracy: 0.7)
        r.testConfusion = [[5, 1, 0], [2, 2, 0], [0, 0, 0]]
        try history.record(r, strategy: "fedavg", encoding: "f16")
        let id = try history.record(record(3, completed: true), strategy: "fedavg", encoding: "f16")
        history.setMetrics(id, accuracy: 0.9, loss: 0.2, confusion: [[9, 1], [0, 0]], logger: Logger(label: "test"))
        let rows = try history.rows()
        XCTAssertEqual(rows.map(\.round), [1, 2, 3])
        XCTAssertNil(rows[0].confusion)
        XCTAssertEqual(rows[1].confusion, [[5, 1, 0], [2, 2, 0], [0, 0, 0]])
        XCTAssertEqual(rows[1].recall, [5.0 / 6, 0.5, nil])
        XCTAssertEqual(rows[1].precision, [5.0 / 7, 2.0 / 3, nil])
        XCTAssertEqual(rows[2].confusion, [[9, 1], [0, 0]])
        XCTAssertEqual(rows[2].recall, [0.9, nil])
    }
}
