import FedPiData
import FedPiEngine
import FedPiTesting
import XCTest

/// Image class folders: layout and class names, decoding of PNG and JPEG (gray, gray+alpha, RGB,
/// RGBA, odd sizes), what is skipped and why, the resize filters, the same pixels as the IDX files
/// they were exported from, and the worker's cached shard.
final class ImageFoldersTests: XCTestCase {
    func pixels(_ w: Int, _ h: Int, channels: Int = 1, _ value: (Int, Int, Int) -> UInt8) -> [UInt8] {
        var out: [UInt8] = []
        for y in 0..<h { for x in 0..<w { for c in 0..<channels { out.append(value(x, y, c)) } } }
        return out
    }

    /// A small mixed folder: classes "cat", "dog" in train, "bird" only in test; odd sizes, every
    /// channel count, JPEG, and four files that are not usable images.
    func makeFolder() -> String {
        let dir = IDXFixtures.temporaryDirectory("fedpi-folders")
        for f in ["train/dog", "train/cat", "test/cat", "test/bird", "train/cat/nested"] { IDXFixtures.mkdirs("\(dir)/\(f)") }
        XCTAssertTrue(IDXFixtures.writeImage("\(dir)/train/cat/a.png", width: 28, height: 28, bytes: pixels(28, 28) { x, _, _ in UInt8(x * 9) }))
        XCTAssertTrue(IDXFixtures.writeImage("\(dir)/train/cat/b.PNG", width: 31, height: 17, channels: 3, bytes: pixels(31, 17, channels: 3) { _, _, c in [200, 100, 50][c] }))
        XCTAssertTrue(IDXFixtures.writeImage("\(dir)/train/cat/c.png", width: 56, height: 56, channels: 2, bytes: pixels(56, 56, channels: 2) { _, _, c in c == 0 ? 77 : 10 }))
        XCTAssertTrue(IDXFixtures.writeImage("\(dir)/train/dog/d.jpg", width: 40, height: 40, channels: 3, bytes: pixels(40, 40, channels: 3) { _, _, _ in 128 }))
        XCTAssertTrue(IDXFixtures.writeImage("\(dir)/train/dog/e.jpeg", width: 14, height: 14, channels: 4, bytes: pixels(14, 14, channels: 4) { _, _, c in c == 3 ? 255 : 240 }))
        XCTAssertTrue(IDXFixtures.writeImage("\(dir)/test/bird/f.png", width: 28, height: 28, bytes: pixels(28, 28) { _, _, _ in 1 }))
        XCTAssertTrue(IDXFixtures.writeImage("\(dir)/test/cat/g.png", width: 28, height: 28, bytes: pixels(28, 28) { _, _, _ in 2 }))
        let whole = IDXFixtures.read("\(dir)/train/cat/a.png")
        IDXFixtures.write(Array(whole.prefix(whole.count / 2)), to: "\(dir)/train/dog/truncated.png")
        IDXFixtures.write([], to: "\(dir)/train/dog/empty.jpg")
        IDXFixtures.write(Array("not an image".utf8), to: "\(dir)/train/dog/fake.png")
        IDXFixtures.write(Array("notes".utf8), to: "\(dir)/train/dog/notes.txt")
        IDXFixtures.write(Array("x".utf8), to: "\(dir)/train/dog/.DS_Store")
        return dir
    }

