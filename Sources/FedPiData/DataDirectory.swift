#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The `--data` folder of every program: MNIST-format IDX files (raw or gzip), or image class
/// folders (`train/<class>/*.png`, see `ImageFolders`). Which one is decided by what is in it.
public struct DataDirectory: Sendable {
    public enum Layout: Sendable {
        case idx(MNISTDirectory)
        case folders(ImageFolders)
    }

    public let path: String
    public let layout: Layout

    public init(_ path: String) throws {
        self.path = path
        layout = ImageFolders.looksLike(path) ? .folders(try ImageFolders(path)) : .idx(MNISTDirectory(path))
    }

    /// The class folder names of image folders (label = index); nil for IDX files, whose labels are
    /// the class numbers.
    public var classNames: [String]? {
        if case .folders(let f) = layout { return f.classNames }
        return nil
    }

    /// The folder split of `split`: train, and test (else val) for evaluation.
    public static func folderSplit(_ split: MNISTDirectory.Split, of folders: ImageFolders) throws -> String {
        switch split {
        case .train: return "train"
        case .test:
            guard let s = folders.evaluationSplit else { throw DatasetError("\(folders.path) has no test or val folder to evaluate on") }
            return s
        }
    }

    /// Loads a split. IDX files keep their own image size; image folders are decoded at
    /// `height × width` (the model's input), and the files skipped are passed to `skipped`.
    public func load(_ split: MNISTDirectory.Split, height: Int = 28, width: Int = 28,
                     keep: (([UInt8]) throws -> [Int])? = nil, progress: ((Int, Int) -> Void)? = nil,
                     skipped: ([ImageFolders.Skipped]) -> Void = { _ in }) throws -> LabeledImages {
        switch layout {
        case .idx(let d):
            return try d.load(split, keep: keep)
        case .folders(let f):
            let (images, bad) = try f.load(try DataDirectory.folderSplit(split, of: f), height: height, width: width, keep: keep,
                                      progress: progress)
            if !bad.isEmpty { skipped(bad) }
            return images
        }
    }

    /// One line about skipped files for a log or the terminal: how many, and the first few.
    public static func describe(_ skipped: [ImageFolders.Skipped], limit: Int = 3) -> String {
        let shown = skipped.prefix(limit).map(\.description).joined(separator: "; ")
        return "skipped \(skipped.count) file(s): \(shown)" + (skipped.count > limit ? "; …" : "")
    }
}

extension ImageFolders {
    /// A worker's training shard from image folders: the chosen images of `split`, decoded one at a
    /// time and written to `path` (`count × height × width` bytes, what `ImageFile` reads), their
    /// labels to `path.labels`. A key of the chosen files (path, size, modification time) and the
    /// size goes to `path.key`; when it matches on the next start the files are used as they are,
    /// so a restarted worker does not decode its folder again.
    public func writeShard(_ split: String, height: Int, width: Int, keep: (([UInt8]) throws -> [Int])? = nil, to path: String,
                           progress: ((Int, Int) -> Void)? = nil) throws -> (labels: [UInt8], skipped: [Skipped], reused: Bool) {
        let (all, _) = try files(split)
        let chosen = try keep?(all.map(\.label)) ?? Array(all.indices)
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ s: String) { for b in s.utf8 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 } }
        mix("fedpi-shard 1 \(height)x\(width)\n")
        for i in chosen where all.indices.contains(i) {
            var st = stat()
            _ = stat(all[i].path, &st)
            mix("\(all[i].path) \(all[i].label) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)\n")
        }
        let key = String(hash, radix: 16)
        if let stored = try? FileBytes.read(path + ".key"), String(decoding: stored, as: UTF8.self) == key,
           let labels = try? FileBytes.read(path + ".labels"), FileBytes.size(path) == labels.count * height * width {
            return (labels, [], true)
        }
        let temporary = path + ".partial"
        guard let out = fopen(temporary, "wb") else {
            throw DatasetError("cannot write the training shard \(temporary): \(String(cString: strerror(errno)))")
        }
        var labels: [UInt8] = []
        var written = true
        let skipped: [Skipped]
        do {
            skipped = try decode(split, height: height, width: width, keep: keep, progress: progress) { image, label in
                written = written && fwrite(image.baseAddress, 1, image.count, out) == image.count
                labels.append(label)
            }
        } catch {
            fclose(out)
            unlink(temporary)
            throw error
        }
        guard fclose(out) == 0, written else {
            unlink(temporary)
            throw DatasetError("writing the training shard \(temporary) failed: \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else { throw DatasetError("cannot rename \(temporary): \(String(cString: strerror(errno)))") }
        try FileBytes.write(labels, to: path + ".labels")
        try FileBytes.write(Array(key.utf8), to: path + ".key")
        return (labels, skipped, false)
    }
}

/// Small whole-file reads and writes for the shard's side files.
enum FileBytes {
    static func size(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    static func read(_ path: String, limit: Int = 64 << 20) throws -> [UInt8] {
        guard let f = fopen(path, "rb") else { throw DatasetError("cannot open \(path)") }
        defer { fclose(f) }
        guard let size = size(path), size <= limit else { throw DatasetError("\(path) is too large") }
        var bytes = [UInt8](repeating: 0, count: size)
        guard fread(&bytes, 1, size, f) == size else { throw DatasetError("cannot read \(path)") }
        return bytes
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".partial"
        guard let f = fopen(temporary, "wb") else { throw DatasetError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let ok = fwrite(bytes, 1, bytes.count, f) == bytes.count
        guard fclose(f) == 0, ok, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw DatasetError("writing \(path) failed: \(String(cString: strerror(errno)))")
        }
    }
}
