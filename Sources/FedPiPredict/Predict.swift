import CStb
import FedPiData
import FedPiEngine
#if canImport(Glibc)
import Glibc
#endif

/// An image that cannot be turned into model input, with the reason.
public struct ImageError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Model input from what people have at hand: an encoded image (PNG, JPEG, BMP, GIF, … decoded by
/// stb_image from Debian's libstb-dev) or exactly `width × height` raw grayscale bytes. Decoded
/// images are converted to grayscale, resized to the model's size (area averaging when shrinking,
/// bilinear when growing) and, when their border is light (dark ink on paper), inverted, since the
/// MNIST-format data sets are light on dark.
public enum ImageInput {
    /// Largest image accepted, in pixels per side; checked from the header before decoding.
    public static let maxSide = 8192

    /// Grayscale pixels, row-major, `width × height` of them.
    /// `invertLightBorder`: for models of light-on-dark images (the MNIST-format sets), not for photos
    /// or radiographs, whose brightness means what it shows.
    public static func pixels(from bytes: [UInt8], width: Int, height: Int, invertLightBorder: Bool = true) throws(ImageError) -> [UInt8] {
        if bytes.count == width * height, !looksEncoded(bytes) { return bytes }
        let (w, h, gray) = try decode(bytes)
        var out = resize(gray, width: w, height: h, toWidth: width, toHeight: height)
        if invertLightBorder, borderMean(out, width: width, height: height) > 127 {
            for i in out.indices { out[i] = 255 - out[i] }
        }
        return out
    }

    /// PNG, JPEG, GIF and BMP signatures: a 784-byte file that starts with one is an image, not pixels.
    static func looksEncoded(_ b: [UInt8]) -> Bool {
        b.starts(with: [0x89, 0x50, 0x4E, 0x47]) || b.starts(with: [0xFF, 0xD8, 0xFF]) || b.starts(with: Array("GIF8".utf8))
            || b.starts(with: Array("BM".utf8))
    }

    /// Decodes to 8-bit grayscale (stb's luminance of RGB; alpha dropped).
    public static func decode(_ bytes: [UInt8]) throws(ImageError) -> (width: Int, height: Int, pixels: [UInt8]) {
        guard !bytes.isEmpty, bytes.count <= Int(Int32.max) else { throw ImageError("empty or oversized image") }
        var w: Int32 = 0, h: Int32 = 0, channels: Int32 = 0
        let known = bytes.withUnsafeBufferPointer { stbi_info_from_memory($0.baseAddress, Int32($0.count), &w, &h, &channels) }
        guard known == 1 else { throw ImageError("not an image stb_image can read (PNG, JPEG, BMP, GIF, PNM)") }
        guard w > 0, h > 0, w <= maxSide, h <= maxSide else {
            throw ImageError("image is \(w)x\(h) pixels; at most \(maxSide)x\(maxSide) is accepted")
        }
        let result: [UInt8]? = bytes.withUnsafeBufferPointer { buffer in
            guard let data = stbi_load_from_memory(buffer.baseAddress, Int32(buffer.count), &w, &h, &channels, 1) else { return nil }
            defer { stbi_image_free(data) }
            return Array(UnsafeBufferPointer(start: data, count: Int(w) * Int(h)))
        }
        guard let result else {
            let reason = stbi_failure_reason().map { String(cString: $0) } ?? "unknown error"
            throw ImageError("the image cannot be decoded: \(reason)")
        }
        return (Int(w), Int(h), result)
    }

    /// Resized to `toWidth × toHeight` as image folders are (`ImageFolders.resize`: area averaging
    /// when shrinking, bilinear when growing).
    public static func resize(_ pixels: [UInt8], width: Int, height: Int, toWidth: Int, toHeight: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: toWidth * toHeight)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { ImageFolders.resize(src, height: height, width: width, into: $0, height: toHeight, width: toWidth) }
        }
        return out
    }

    static func borderMean(_ p: [UInt8], width: Int, height: Int) -> Double {
        var sum = 0, n = 0
        for y in 0..<height {
            for x in 0..<width where y == 0 || y == height - 1 || x == 0 || x == width - 1 {
                sum += Int(p[y * width + x])
                n += 1
            }
        }
        return n == 0 ? 0 : Double(sum) / Double(n)
    }
}

/// The model's answer for one image: the most likely class and every class's probability.
public struct Prediction: Sendable, Equatable, Encodable {
    public var predictedClass: Int
    public var probabilities: [Double]

    /// Runs `model` (already holding its weights) on one grayscale image of its input size.
    public init(model: Model, pixels: [UInt8]) throws(ImageError) {
        let shape = model.inputShape
        guard shape.count == 3, shape[2] == 1, pixels.count == shape[0] * shape[1] else {
            throw ImageError("\(model.id) takes \(shape.map(String.init).joined(separator: "x")) input; got \(pixels.count) pixels")
        }
        let n = model.normalization
        let input = Tensor(shape: [1] + shape, values: pixels.map { (Float($0) / 255 - n.mean) / n.std })
        let logits = model.forward(input, training: false)
        let row = (0..<model.classes).map { Double(logits.data[$0]) }
        let top = row.max() ?? 0
        let e = row.map { exp($0 - top) }
        let sum = e.reduce(0, +)
        let p = e.map { $0 / sum }
        probabilities = p
        predictedClass = p.indices.max { p[$0] < p[$1] } ?? 0
    }
}

/// Encoded images from pixels (stb_image_write): for exporting data sets and for tests.
public enum ImageOutput {
    public enum Format: Sendable { case png, jpeg(quality: Int) }

    /// `pixels` is row-major, `channels` (1 gray, 3 RGB, 4 RGBA) bytes per pixel.
    public static func encode(_ pixels: [UInt8], width: Int, height: Int, channels: Int = 1, as format: Format = .png) -> [UInt8] {
        precondition(pixels.count == width * height * channels, "pixels do not match \(width)x\(height)x\(channels)")
        let sink = ImageSink()
        let context = Unmanaged.passUnretained(sink).toOpaque()
        _ = pixels.withUnsafeBytes { p in
            switch format {
            case .png: stbi_write_png_to_func(collect, context, Int32(width), Int32(height), Int32(channels), p.baseAddress, Int32(width * channels))
            case .jpeg(let q): stbi_write_jpg_to_func(collect, context, Int32(width), Int32(height), Int32(channels), p.baseAddress, Int32(q))
            }
        }
        return withExtendedLifetime(sink) { sink.bytes }
    }
}

private final class ImageSink { var bytes: [UInt8] = [] }

/// stb_image_write's output callback: appends to the `ImageSink` behind `context`.
private func collect(_ context: UnsafeMutableRawPointer?, _ data: UnsafeMutableRawPointer?, _ size: Int32) {
    guard let context, let data, size > 0 else { return }
    Unmanaged<ImageSink>.fromOpaque(context).takeUnretainedValue().bytes.append(
        contentsOf: UnsafeRawBufferPointer(start: data, count: Int(size)))
}