    func testLayoutClassesDecodingAndWhatIsSkipped() throws {
        let dir = makeFolder()
        XCTAssertTrue(ImageFolders.looksLike(dir))
        XCTAssertFalse(ImageFolders.looksLike(IDXFixtures.syntheticDirectory(train: 5, test: 5, gzip: false)))
        let data = try DataDirectory(dir)
        // every split's class folders, sorted: bird only in test still takes label 0
        XCTAssertEqual(data.classNames, ["bird", "cat", "dog"])
        let f = try XCTUnwrap({ if case .folders(let f) = data.layout { return f } else { return nil } }())
        XCTAssertEqual(f.splits, ["train", "test"])

        var skipped: [ImageFolders.Skipped] = []
        let train = try data.load(.train, height: 28, width: 28, skipped: { skipped = $0 })
        XCTAssertEqual(train.count, 5)
        XCTAssertEqual(train.labels, [1, 1, 1, 2, 2], "sorted by class, then file name")
        let reasons = Dictionary(uniqueKeysWithValues: skipped.map { (String($0.path.split(separator: "/").last!), $0.reason) })
        XCTAssertEqual(Set(reasons.keys), ["truncated.png", "empty.jpg", "fake.png", "notes.txt"], "\(skipped)")
        XCTAssertTrue(reasons["notes.txt"]!.contains("not a .png"), reasons["notes.txt"]!)
        XCTAssertTrue(skipped.allSatisfy { $0.path.hasPrefix(dir + "/train/dog/") })

        func image(_ i: Int) -> [UInt8] { Array(train.pixels[(i * 784)..<((i + 1) * 784)]) }
        // a.png: 28x28 gray, kept as it is
        XCTAssertEqual(image(0), pixels(28, 28) { x, _, _ in UInt8(x * 9) })
        // b.PNG: RGB (200,100,50) at 31x17 → stb's luma (77r+150g+29b)>>8 = 125, constant after resizing
        let luma: Int = (77 * 200 + 150 * 100 + 29 * 50) >> 8
        XCTAssertEqual(Set(image(1)), [UInt8(luma)])
        // c.png: gray+alpha 56x56 → the gray channel, halved by area averaging
        XCTAssertEqual(Set(image(2)), [77])
        // d.jpg: JPEG, mid-gray (lossy: within 2)
        XCTAssertTrue(image(3).allSatisfy { abs(Int($0) - 128) <= 2 }, "\(Set(image(3)))")
        // e.jpeg: RGBA 14x14 enlarged to 28x28
        XCTAssertTrue(image(4).allSatisfy { abs(Int($0) - 240) <= 2 }, "\(Set(image(4)))")

        let test = try data.load(.test, height: 28, width: 28)
        XCTAssertEqual(test.labels, [0, 1])
        XCTAssertEqual(Set(test.pixels[0..<784]), [1])
    }

    func testValIsTheEvaluationSplitWithoutTestAndErrorsAreClear() throws {
        let dir = IDXFixtures.temporaryDirectory("fedpi-folders")
        IDXFixtures.mkdirs(dir + "/train/a")
        IDXFixtures.mkdirs(dir + "/val/a")
        IDXFixtures.writeImage(dir + "/val/a/x.png", width: 4, height: 4, bytes: [UInt8](repeating: 9, count: 16))
        let data = try DataDirectory(dir)
        XCTAssertEqual(try data.load(.test, height: 2, width: 2).pixels, [9, 9, 9, 9])
        XCTAssertThrowsError(try data.load(.train, height: 2, width: 2)) {
            XCTAssertTrue("\($0)".contains("no readable images"), "\($0)")
        }
        IDXFixtures.mkdirs(dir + "-nothing/train")
        XCTAssertFalse(ImageFolders.looksLike(dir + "-nothing"))
        XCTAssertThrowsError(try ImageFolders(dir + "-nothing")) { XCTAssertTrue("\($0)".contains("class folders"), "\($0)") }
    }

