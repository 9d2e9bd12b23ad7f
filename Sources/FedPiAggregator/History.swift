import FedPiEngine
import FedPiFederation
import FedPiTraining
import Foundation
import GRDB
import Logging

/// The aggregator's record in SQLite: every round attempt with its metrics, who took part, who
/// failed and why, and node state changes. Written in one transaction per round.
public final class History: Sendable {
    let db: DatabaseQueue

    public init(path: String) throws {
        // WAL: another program reading the file (sqlite3, a backup, the tests) never makes a round's
        // write fail with "database is locked", and the aggregator's writes never block it; writers
        // wait up to 10 s for each other
        var configuration = Configuration()
        configuration.journalMode = .wal
        configuration.busyMode = .timeout(10)
        db = try DatabaseQueue(path: path, configuration: configuration)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE rounds (
                    id INTEGER PRIMARY KEY, round INTEGER NOT NULL, attempt INTEGER NOT NULL, completed INTEGER NOT NULL,
                    finished_at TEXT NOT NULL, seconds REAL NOT NULL, accuracy REAL, loss REAL,
                    bytes_down INTEGER NOT NULL, bytes_up INTEGER NOT NULL, strategy TEXT NOT NULL, encoding TEXT NOT NULL);
                CREATE TABLE participants (
                    round_id INTEGER NOT NULL REFERENCES rounds(id), node TEXT NOT NULL, examples INTEGER NOT NULL,
                    bytes INTEGER NOT NULL, seconds REAL NOT NULL, train_seconds REAL);
                CREATE TABLE failures (round_id INTEGER NOT NULL REFERENCES rounds(id), node TEXT NOT NULL, reason TEXT NOT NULL);
                CREATE TABLE node_events (at TEXT NOT NULL, node TEXT NOT NULL, state TEXT NOT NULL, detail TEXT NOT NULL);
                """)
        }
        migrator.registerMigration("v2: confusion matrices") { db in
            try db.execute(sql: "ALTER TABLE rounds ADD COLUMN confusion TEXT")
        }
        try migrator.migrate(db)
    }

    static func now() -> String { Date().formatted(.iso8601) }

    /// A confusion matrix as stored: JSON rows, "[[5,1],[0,7]]" (nil: none).
    static func text(_ confusion: [[Int]]?) -> String? {
        guard let confusion, !confusion.isEmpty else { return nil }
        return "[" + confusion.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "]"
    }

    static func matrix(_ text: String?) -> [[Int]]? {
        guard let text else { return nil }
        return try? JSONDecoder().decode([[Int]].self, from: Data(text.utf8))
    }

    /// Writes the round's row (and its participants and failures) and returns the row's id.
    @discardableResult
    public func record(_ r: RoundRecord, strategy: String, encoding: String) throws -> Int64 {
        try db.write { db in
            try db.execute(
                sql: """
                    INSERT INTO rounds (round, attempt, completed, finished_at, seconds, accuracy, loss, bytes_down, bytes_up, strategy, encoding,
                                        confusion)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [r.round, r.attempt, r.completed, History.now(), r.seconds, r.testAccuracy, r.testLoss,
                            r.bytesDown, r.bytesUp, strategy, encoding, History.text(r.testConfusion)])
            let id = db.lastInsertedRowID
            for p in r.participants {
                try db.execute(sql: "INSERT INTO participants VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [id, p.node, p.examples, p.bytes, p.seconds, p.trainSeconds])
            }
            for f in r.failures {
                try db.execute(sql: "INSERT INTO failures VALUES (?, ?, ?)", arguments: [id, f.node, f.reason])
            }
            return id
        }
    }

    /// Fills in the metrics of a row written before its evaluation ended; a failure is logged, since the
    /// round itself is safe in the checkpoint.
    public func setMetrics(_ id: Int64, accuracy: Double, loss: Double, confusion: [[Int]]? = nil, logger: Logger) {
        do {
            try db.write { db in
                try db.execute(sql: "UPDATE rounds SET accuracy = ?, loss = ?, confusion = ? WHERE id = ?",
                               arguments: [accuracy, loss, History.text(confusion), id])
            }
        } catch {
            logger.warning("could not record the metrics of history row \(id): \(error)")
        }
    }

    /// The id of `round`'s completed row when it has no metrics (its evaluation was cut short), else nil.
    public func completedRoundWithoutMetrics(_ round: Int) throws -> Int64? {
        try db.read { db in
            try Int64.fetchOne(db, sql: "SELECT id FROM rounds WHERE round = ? AND completed = 1 AND accuracy IS NULL ORDER BY id DESC LIMIT 1",
                               arguments: [round])
        }
    }

    public func nodeEvent(_ node: String, state: String, detail: String) {
        try? db.write { db in
            try db.execute(sql: "INSERT INTO node_events VALUES (?, ?, ?, ?)", arguments: [History.now(), node, state, detail])
        }
    }

    /// A row for `round` when the checkpoint holds it but no completed row does: the process was
    /// killed between writing the checkpoint and its history row. Participants and bytes are not
    /// known any more; the row says so, and the metrics are filled in by the evaluation after the restart.
    /// Returns whether a row was written.
    @discardableResult
    public func recordRecovered(_ round: Int, strategy: String, encoding: String) throws -> Bool {
        try db.write { db in
            guard try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rounds WHERE round = ? AND completed = 1", arguments: [round]) == 0 else {
                return false
            }
            let attempt = (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rounds WHERE round = ?", arguments: [round]) ?? 0) + 1
            try db.execute(
                sql: """
                    INSERT INTO rounds (round, attempt, completed, finished_at, seconds, accuracy, loss, bytes_down, bytes_up, strategy, encoding)
                    VALUES (?, ?, 1, ?, 0, NULL, NULL, 0, 0, ?, ?)
                    """,
                arguments: [round, attempt, History.now(), strategy, encoding])
            try db.execute(sql: "INSERT INTO failures VALUES (?, ?, ?)", arguments: [
                db.lastInsertedRowID, "aggregator",
                "recovered from the checkpoint after a crash: participants and bytes of this round were not recorded"])
            return true
        }
    }

    /// What is wrong with the database: SQLite's integrity check, and rounds recorded as completed
    /// more than once. Empty when all is well.
    public func problems() throws -> [String] {
        try db.read { db in
            var out = try String.fetchAll(db, sql: "PRAGMA integrity_check").filter { $0 != "ok" }
            out += try Int.fetchAll(db, sql: "SELECT round FROM rounds WHERE completed = 1 GROUP BY round HAVING COUNT(*) > 1")
                .map { "round \($0) is recorded as completed more than once" }
            return out
        }
    }

    /// The highest round recorded as completed (0: none).
    public func lastCompletedRound() throws -> Int {
        try db.read { db in try Int.fetchOne(db, sql: "SELECT MAX(round) FROM rounds WHERE completed = 1") ?? 0 }
    }

    /// Attempts already made at `round` (so a resumed run numbers its next attempt on).
    public func attempts(of round: Int) throws -> Int {
        try db.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rounds WHERE round = ?", arguments: [round]) ?? 0 }
    }

    public struct Summary: Sendable, Equatable {
        public var round: Int, attempt: Int, completed: Bool, accuracy: Double?, participants: [String], failures: [String]
    }

    /// Every attempt, oldest first, with participants and failure reasons.
    public func rounds() throws -> [Summary] {
        try db.read { db in
            try GRDB.Row.fetchAll(db, sql: "SELECT id, round, attempt, completed, accuracy FROM rounds ORDER BY id").map { row in
                let id: Int64 = row["id"]
                return Summary(
                    round: row["round"], attempt: row["attempt"], completed: row["completed"], accuracy: row["accuracy"],
                    participants: try String.fetchAll(db, sql: "SELECT node FROM participants WHERE round_id = ? ORDER BY node", arguments: [id]),
                    failures: try GRDB.Row.fetchAll(db, sql: "SELECT node, reason FROM failures WHERE round_id = ? ORDER BY node", arguments: [id])
                        .map { "\($0["node"] as String): \($0["reason"] as String)" })
            }
        }
    }

    /// A round attempt as the API shows it: everything the history holds about it.
    public struct Row: Sendable, Encodable {
        public struct Participant: Sendable, Encodable {
            public var node: String, examples: Int, bytes: Int, seconds: Double, trainSeconds: Double?
        }
        public struct Failure: Sendable, Encodable {
            public var node: String, reason: String
        }
        public var round: Int, attempt: Int, completed: Bool, finishedAt: String, seconds: Double
        public var accuracy: Double?, loss: Double?, bytesDown: Int, bytesUp: Int, strategy: String, encoding: String
        public var participants: [Participant], failures: [Failure]
        /// Per class of the evaluation (nil: no confusion matrix recorded): true × predicted counts,
        /// and each class's recall and precision (nil where it had no samples / no predictions).
        public var confusion: [[Int]]?, recall: [Double?]?, precision: [Double?]?
    }

    /// The last `limit` attempts (of round `round` only, when given), oldest first.
    public func rows(round: Int? = nil, limit: Int = 10_000) throws -> [Row] {
        try db.read { db in
            let filter = round == nil ? "" : "WHERE round = ?"
            let arguments: StatementArguments = round.map { [$0, limit] } ?? [limit]
            let rows = try GRDB.Row.fetchAll(db, sql: "SELECT * FROM (SELECT * FROM rounds \(filter) ORDER BY id DESC LIMIT ?) ORDER BY id",
                                         arguments: arguments)
            return try rows.map { r in
                let id: Int64 = r["id"]
                let confusion = History.matrix(r["confusion"])
                let scores = confusion.map { EvaluationResult(loss: 0, accuracy: 0, count: 0, seconds: 0, confusion: $0) }
                return Row(
                    round: r["round"], attempt: r["attempt"], completed: r["completed"], finishedAt: r["finished_at"], seconds: r["seconds"],
                    accuracy: r["accuracy"], loss: r["loss"], bytesDown: r["bytes_down"], bytesUp: r["bytes_up"], strategy: r["strategy"],
                    encoding: r["encoding"],
                    participants: try GRDB.Row.fetchAll(db, sql: "SELECT * FROM participants WHERE round_id = ? ORDER BY node", arguments: [id]).map {
                        Row.Participant(node: $0["node"], examples: $0["examples"], bytes: $0["bytes"], seconds: $0["seconds"],
                                        trainSeconds: $0["train_seconds"])
                    },
                    failures: try GRDB.Row.fetchAll(db, sql: "SELECT node, reason FROM failures WHERE round_id = ? ORDER BY node", arguments: [id])
                        .map { Row.Failure(node: $0["node"], reason: $0["reason"]) },
                    confusion: confusion, recall: scores?.recall, precision: scores?.precision)
            }
        }
    }
}
