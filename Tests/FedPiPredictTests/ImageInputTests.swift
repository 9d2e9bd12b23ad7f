import FedPiEngine
import XCTest

@testable import FedPiPredict

/// Images become model input through stb_image: PNG and JPEG in gray or colour, resized by area
/// averaging, inverted when drawn dark on light; anything else is refused with a reason, never a crash.
final class ImageInputTests: XCTestCase {
    func pattern(_ w: Int, _ h: Int, seed: Int = 1) -> [UInt8] {
        (0..<(w * h)).map { UInt8(truncatingIfNeeded: ($0 &* 37 &+ seed &* 11) % 251) }
    }

    func testGrayPNGRoundTripsExactly() throws {
        let pixels = pattern(28, 28)
        let png = ImageOutput.encode(pixels, width: 28, height: 28)
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        let (w, h, decoded) = try ImageInput.decode(png)
        XCTAssertEqual([w, h], [28, 28])
        XCTAssertEqual(decoded, pixels)
        // a dark border: no inversion, no resizing
        var dark = pixels
        for i in 0..<28 { dark[i] = 0; dark[27 * 28 + i] = 0; dark[i * 28] = 0; dark[i * 28 + 27] = 0 }
        XCTAssertEqual(try ImageInput.pixels(from: ImageOutput.encode(dark, width: 28, height: 28), width: 28, height: 28), dark)
    }

    func testRawBytesPassThroughAndEncodedOnesAreDecoded() throws {
        let raw = pattern(28, 28, seed: 3).map { $0 == 0x89 ? 0x88 : $0 }
        XCTAssertEqual(try ImageInput.pixels(from: raw, width: 28, height: 28), raw)
        // 784 bytes that start like a PNG are a (broken) image, not pixels
        var fake = raw
        fake.replaceSubrange(0..<4, with: [0x89, 0x50, 0x4E, 0x47])
        XCTAssertThrowsError(try ImageInput.pixels(from: fake, width: 28, height: 28))
    }

    func testRGBAndJPEGBecomeGrayOfTheRightSize() throws {
        // a 40x30 RGB image: left half pure red, right half white
        var rgb: [UInt8] = []
        for _ in 0..<30 { for x in 0..<40 { rgb += x < 20 ? [255, 0, 0] : [255, 255, 255] } }
        let (w, h, gray) = try ImageInput.decode(ImageOutput.encode(rgb, width: 40, height: 30, channels: 3))
        XCTAssertEqual([w, h], [40, 30])
        XCTAssertEqual(Int(gray[0]), 77, accuracy: 2, "stb's luminance of pure red")
        XCTAssertEqual(gray[39], 255)
        let jpeg = ImageOutput.encode(rgb, width: 40, height: 30, channels: 3, as: .jpeg(quality: 90))
        XCTAssertEqual(Array(jpeg.prefix(3)), [0xFF, 0xD8, 0xFF])
        let (jw, jh, jgray) = try ImageInput.decode(jpeg)
        XCTAssertEqual([jw, jh], [40, 30])
        XCTAssertEqual(Int(jgray[15 * 40 + 35]), 255, accuracy: 6)
        XCTAssertEqual(try ImageInput.pixels(from: jpeg, width: 28, height: 28).count, 784)
    }

    func testAreaAveragingAndBilinear() {
        // 4x4 of 2x2 blocks -> 2x2 block means
        let blocks: [UInt8] = [0, 0, 100, 100,
                               0, 0, 100, 100,
                               200, 200, 40, 40,
                               200, 200, 40, 40]
        XCTAssertEqual(ImageInput.resize(blocks, width: 4, height: 4, toWidth: 2, toHeight: 2), [0, 100, 200, 40])
        // 3 -> 2: each output covers 1.5 source pixels
        XCTAssertEqual(ImageInput.resize([0, 90, 180], width: 3, height: 1, toWidth: 2, toHeight: 1), [30, 150])
        // 2 -> 4 grows linearly between the pixel centres, edges held
        XCTAssertEqual(ImageInput.resize([0, 200], width: 2, height: 1, toWidth: 4, toHeight: 1), [0, 50, 150, 200])
    }

    func testDarkInkOnPaperIsInverted() throws {
        var paper = [UInt8](repeating: 250, count: 56 * 56)
        for y in 10..<46 { for x in 26..<30 { paper[y * 56 + x] = 5 } }
        let input = try ImageInput.pixels(from: ImageOutput.encode(paper, width: 56, height: 56), width: 28, height: 28)
        XCTAssertEqual(input[0], 5, "the light background becomes dark")
        XCTAssertGreaterThan(input[14 * 28 + 14], 200, "the dark stroke becomes light")
    }

    func testBrokenAndHostileImagesAreRefused() throws {
        let png = ImageOutput.encode(pattern(28, 28), width: 28, height: 28)
        XCTAssertThrowsError(try ImageInput.decode([]))
        XCTAssertThrowsError(try ImageInput.decode(Array("not an image at all".utf8)))
        XCTAssertThrowsError(try ImageInput.decode(Array(png.prefix(40))), "truncated")
        // a header that claims 10,000 x 10,000 pixels is refused before anything is decoded (stb itself refuses beyond 2^30)
        var huge = png
        huge.replaceSubrange(16..<24, with: [0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10])
        XCTAssertThrowsError(try ImageInput.decode(huge)) { XCTAssertTrue("\($0)".contains("at most"), "\($0)") }
    }

    /// Random corruptions of a PNG and a JPEG: each decodes or is refused; none traps.
    func testFuzzedImagesNeverTrap() {
        var g = SeededGenerator(seed: 7, stream: "image-fuzz")
        let seeds = [ImageOutput.encode(pattern(28, 28), width: 28, height: 28),
                     ImageOutput.encode(pattern(33, 17), width: 33, height: 17, as: .jpeg(quality: 75))]
        var decoded = 0, refused = 0
        for i in 0..<4000 {
            var b = seeds[i % 2]
            for _ in 0..<Int.random(in: 1...8, using: &g) {
                switch Int.random(in: 0..<3, using: &g) {
                case 0: b[Int.random(in: 0..<b.count, using: &g)] = UInt8.random(in: 0...255, using: &g)
                case 1: b = Array(b.prefix(Int.random(in: 0...b.count, using: &g)))
                default: b.insert(UInt8.random(in: 0...255, using: &g), at: Int.random(in: 0...b.count, using: &g))
                }
                if b.isEmpty { break }
            }
            if (try? ImageInput.pixels(from: b, width: 28, height: 28)) != nil { decoded += 1 } else { refused += 1 }
        }
        XCTAssertEqual(decoded + refused, 4000)
        XCTAssertGreaterThan(refused, 0)
    }

    func testPredictionIsADistributionWithItsArgmax() throws {
        let model = try ModelZoo.make("mnist-mlp", seed: 3)
        let p = try Prediction(model: model, pixels: pattern(28, 28))
        XCTAssertEqual(p.probabilities.count, 10)
        XCTAssertEqual(p.probabilities.reduce(0, +), 1, accuracy: 1e-9)
        XCTAssertEqual(p.probabilities[p.predictedClass], p.probabilities.max())
        XCTAssertThrowsError(try Prediction(model: model, pixels: [1, 2, 3]))
    }
}
