import CStb
import FedPiEngine

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A data set held as image class folders, the way most people keep images (Kaggle's Chest X-ray
/// layout): `DIR/{train,val,test}/<class>/*.{png,jpg,jpeg}`. Class names are the folder names of
/// all splits together, sorted, and a class's label is its position in that list, so a split that
/// lacks a class still labels the others as the rest do. Images are decoded by stb (Debian's
/// libstb), converted to grayscale, and resized to the model's input: area averaging when
/// shrinking, bilinear when enlarging. A file that cannot be decoded is skipped and reported with
/// its path; files with other extensions are not images and are counted, not read.
public struct ImageFolders: Sendable {
    public let path: String
    /// The splits found, in the order train, val, test.
    public let splits: [String]
    /// Sorted class folder names (label = index).
    public let classNames: [String]

    public static let splitNames = ["train", "val", "test"]
    public static let extensions: Set<String> = ["png", "jpg", "jpeg"]
    /// The most pixels an image may have (5000×5000): a header claiming more is refused before
    /// anything is allocated for it.
    public static let maxPixels = 25_000_000

    /// A file that was not used, and why.
    public struct Skipped: Sendable, Equatable, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "\(path): \(reason)" }
        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }
    }

    /// Whether `path` looks like image folders (a `train`, `val` or `test` folder with a class folder
    /// in it) rather than MNIST-format files.
    public static func looksLike(_ path: String) -> Bool {
        splitNames.contains { (try? listFolders(path + "/" + $0).isEmpty == false) ?? false }
    }

    public init(_ path: String) throws {
        self.path = path
        splits = ImageFolders.splitNames.filter { ImageFolders.isDirectory(path + "/" + $0) }
        guard !splits.isEmpty else {
            throw DatasetError("\(path) has no train, val or test folder: image folders are laid out as DIR/train/<class>/*.png (also val/, test/)")
        }
        var names = Set<String>()
        for split in splits { names.formUnion(try ImageFolders.listFolders(path + "/" + split)) }
        guard !names.isEmpty else { throw DatasetError("\(path) has no class folders (DIR/train/<class>/*.png)") }
        guard names.count <= 256 else { throw DatasetError("\(path) has \(names.count) class folders; at most 256 are supported") }
        classNames = names.sorted()
    }

    /// The split used to evaluate: test, else val (nil: neither exists).
    public var evaluationSplit: String? { splits.contains("test") ? "test" : splits.contains("val") ? "val" : nil }

    /// The image files of `split`, sorted by class then name, with their labels; files of other
    /// types (by extension) are returned as skipped.
    public func files(_ split: String) throws -> (files: [(path: String, label: UInt8)], skipped: [Skipped]) {
        guard splits.contains(split) else { throw DatasetError("\(path) has no \(split) folder") }
        var files: [(String, UInt8)] = [], skipped: [Skipped] = []
        for (label, name) in classNames.enumerated() {
            let folder = path + "/" + split + "/" + name
            guard ImageFolders.isDirectory(folder) else { continue }
            for entry in try ImageFolders.list(folder) {
                let file = folder + "/" + entry
                guard !ImageFolders.isDirectory(file) else { continue }
                let ext = entry.split(separator: ".").last.map { $0.lowercased() } ?? ""
                if entry.contains("."), ImageFolders.extensions.contains(ext) {
                    files.append((file, UInt8(label)))
                } else {
                    skipped.append(Skipped(path: file, reason: "not a .png, .jpg or .jpeg file"))
                }
            }
        }
        return (files, skipped)
    }

    /// Decodes `split`'s images chosen by `keep` (given every file's label; ascending indices) at
    /// `height × width`, handing each to `body` with its label as it is decoded, so memory holds one
    /// image at a time. `progress` is called with the number of chosen files done so far.
    public func decode(_ split: String, height: Int, width: Int, keep: (([UInt8]) throws -> [Int])? = nil,
                       progress: ((Int, Int) -> Void)? = nil,
                       _ body: (UnsafeBufferPointer<UInt8>, UInt8) throws -> Void) throws -> [Skipped] {
        let (all, ignored) = try files(split)
        let chosen = try keep?(all.map(\.label)) ?? Array(all.indices)
        var skipped = ignored
        var pixels = [UInt8](repeating: 0, count: height * width)
        for (done, i) in chosen.enumerated() {
            guard all.indices.contains(i) else { throw DatasetError("selected file \(i) is not among the \(all.count) files") }
            do {
                try ImageFolders.decodeFile(all[i].path, height: height, width: width, into: &pixels)
                try pixels.withUnsafeBufferPointer { try body($0, all[i].label) }
            } catch let error as DatasetError {
                skipped.append(Skipped(path: all[i].path, reason: error.description))
            }
            progress?(done + 1, chosen.count)
        }
        return skipped
    }

    /// Decodes `split` into memory (see `decode`).
    public func load(_ split: String, height: Int, width: Int, keep: (([UInt8]) throws -> [Int])? = nil,
                     progress: ((Int, Int) -> Void)? = nil) throws -> (images: LabeledImages, skipped: [Skipped]) {
        var pixels: [UInt8] = [], labels: [UInt8] = []
        let skipped = try decode(split, height: height, width: width, keep: keep, progress: progress) { image, label in
            pixels.append(contentsOf: image)
            labels.append(label)
        }
        guard !labels.isEmpty else { throw DatasetError("\(path)/\(split) has no readable images") }
        return (try LabeledImages(height: height, width: width, pixels: pixels, labels: labels), skipped)
    }

    /// The size of an image file from its header (nil: not an image stb can read).
    public static func size(of file: String) -> (width: Int, height: Int)? {
        var w: Int32 = 0, h: Int32 = 0, n: Int32 = 0
        guard stbi_info(file, &w, &h, &n) == 1 else { return nil }
        return (Int(w), Int(h))
    }

    /// One file decoded to grayscale and resized to `height × width` into `out`.
    public static func decodeFile(_ file: String, height: Int, width: Int, into out: inout [UInt8]) throws(DatasetError) {
        var w: Int32 = 0, h: Int32 = 0, n: Int32 = 0
        guard stbi_info(file, &w, &h, &n) == 1 else { throw DatasetError(failure("not a readable image")) }
        guard w > 0, h > 0, Int(w) * Int(h) <= maxPixels else {
            throw DatasetError("\(w)x\(h) is more than \(maxPixels / 1_000_000) megapixels")
        }
        guard let data = stbi_load(file, &w, &h, &n, 1) else { throw DatasetError(failure("cannot decode")) }
        defer { stbi_image_free(data) }
        let source = UnsafeBufferPointer(start: data, count: Int(w) * Int(h))
        out.withUnsafeMutableBufferPointer { resize(source, height: Int(h), width: Int(w), into: $0, height: height, width: width) }
    }

    static func failure(_ what: String) -> String {
        guard let reason = stbi_failure_reason() else { return what }
        return "\(what) (\(String(cString: reason)))"
    }

    /// Resizes a grayscale image, each axis on its own: area averaging where it shrinks (every
    /// source pixel contributes by how much of it the output pixel covers), bilinear with pixel
    /// centres aligned where it grows, a copy where it keeps its size.
    public static func resize(_ src: UnsafeBufferPointer<UInt8>, height sh: Int, width sw: Int,
                              into dst: UnsafeMutableBufferPointer<UInt8>, height dh: Int, width dw: Int) {
        if sh == dh && sw == dw {
            _ = dst.initialize(from: src)
            return
        }
        let across = resamplingWeights(from: sw, to: dw), down = resamplingWeights(from: sh, to: dh)
        var rows = [Float](repeating: 0, count: sh * dw)  // resized across, every source row
        for y in 0..<sh {
            let line = src.baseAddress! + y * sw
            for x in 0..<dw {
                var sum: Float = 0
                for (i, weight) in across[x] { sum += Float(line[i]) * weight }
                rows[y * dw + x] = sum
            }
        }
        for y in 0..<dh {
            for x in 0..<dw {
                var sum: Float = 0
                for (i, weight) in down[y] { sum += rows[i * dw + x] * weight }
                dst[y * dw + x] = UInt8(max(0, min(255, sum.rounded())))
            }
        }
    }

    /// For each of `m` outputs, the source indices (of `n`) and weights that make it (they sum to 1).
    public static func resamplingWeights(from n: Int, to m: Int) -> [[(Int, Float)]] {
        let scale = Double(n) / Double(m)
        return (0..<m).map { o in
            if m == n { return [(o, Float(1))] }
            if m < n {  // area: output o covers [o·scale, (o+1)·scale) of the source
                let start = Double(o) * scale, end = Double(o + 1) * scale
                var taps: [(Int, Float)] = []
                var i = Int(start)
                while Double(i) < end, i < n {
                    let overlap = min(end, Double(i + 1)) - max(start, Double(i))
                    if overlap > 1e-9 { taps.append((i, Float(overlap / scale))) }
                    i += 1
                }
                return taps
            }
            let centre = min(max((Double(o) + 0.5) * scale - 0.5, 0), Double(n - 1))
            let left = Int(centre), t = centre - Double(left)
            return left + 1 < n && t > 0 ? [(left, Float(1 - t)), (left + 1, Float(t))] : [(left, Float(1))]
        }
    }

    // MARK: folders

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The entries of a folder (not . and .., nor hidden ones), sorted.
    static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw DatasetError("cannot read the folder \(path): \(String(cString: strerror(errno)))") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if !name.hasPrefix(".") { names.append(name) }
        }
        return names.sorted()
    }

    static func listFolders(_ path: String) throws -> [String] {
        try list(path).filter { isDirectory(path + "/" + $0) }
    }
}
