import FedPiTesting
import XCTest

@testable import FedPiData

final class IDXTests: XCTestCase {
    let dir = IDXFixtures.temporaryDirectory()

    private func file(_ name: String, _ bytes: [UInt8], gzip: Bool = false) -> String {
        let path = "\(dir)/\(name)"
        IDXFixtures.write(bytes, to: path, gzip: gzip)
        return path
    }

    private func assertFails(_ path: String, containing text: String, line: UInt = #line) {
        XCTAssertThrowsError(try IDX.read(path: path), line: line) { error in
            let message = String(describing: error)
            XCTAssertTrue(message.contains(text), "message '\(message)' lacks '\(text)'", line: line)
            XCTAssertTrue(message.contains(path), "message '\(message)' does not name the file", line: line)
        }
    }

    func testReadsRawAndGzipIdentically() throws {
        let data = (0..<(3 * 4 * 5)).map { UInt8($0 * 7 % 256) }
        let bytes = IDXFixtures.idxBytes(dimensions: [3, 4, 5], data: data)
        let raw = try IDX.read(path: file("raw", bytes))
        let gz = try IDX.read(path: file("gz.gz", bytes, gzip: true))
        // gzip is recognised from content, not from the name
        let gzNoSuffix = try IDX.read(path: file("gz-no-suffix", bytes, gzip: true))
        XCTAssertEqual(raw.dimensions, [3, 4, 5])
        XCTAssertEqual(raw.bytes, data)
        XCTAssertEqual(gz.dimensions, raw.dimensions)
        XCTAssertEqual(gz.bytes, data)
        XCTAssertEqual(gzNoSuffix.bytes, data)
    }

    func testRejectsBadMagic() {
        assertFails(file("magic", [0x1F, 0x00, 0x08, 0x01, 0, 0, 0, 1, 5]), containing: "not an IDX file")
        assertFails(file("text", Array("hello world, not idx".utf8)), containing: "not an IDX file")
    }

    func testRejectsUnsupportedTypeAndRank() {
        assertFails(file("float", IDXFixtures.idxBytes(dimensions: [1], data: [0, 0, 0, 0], type: 0x0D)), containing: "not supported")
        assertFails(file("rank0", [0, 0, 8, 0]), containing: "rank 0")
        assertFails(file("rank9", [0, 0, 8, 9]), containing: "rank 9")
    }

    func testRejectsTruncationAtEverySection() {
        let full = IDXFixtures.idxBytes(dimensions: [2, 3, 3], data: Array(repeating: 9, count: 18))
        // every prefix shorter than the whole file, raw and gzip
        for cut in 0..<full.count {
            for gzip in [false, true] {
                let path = file("cut\(cut)\(gzip ? ".gz" : "")", Array(full[0..<cut]), gzip: gzip)
                XCTAssertThrowsError(try IDX.read(path: path), "prefix \(cut) gzip \(gzip)") { error in
                    XCTAssertTrue(String(describing: error).contains("truncated"), "\(error)")
                }
            }
        }
    }