    func testAnImageClaimingTooManyPixelsIsRefusedBeforeDecoding() throws {
        let dir = IDXFixtures.temporaryDirectory("fedpi-folders")
        // a PNG header for 6000x6000 (36 MP): refused from the header, nothing allocated for it
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]
        png += [0, 0, 0x17, 0x70, 0, 0, 0x17, 0x70, 8, 0, 0, 0, 0, 0, 0, 0, 0]
        IDXFixtures.write(png, to: dir + "/big.png")
        var out = [UInt8](repeating: 0, count: 4)
        XCTAssertThrowsError(try ImageFolders.decodeFile(dir + "/big.png", height: 2, width: 2, into: &out)) {
            XCTAssertTrue("\($0)".contains("megapixels"), "\($0)")
        }
    }

    /// Truncated and bit-flipped PNG and JPEG files: each decodes or is refused with a reason; none traps.
    func testMangledFilesNeverTrap() throws {
        let dir = IDXFixtures.temporaryDirectory("fedpi-folders")
        let image = pixels(37, 29, channels: 3) { x, y, c in UInt8((x * 7 + y * 13 + c * 50) % 256) }
        var g = SeededGenerator(seed: 42)
        var decoded = 0, refused = 0
        for ext in ["png", "jpg"] {
            let path = "\(dir)/original.\(ext)"
            XCTAssertTrue(IDXFixtures.writeImage(path, width: 37, height: 29, channels: 3, bytes: image))
            let original = IDXFixtures.read(path)
            for trial in 0..<300 {
                var bytes = original
                if trial % 3 == 0 {
                    bytes = Array(bytes.prefix(Int(g.next() % UInt64(bytes.count))))
                } else {
                    for _ in 0..<(1 + trial % 8) { bytes[Int(g.next() % UInt64(bytes.count))] ^= UInt8(1 << (g.next() % 8)) }
                }
                let mangled = "\(dir)/mangled.\(ext)"
                IDXFixtures.write(bytes, to: mangled)
                var out = [UInt8](repeating: 0, count: 16 * 16)
                do {
                    try ImageFolders.decodeFile(mangled, height: 16, width: 16, into: &out)
                    decoded += 1
                } catch {
                    XCTAssertFalse("\(error)".isEmpty)
                    refused += 1
                }
            }
        }
        XCTAssertEqual(decoded + refused, 600)
        XCTAssertGreaterThan(refused, 100, "truncations at least are refused")
    }

    func testResizeFilters() {
        func resize(_ src: [UInt8], _ sh: Int, _ sw: Int, _ dh: Int, _ dw: Int) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: dh * dw)
            src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { ImageFolders.resize(s, height: sh, width: sw, into: $0, height: dh, width: dw) } }
            return out
        }
        // halving: each output is the mean of a 2x2 block
        let src: [UInt8] = [0, 10, 20, 30,
                            40, 50, 60, 70,
                            100, 100, 0, 0,
                            100, 100, 0, 4]
        XCTAssertEqual(resize(src, 4, 4, 2, 2), [25, 45, 100, 1])
        // 3 → 2: output 0 covers source 0 and half of 1 (weights 2/3, 1/3)
        XCTAssertEqual(resize([0, 90, 180], 1, 3, 1, 2), [30, 150])
        // doubling (bilinear, centres aligned): 0,100 → 0, 25, 75, 100
        XCTAssertEqual(resize([0, 100], 1, 2, 1, 4), [0, 25, 75, 100])
        // shrink one axis, grow the other
        XCTAssertEqual(resize([0, 100, 50, 50], 2, 2, 1, 4), [25, 38, 63, 75])
        // same size: a copy
        XCTAssertEqual(resize(src, 4, 4, 4, 4), src)
        // every weight row sums to 1 and stays inside the source
        for (n, m) in [(28, 28), (100, 28), (13, 28), (28, 5), (1, 7), (7, 1), (2916, 64)] {
            for row in ImageFolders.resamplingWeights(from: n, to: m) {
                XCTAssertEqual(row.reduce(0) { $0 + $1.1 }, 1, accuracy: 1e-5, "\(n)->\(m)")
                XCTAssertTrue(row.allSatisfy { (0..<n).contains($0.0) })
            }
        }
        // the mean survives a non-integer shrink (area averaging loses nothing)
        let random = (0..<(37 * 23)).map { UInt8(($0 * 7919) % 256) }
        let small = resize(random, 37, 23, 10, 7)
        let meanIn = Double(random.reduce(0) { $0 + Int($1) }) / Double(random.count)
        let meanOut = Double(small.reduce(0) { $0 + Int($1) }) / Double(small.count)
        XCTAssertEqual(meanIn, meanOut, accuracy: 0.6)
    }

    /// IDX images written as PNG class folders come back as the same pixels and labels, ordered by
    /// class then file (index) name.
    func testSamePixelsAsTheIDXFilesTheyWereExportedFrom() throws {
        let set = IDXFixtures.syntheticImages(count: 120, classes: 10, seed: 3)
        let dir = IDXFixtures.temporaryDirectory("fedpi-folders")
        IDXFixtures.writeImageFolders(dir, split: "train", height: 28, width: 28, pixels: set.pixels, labels: set.labels)
        IDXFixtures.writeImageFolders(dir, split: "test", height: 28, width: 28, pixels: set.pixels, labels: set.labels)
        let loaded = try DataDirectory(dir).load(.train, height: 28, width: 28)
        let order = set.labels.indices.sorted { (set.labels[$0], $0) < (set.labels[$1], $1) }
        XCTAssertEqual(loaded.labels, order.map { set.labels[$0] })
        XCTAssertEqual(loaded.pixels, order.flatMap { set.pixels[($0 * 784)..<(($0 + 1) * 784)] })
        // classes by name or number, with the folder names
        XCTAssertEqual(try Partition.parseClasses("3,0-1", names: (0..<10).map(String.init)), [3, 0, 1])
        XCTAssertEqual(try Partition.parseClasses("NORMAL", names: ["NORMAL", "PNEUMONIA"]), [0])
        XCTAssertEqual(try Partition.parseClassGroups("NORMAL,PNEUMONIA", names: ["NORMAL", "PNEUMONIA"]), [[0], [1]])
        XCTAssertThrowsError(try Partition.parseClasses("COVID", names: ["NORMAL", "PNEUMONIA"])) {
            XCTAssertTrue("\($0)".contains("NORMAL, PNEUMONIA"), "\($0)")
        }
    }

    /// The worker's shard: decoded once into the file `ImageFile` reads; reused while the chosen files
    /// are unchanged; decoded again when one changes.
    func testShardIsWrittenOnceAndRedoneWhenAFileChanges() throws {
        let set = IDXFixtures.syntheticImages(count: 60, classes: 3, seed: 5)
        let dir = IDXFixtures.temporaryDirectory("fedpi-folders")
        IDXFixtures.writeImageFolders(dir, split: "train", height: 28, width: 28, pixels: set.pixels, labels: set.labels)
        let folders = try ImageFolders(dir)
        let shard = dir + "/state-shard.u8"
        let keepTwo: ([UInt8]) -> [Int] = { labels in labels.indices.filter { labels[$0] != 1 } }
        let first = try folders.writeShard("train", height: 14, width: 14, keep: keepTwo, to: shard)
        XCTAssertFalse(first.reused)
        XCTAssertEqual(Set(first.labels), [0, 2])
        let file = try ImageFile(path: shard, height: 14, width: 14, labels: first.labels)
        XCTAssertEqual(file.count, first.labels.count)
        let direct = try folders.load("train", height: 14, width: 14, keep: keepTwo).images
        XCTAssertEqual(IDXFixtures.read(shard), direct.pixels)

        let again = try folders.writeShard("train", height: 14, width: 14, keep: keepTwo, to: shard)
        XCTAssertTrue(again.reused)
        XCTAssertEqual(again.labels, first.labels)
        // another size, or a changed file: decoded again
        XCTAssertFalse(try folders.writeShard("train", height: 7, width: 7, keep: keepTwo, to: shard).reused)
        let changed = try folders.files("train").files.first { $0.label == 0 }!.path
        IDXFixtures.writeImage(changed, width: 28, height: 28, bytes: [UInt8](repeating: 255, count: 784))
        var times = [timespec(tv_sec: 1, tv_nsec: 0), timespec(tv_sec: 1, tv_nsec: 0)]
        utimensat(AT_FDCWD, changed, &times, 0)
        let redone = try folders.writeShard("train", height: 7, width: 7, keep: keepTwo, to: shard)
        XCTAssertFalse(redone.reused)
        XCTAssertEqual(Array(IDXFixtures.read(shard).prefix(49)), [UInt8](repeating: 255, count: 49))
    }
}
