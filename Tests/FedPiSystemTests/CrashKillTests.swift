import FedPiAggregator
import FedPiEngine
import FedPiTesting
import FedPiWire
import Foundation
import XCTest

/// SIGKILL at random instants and in the middle of file writes, against real processes: every file
/// left is a whole old or new version, the history database stays consistent, nothing is lost after
/// the restart and no partial file is left behind.
final class CrashKillTests: XCTestCase {
    var fleet: FleetHarness!
    let layout = try! ModelZoo.make("mnist-cnn", seed: 1).parameters.entries

    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: IDXFixtures.fashionMNIST), "needs dataset-fashion-mnist")
        fleet = FleetHarness()
    }

    override func tearDown() {
        fleet?.stopAll()
        fleet = nil
    }

    func temporaries(in dir: String, of file: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix(file + ".tmp-") }
    }

    /// Kills the process `p` when its temporary file of `file` appears in `dir` (plus a random 0–3 ms),
    /// or at a random instant when `targeted` is false, or after `limit` seconds. Returns whether the
    /// kill landed during the write (the temporary file is left).
    @discardableResult
    func kill(_ p: Process, whenWriting file: String, in dir: String, targeted: Bool, limit: Double = 20) -> Bool {
        var g = SystemRandomNumberGenerator()
        let temporary = dir + "/" + file + ".tmp-\(p.processIdentifier)"
        let end = Date().addingTimeInterval(targeted ? limit : Double.random(in: 0.2...1.5, using: &g))
        while Date() < end, p.isRunning {
            if targeted, FileManager.default.fileExists(atPath: temporary) {
                usleep(UInt32.random(in: 0...3000, using: &g))
                break
            }
            usleep(targeted ? 500 : 20_000)
        }
        Foundation.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        return FileManager.default.fileExists(atPath: temporary)
    }

    /// The checkpoint's round; fails the test if the file is not a whole, checksummed model.
    func checkpointRound() -> Int? {
        let path = fleet.stateDir + "/checkpoint.safetensors"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try ModelFile.decode(try FileIO.read(path), expecting: layout, model: "mnist-cnn").1.round
        } catch {
            XCTFail("the checkpoint is not a valid model file: \(error)")
            return nil
        }
    }

    func testAggregatorKilledFiftyTimesDuringCheckpointsLosesNothing() throws {
        try fleet.startWorker("w1", classes: "0-4", limit: 64)
        try fleet.startWorker("w2", classes: "5-9", limit: 64)
        try fleet.writeFleet(rounds: 10_000, minNodes: 2, testLimit: 100)
        var inWrite = 0, previous = 0
        for i in 0..<50 {
            try fleet.startAggregator()
            if kill(fleet.aggregator!, whenWriting: "checkpoint.safetensors", in: fleet.stateDir, targeted: i % 5 != 4) { inWrite += 1 }
            let round = checkpointRound() ?? 0
            XCTAssertGreaterThanOrEqual(round, previous, "kill \(i): the checkpoint went back from round \(previous) to \(round)")
            previous = round
            let history = try History(path: fleet.stateDir + "/history.sqlite")
            XCTAssertEqual(try history.problems(), [], "kill \(i)")
            let recorded = try history.lastCompletedRound()
            // the row of the checkpoint's round may be missing (killed in between); the restart writes it
            XCTAssertTrue(recorded == round || recorded == round - 1, "kill \(i): checkpoint round \(round), history round \(recorded)")
        }
        let logs = (1...fleet.aggregatorRuns).map { fleet.aggregatorLog($0) }
        let recovered = logs.filter { $0.contains("was not in the history (killed in between)") }.count
        let cleaned = logs.filter { $0.contains("partial checkpoint file") }.count
        print("""
            50 aggregator kills: \(inWrite) during a checkpoint write; the checkpoint reached round \(previous); \
            \(cleaned) restarts removed a partial checkpoint, \(recovered) recorded a round the history had lost
            """)
        XCTAssertGreaterThanOrEqual(inWrite, 20, "the kills must land during checkpoint writes")

        // finish three more rounds: every round is in the history exactly once, no partial file is left
        let last = previous + 3
        try fleet.writeFleet(rounds: last, minNodes: 2, testLimit: 100)
        try fleet.startAggregator()
        XCTAssertEqual(try fleet.waitForAggregator(timeout: 300), 0, fleet.aggregatorLog())
        XCTAssertEqual(checkpointRound(), last)
        let history = try History(path: fleet.stateDir + "/history.sqlite")
        XCTAssertEqual(try history.problems(), [])
        let completed = try history.rounds().filter(\.completed).map(\.round)
        XCTAssertEqual(completed, Array(0...last), "each round completed and recorded exactly once")
        XCTAssertEqual(temporaries(in: fleet.stateDir, of: "checkpoint.safetensors"), [])
    }

    func testWorkerKilledDuringUpdateWritesServesAWholeUpdateOrNone() throws {
        try fleet.startWorker("w1", classes: "0-4", limit: 64)
        try fleet.startWorker("w2", classes: "5-9", limit: 64)
        try fleet.writeFleet(rounds: 10_000, minNodes: 1, roundTimeout: 30, grace: 30, testLimit: 100)
        try fleet.startAggregator()
        let state = fleet.dir + "/w1-state"
        var inWrite = 0
        for i in 0..<15 {
            if kill(fleet.workers["w1"]!, whenWriting: "update.safetensors", in: state, targeted: true) { inWrite += 1 }
            if FileManager.default.fileExists(atPath: state + "/update.safetensors") {
                let bytes = try FileIO.read(state + "/update.safetensors")
                let file = try SafetensorsFile.decode(bytes)
                XCTAssertEqual(ModelFile.checksumMatches(file), true, "kill \(i): the update on disk is not whole")
            }
            try fleet.startWorker("w1", classes: "0-4", limit: 64)
            XCTAssertEqual(temporaries(in: state, of: "update.safetensors"), [], "kill \(i): the restart removes the partial file")
        }
        print("15 worker kills: \(inWrite) during an update write")
        XCTAssertGreaterThanOrEqual(inWrite, 5, "the kills must land during update writes")
        XCTAssertTrue(fleet.aggregator!.isRunning, "the aggregator goes on through the kills")
        let before = try History(path: fleet.stateDir + "/history.sqlite").lastCompletedRound()
        try fleet.waitFor("two more rounds with w1 back", timeout: 120) {
            let rounds = (try? fleet.history()) ?? []
            return rounds.filter { $0.completed && $0.round > before + 1 && $0.participants.contains("w1") }.count >= 1
        }
    }
}