    func testSelectedRecordsEqualTheFullReadAndTheWholeFileIsStillChecked() throws {
        let data = (0..<(3000 * 12)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 / 7) }
        let bytes = IDXFixtures.idxBytes(dimensions: [3000, 3, 4], data: data)
        for gzip in [false, true] {
            let path = file("sel\(gzip)", bytes, gzip: gzip)
            let picks = [0, 1, 17, 1500, 2998, 2999]
            let part = try IDX.read(path: path, records: picks)
            XCTAssertEqual(part.dimensions, [6, 3, 4])
            XCTAssertEqual(part.fileRecords, 3000)
            XCTAssertEqual(part.bytes, picks.flatMap { data[($0 * 12)..<($0 * 12 + 12)] })
            XCTAssertEqual(try IDX.read(path: path, records: []).bytes, [])
            XCTAssertThrowsError(try IDX.read(path: path, records: [5, 3]))
            XCTAssertThrowsError(try IDX.read(path: path, records: [3000]))
        }
        // a truncated file fails even when only early records are selected
        let cut = file("selcut", Array(bytes[0..<(bytes.count - 5)]))
        XCTAssertThrowsError(try IDX.read(path: cut, records: [0])) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
        XCTAssertThrowsError(try IDX.read(path: file("seltrail", bytes + [1]), records: [0])) { XCTAssertTrue("\($0)".contains("bytes after")) }
    }

    func testDirectoryLoadKeepsOnlyTheChosenSamples() throws {
        let dir = IDXFixtures.syntheticDirectory(train: 120, test: 10, gzip: true)
        let all = try MNISTDirectory(dir).load(.train)
        let some = try MNISTDirectory(dir).load(.train) { labels in labels.indices.filter { labels[$0] < 3 } }
        let expected = all.indices(ofClasses: [0, 1, 2])
        XCTAssertEqual(some.count, expected.count)
        XCTAssertEqual(some.labels, expected.map { all.labels[$0] })
        XCTAssertEqual(some.pixels, expected.flatMap { all.pixels[($0 * 784)..<($0 * 784 + 784)] })
    }

    func testRejectsTruncatedGzipStream() {
        let data = (0..<5000).map { _ in UInt8.random(in: 0...255) }
        let gz = IDXFixtures.read(file("whole.gz", IDXFixtures.idxBytes(dimensions: [5000], data: data), gzip: true))
        let path = file("halfstream.gz", Array(gz[0..<(gz.count / 2)]))
        XCTAssertThrowsError(try IDX.read(path: path)) { error in
            let message = String(describing: error)
            XCTAssertTrue(message.contains("truncated") || message.contains("corrupt"), message)
        }
    }

    func testRejectsTrailingBytes() {
        assertFails(file("extra", IDXFixtures.idxBytes(dimensions: [2], data: [1, 2, 3])), containing: "bytes after")
    }

    func testRejectsAbsurdDimensionsBeforeAllocating() {
        // 4 x 0xFFFFFFFF elements would be 64 GiB; must fail on the header, not on malloc
        assertFails(file("huge", [0, 0, 8, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), containing: "limit")
        XCTAssertThrowsError(try IDX.read(path: file("small-limit", IDXFixtures.idxBytes(dimensions: [100], data: Array(repeating: 0, count: 100))), byteLimit: 50))
    }

    func testMissingFileNamesIt() {
        assertFails("\(dir)/does-not-exist", containing: "cannot open")
    }

    func testLabeledImagesRejectsCountMismatchAndWrongRank() {
        let images = file("img", IDXFixtures.idxBytes(dimensions: [3, 2, 2], data: Array(repeating: 1, count: 12)))
        let labels2 = file("lab2", IDXFixtures.idxBytes(dimensions: [2], data: [0, 1]))
        let labels3 = file("lab3", IDXFixtures.idxBytes(dimensions: [3], data: [0, 1, 2]))
        XCTAssertThrowsError(try LabeledImages.load(images: images, labels: labels2)) { error in
            XCTAssertTrue(String(describing: error).contains("3 images but"), "\(error)")
        }
        XCTAssertThrowsError(try LabeledImages.load(images: labels3, labels: labels3)) { error in
            XCTAssertTrue(String(describing: error).contains("not an images file"), "\(error)")
        }
        XCTAssertThrowsError(try LabeledImages.load(images: images, labels: images)) { error in
            XCTAssertTrue(String(describing: error).contains("not a labels file"), "\(error)")
        }
        XCTAssertNoThrow(try LabeledImages.load(images: images, labels: labels3))
    }

    func testDirectoryFindsBothSpellingsAndExplainsAbsence() throws {
        for (gzip, dotted) in [(false, false), (true, false), (false, true), (true, true)] {
            let d = IDXFixtures.syntheticDirectory(train: 20, test: 10, gzip: gzip, dotted: dotted)
            let train = try MNISTDirectory(d).load(.train)
            let test = try MNISTDirectory(d).load(.test)
            XCTAssertEqual(train.count, 20)
            XCTAssertEqual(test.count, 10)
            XCTAssertEqual(train.sampleShape, [28, 28, 1])
        }
        XCTAssertThrowsError(try MNISTDirectory(dir + "/nothing-here").load(.train)) { error in
            let message = String(describing: error)
            XCTAssertTrue(message.contains("train-images-idx3-ubyte"), message)
            XCTAssertTrue(message.contains("dataset-fashion-mnist"), message)
        }
    }

    func testFillBatchNormalisesAndPicksSamples() throws {
        let set = try LabeledImages(height: 1, width: 2, pixels: [0, 255, 51, 102], labels: [3, 7])
        let t = Tensor(shape: [0])
        var labels: [Int32] = []
        set.fillBatch([1, 0], normalization: .init(mean: 0.5, std: 0.5), into: t, labels: &labels)
        XCTAssertEqual(t.shape, [2, 1, 2, 1])
        XCTAssertEqual(labels, [7, 3])
        let expected: [Float] = [51, 102, 0, 255].map { (Float($0) / 255 - 0.5) / 0.5 }
        for (a, b) in zip(t.array, expected) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        XCTAssertEqual(set.classCounts().map(\.label), [3, 7])
    }

    func testFashionMNISTFromDebianPackage() throws {
        // The test command installs dataset-fashion-mnist; its absence is a failure, not a skip.
        let train = try MNISTDirectory(IDXFixtures.fashionMNIST).load(.train)
        let test = try MNISTDirectory(IDXFixtures.fashionMNIST).load(.test)
        XCTAssertEqual(train.count, 60000)
        XCTAssertEqual(test.count, 10000)
        XCTAssertEqual(train.classCounts().map(\.count), Array(repeating: 6000, count: 10))
        XCTAssertEqual(test.classCounts().map(\.count), Array(repeating: 1000, count: 10))
    }
}

import FedPiEngine
