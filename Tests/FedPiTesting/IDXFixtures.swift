import CStb
import CZlib
import FedPiData
import FedPiEngine

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Small IDX files and data sets made on the fly, so tests never need a download.
public enum IDXFixtures {
    /// A fresh empty directory under the system temp dir.
    public static func temporaryDirectory(_ label: String = "fedpi-test") -> String {
        var template = Array("/tmp/\(label)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        return String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    /// The bytes of an unsigned-byte IDX file with the given dimensions and data.
    public static func idxBytes(dimensions: [Int], data: [UInt8], type: UInt8 = 0x08) -> [UInt8] {
        var out: [UInt8] = [0, 0, type, UInt8(dimensions.count)]
        for d in dimensions { out += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
        return out + data
    }

    /// Writes `bytes` to `path`, gzip-compressed when `gzip` is true.
    public static func write(_ bytes: [UInt8], to path: String, gzip: Bool = false) {
        if gzip {
            let f = gzopen(path, "wb")!
            _ = bytes.withUnsafeBytes { gzwrite(f, $0.baseAddress, UInt32($0.count)) }
            gzclose(f)
        } else {
            let f = fopen(path, "wb")!
            _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
            fclose(f)
        }
    }

    public static func read(_ path: String) -> [UInt8] {
        let f = fopen(path, "rb")!
        defer { fclose(f) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { fread($0.baseAddress, 1, 65536, f) }
            if n == 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    /// A learnable synthetic image set: class c lights up a c-dependent bar, plus seeded noise.
    public static func syntheticImages(count: Int, classes: Int = 10, side: Int = 28, seed: UInt64 = 7) -> (pixels: [UInt8], labels: [UInt8]) {
        var g = SeededGenerator(seed: seed)
        var pixels = [UInt8](repeating: 0, count: count * side * side)
        var labels = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            let c = Int(g.next() % UInt64(classes))
            labels[i] = UInt8(c)
            let row = 2 + c * (side - 4) / max(classes, 1)
            for y in 0..<side {
                for x in 0..<side {
                    var v = Int(g.next() % 60)
                    if abs(y - row) <= 1 && x > 3 && x < side - 3 { v += 160 }
                    pixels[(i * side + y) * side + x] = UInt8(min(v, 255))
                }
            }
        }
        return (pixels, labels)
    }

    /// Writes a complete MNIST-style folder (train and t10k, images and labels) of synthetic data.
    public static func syntheticDirectory(train: Int, test: Int, gzip: Bool, dotted: Bool = false) -> String {
        let dir = temporaryDirectory("fedpi-mnist")
        for (stem, n, seed) in [("train", train, UInt64(1)), ("t10k", test, UInt64(2))] {
            let set = syntheticImages(count: n, seed: seed)
            let sep = dotted ? "." : "-"
            let suffix = gzip ? ".gz" : ""
            write(idxBytes(dimensions: [n, 28, 28], data: set.pixels), to: "\(dir)/\(stem)-images\(sep)idx3-ubyte\(suffix)", gzip: gzip)
            write(idxBytes(dimensions: [n], data: set.labels), to: "\(dir)/\(stem)-labels\(sep)idx1-ubyte\(suffix)", gzip: gzip)
        }
        return dir
    }

    /// Writes an 8-bit image with `channels` (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) as PNG, or as
    /// JPEG at `quality` when the path ends in .jpg/.jpeg.
    @discardableResult
    public static func writeImage(_ path: String, width: Int, height: Int, channels: Int = 1, bytes: [UInt8], quality: Int32 = 95) -> Bool {
        precondition(bytes.count == width * height * channels)
        if path.hasSuffix(".jpg") || path.hasSuffix(".jpeg") {
            return stbi_write_jpg(path, Int32(width), Int32(height), Int32(channels), bytes, quality) != 0
        }
        return stbi_write_png(path, Int32(width), Int32(height), Int32(channels), bytes, Int32(width * channels)) != 0
    }

    /// Writes images (`count × height × width`, gray) as PNG class folders: DIR/SPLIT/<label>/<index>.png,
    /// the label zero-padded to `digits`, the index to 5 digits (so names sort in index order).
    public static func writeImageFolders(_ dir: String, split: String, height: Int, width: Int, pixels: [UInt8], labels: [UInt8],
                                         digits: Int = 1) {
        let per = height * width
        for (i, label) in labels.enumerated() {
            let folder = "\(dir)/\(split)/" + String(repeating: "0", count: max(0, digits - String(label).count)) + String(label)
            mkdirs(folder)
            let name = String(repeating: "0", count: max(0, 5 - String(i).count)) + String(i)
            precondition(writeImage("\(folder)/\(name).png", width: width, height: height, bytes: Array(pixels[(i * per)..<((i + 1) * per)])))
        }
    }

    /// Chest-X-ray-like class folders, DIR/{train,test}/{NORMAL,PNEUMONIA}/*: a bright body with two
    /// dark lung fields and noise; PNEUMONIA adds bright patches inside the lungs. Sizes vary around
    /// `side` (odd ones too), every third file is a JPEG, every fifth an RGB PNG. `counts` gives the
    /// images per class of each split, e.g. ["train": [30, 90], "test": [10, 30]] (3:1 like Kaggle's).
    public static func xrayLikeFolders(_ dir: String, counts: [String: [Int]], side: Int = 80, seed: UInt64 = 1) {
        var g = SeededGenerator(seed: seed)
        for (split, perClass) in counts.sorted(by: { $0.key < $1.key }) {
            for (label, name) in ["NORMAL", "PNEUMONIA"].enumerated() {
                mkdirs("\(dir)/\(split)/\(name)")
                for i in 0..<perClass[label] {
                    let w = side - 7 + Int(g.next() % 15), h = side - 7 + Int(g.next() % 15)
                    var gray = [UInt8](repeating: 0, count: w * h)
                    let patches = label == 1 ? (0..<3).map { _ in (Float(g.nextUnitFloat()), Float(g.nextUnitFloat()), 0.06 + 0.06 * Float(g.nextUnitFloat())) } : []
                    for y in 0..<h {
                        for x in 0..<w {
                            let u = Float(x) / Float(w), v = Float(y) / Float(h)
                            var value: Float = 170 - 60 * abs(u - 0.5)
                            for lung in [Float(0.3), 0.7] {  // two dark ellipses
                                let d = ((u - lung) / 0.16) * ((u - lung) / 0.16) + ((v - 0.5) / 0.3) * ((v - 0.5) / 0.3)
                                if d < 1 { value -= 90 * (1 - d) }
                            }
                            for (pu, pv, r) in patches {  // opacities inside the lungs
                                let cu = 0.2 + 0.6 * pu, cv = 0.3 + 0.4 * pv
                                let d = ((u - cu) * (u - cu) + (v - cv) * (v - cv)) / (r * r)
                                if d < 1 { value += 70 * (1 - d) }
                            }
                            value += 24 * (g.nextUnitFloat() - 0.5)
                            gray[y * w + x] = UInt8(max(0, min(255, value)))
                        }
                    }
                    let stem = "\(dir)/\(split)/\(name)/img\(i)"
                    if i % 3 == 2 {
                        precondition(writeImage(stem + ".jpeg", width: w, height: h, bytes: gray, quality: 90))
                    } else if i % 5 == 4 {
                        precondition(writeImage(stem + ".png", width: w, height: h, channels: 3, bytes: gray.flatMap { [$0, $0, $0] }))
                    } else {
                        precondition(writeImage(stem + ".png", width: w, height: h, bytes: gray))
                    }
                }
            }
        }
    }

    /// mkdir -p
    public static func mkdirs(_ path: String) {
        var built = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            built += "/" + part
            mkdir(built, 0o755)
        }
    }

    /// Where the Debian package dataset-fashion-mnist puts Fashion-MNIST.
    public static let fashionMNIST = "/usr/share/datasets/fashion-mnist"
}
