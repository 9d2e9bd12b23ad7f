import FedPiAggregator
import FedPiTesting
import Foundation
import XCTest

/// A fleet on image class folders: three real workers, each with its own chest-X-ray-like folder
/// (PNG, RGB PNG and JPEG at odd sizes, 1:3 imbalance), train xray-cnn with balanced class weights;
/// the history holds each round's confusion matrix with recall and precision.
final class ImageFolderFleetTests: XCTestCase {
    var fleet: FleetHarness!

    override func tearDown() {
        fleet?.stopAll()
        fleet = nil
    }

    func startFleet() throws {
        fleet = FleetHarness(model: "xray-cnn")
        for (i, name) in ["w1", "w2", "w3"].enumerated() {
            let data = fleet.dir + "/data-\(name)"
            IDXFixtures.xrayLikeFolders(data, counts: ["train": [20, 60], "test": [10, 10]], seed: UInt64(i + 1))
            // classes by folder name on one worker, by number on the others
            try fleet.startWorker(name, classes: i == 0 ? "NORMAL,PNEUMONIA" : "0-1", data: data)
            XCTAssertTrue(fleet.log(name).contains("decoded 80 images at 64x64"), fleet.log(name))
        }
    }

    func lastRow() throws -> History.Row {
        try XCTUnwrap(try History(path: fleet.stateDir + "/history.sqlite").rows().last)
    }

    /// The workers evaluate on their own test folders; the aggregator sums their confusion matrices.
    func testFederationOnImageFoldersWithFederatedEvaluation() throws {
        try startFleet()
        try fleet.writeFleet(rounds: 5, minNodes: 3, centralTest: false, extra: "strategy = \"fedavg\"\nclass_weights = \"balanced\"\nlearning_rate = 0.02\nbatch_size = 16\nlocal_epochs = 4")
        try fleet.startAggregator()
        XCTAssertEqual(try fleet.waitForAggregator(timeout: 240), 0, fleet.aggregatorLog())
        XCTAssertEqual(try fleet.history().filter(\.completed).map(\.round), [0, 1, 2, 3, 4, 5])
        let row = try lastRow()
        let confusion = try XCTUnwrap(row.confusion, "\(row)")
        XCTAssertEqual(confusion.map { $0.reduce(0, +) }, [30, 30], "3 workers × 10 test images per class")
        XCTAssertEqual(Double(confusion[0][0] + confusion[1][1]) / 60, try XCTUnwrap(row.accuracy), accuracy: 1e-9)
        XCTAssertGreaterThan(try XCTUnwrap(row.accuracy), 0.6, fleet.aggregatorLog())
        XCTAssertEqual(row.recall?.count, 2)
        XCTAssertEqual(try XCTUnwrap(row.recall?[1] ?? nil), Double(confusion[1][1]) / 30, accuracy: 1e-9)
        // a restarted worker reuses its decoded shard
        fleet.signal("w2", SIGTERM)
        fleet.workers["w2"]!.waitUntilExit()
        try fleet.startWorker("w2", classes: "0-1", data: fleet.dir + "/data-w2")
        XCTAssertTrue(fleet.log("w2").contains("the decoded shard from the last start is reused"), fleet.log("w2"))
    }

    /// The aggregator evaluates on a test folder of its own (test/ only, no train/).
    func testFederationOnImageFoldersWithCentralEvaluation() throws {
        try startFleet()
        let test = fleet.dir + "/central"
        IDXFixtures.xrayLikeFolders(test, counts: ["test": [25, 25]], seed: 9)
        try fleet.writeFleet(rounds: 5, minNodes: 3, testData: test, extra: "strategy = \"fedavg\"\nclass_weights = \"balanced\"\nlearning_rate = 0.02\nbatch_size = 16\nlocal_epochs = 4")
        try fleet.startAggregator()
        XCTAssertEqual(try fleet.waitForAggregator(timeout: 240), 0, fleet.aggregatorLog())
        let row = try lastRow()
        XCTAssertEqual(row.round, 5)
        let confusion = try XCTUnwrap(row.confusion, "\(row)")
        XCTAssertEqual(confusion.map { $0.reduce(0, +) }, [25, 25])
        XCTAssertGreaterThan(try XCTUnwrap(row.accuracy), 0.6, fleet.aggregatorLog())
    }
}
