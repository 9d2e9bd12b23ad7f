import FedPiData
import FedPiEngine
import FedPiWire
import FedPiTesting
import Foundation
import XCTest

final class ImageFileTests: XCTestCase {
    /// Batches read from the file are exactly the batches of the in-memory images, in any order, and
    /// training on either gives the same weights.
    func testBatchesEqualTheInMemoryImages() throws {
        let (pixels, labels) = IDXFixtures.syntheticImages(count: 300)
        let memory = try LabeledImages(height: 28, width: 28, pixels: pixels, labels: labels)
        let file = try store(memory)
        XCTAssertEqual(file.count, 300)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int, 300 * 784)
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
        let file = try store(try LabeledImages(height: 28, width: 28, pixels: pixels, labels: labels))
        let path = file.path
        XCTAssertEqual(truncate(path, 10 * 784), 0)
        let model = try ModelZoo.make("mnist-mlp", seed: 1)
        XCTAssertThrowsError(try Trainer(model: model, options: TrainingOptions(epochs: 1, batchSize: 16)).train(on: file)) {
            XCTAssertTrue("\($0)".contains("reading the training shard \(path) failed"), "\($0)")
            XCTAssertTrue("\($0)".contains("shorter"), "\($0)")
        }
        XCTAssertNotNil(file.readFailure)
    }

    /// A missing file, or one whose size does not fit the labels, is refused when it is opened.
    func testAMissingOrMisfittingFileIsRefusedAtOpen() throws {
        XCTAssertThrowsError(try ImageFile(path: "/nonexistent-dir/shard.u8", height: 28, width: 28, labels: [1, 2])) {
            XCTAssertTrue("\($0)".contains("cannot open the training shard /nonexistent-dir/shard.u8"), "\($0)")
        }
        let path = IDXFixtures.temporaryDirectory("fedpi-imagefile") + "/shard.u8"
        try FileIO.writeAtomically([UInt8](repeating: 7, count: 3 * 784 - 1), to: path)
        XCTAssertThrowsError(try ImageFile(path: path, height: 28, width: 28, labels: [1, 2, 3])) {
            XCTAssertTrue("\($0)".contains("is 2351 bytes; 3 images of 28x28 are 2352"), "\($0)")
        }
    }

    /// Writes the images' pixels the way the worker does and opens them.
    private func store(_ images: LabeledImages) throws -> ImageFile {
        let path = IDXFixtures.temporaryDirectory("fedpi-imagefile") + "/shard.u8"
        try FileIO.writeAtomically(images.pixels, to: path)
        return try ImageFile(path: path, height: images.height, width: images.width, labels: images.labels)
    }
}
