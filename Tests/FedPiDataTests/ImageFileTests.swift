import FedPiData
import FedPiEngine
import FedPiTesting
import Foundation
import XCTest

final class ImageFileTests: XCTestCase {
    /// Batches read from the file are exactly the batches of the in-memory images, in any order, and
    /// training on either gives the same weights.
    func testBatchesEqualTheInMemoryImages() throws {
        let (pixels, labels) = IDXFixtures.syntheticImages(count: 300)
        let memory = try LabeledImages(height: 28, width: 28, pixels: pixels, labels: labels)
        let path = IDXFixtures.temporaryDirectory("fedpi-imagefile") + "/shard.u8"
        let file = try ImageFile(storing: memory, at: path)
        XCTAssertEqual(file.count, 300)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int, 300 * 784)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".partial"))
        let norm = ModelZoo.mnistNormalization
        let a = Tensor(shape: [0]), b = Tensor(shape: [0])
        var la: [Int32] = [], lb: [Int32] = []
        let picks = [299, 0, 17, 17, 150]
        memory.fillBatch(picks[...], normalization: norm, into: a, labels: &la)
        file.fillBatch(picks[...], normalization: norm, into: b, labels: &lb)
        XCTAssertEqual(a.shape, b.shape)
        XCTAssertEqual(a.array, b.array)
        XCTAssertEqual(la, lb)
        XCTAssertNil(file.readFailure)

        func trained(_ data: BatchProvider) throws -> [Float] {
            let model = try ModelZoo.make("mnist-mlp", seed: 3)
            try Trainer(model: model, options: TrainingOptions(epochs: 1, batchSize: 32, seed: 3, lanes: 2)).train(on: data)
            return model.parameters.flatValues
        }
        XCTAssertEqual(try trained(memory), try trained(file))
    }

    /// A shard file cut short behind the worker's back: the read failure is kept and training stops
    /// with it as the reason, instead of training on garbage.
    func testAShortFileFailsTrainingWithTheReason() throws {
        let (pixels, labels) = IDXFixtures.syntheticImages(count: 64)
        let path = IDXFixtures.temporaryDirectory("fedpi-imagefile") + "/shard.u8"
        let file = try ImageFile(storing: try LabeledImages(height: 28, width: 28, pixels: pixels, labels: labels), at: path)
        XCTAssertEqual(truncate(path, 10 * 784), 0)
        let model = try ModelZoo.make("mnist-mlp", seed: 1)
        XCTAssertThrowsError(try Trainer(model: model, options: TrainingOptions(epochs: 1, batchSize: 16)).train(on: file)) {
            XCTAssertTrue("\($0)".contains("reading the training shard \(path) failed"), "\($0)")
            XCTAssertTrue("\($0)".contains("shorter"), "\($0)")
        }
        XCTAssertNotNil(file.readFailure)
    }

    func testAnUnwritableLocationIsAClearError() throws {
        let (pixels, labels) = IDXFixtures.syntheticImages(count: 2)
        let images = try LabeledImages(height: 28, width: 28, pixels: pixels, labels: labels)
        XCTAssertThrowsError(try ImageFile(storing: images, at: "/nonexistent-dir/shard.u8")) {
            XCTAssertTrue("\($0)".contains("cannot write the training shard to /nonexistent-dir/shard.u8.partial"), "\($0)")
        }
    }
}
