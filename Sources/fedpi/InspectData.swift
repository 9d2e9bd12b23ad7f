import ArgumentParser
import CStb
import FedPiData
import FedPiFederation
import FedPiTraining

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

struct InspectData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show the classes, per-class counts and image sizes of a data set.",
        discussion: """
            MNIST-format IDX files: the files, the image size, the count of each class per split.
            Image class folders (train/<class>/*.png|jpg, also val/, test/): the class names (label =
            position in sorted order), the count of each class per split, the image sizes found; every
            image is decoded, and one that cannot be (corrupt, empty, truncated, not an image) is listed
            with its path and skipped, as training would skip it.
            """)

    @Argument(help: ArgumentHelp("Folder of MNIST-format IDX files (raw or .gz), or of image class folders.", valueName: "dir"))
    var directory: String

    @Option(help: ArgumentHelp("List at most this many skipped files (all are counted).", valueName: "n"))
    var showSkipped = 20

    func run() throws {
        let data = try DataDirectory(directory)
        print("data set \(directory)")
        switch data.layout {
        case .idx(let dir):
            print("layout: MNIST-format IDX files")
            for split in MNISTDirectory.Split.allCases {
                let files = try dir.files(split)
                let set = try LabeledImages.load(images: files.images, labels: files.labels)
                print("\(split.rawValue): \(set.count) images of \(set.height)x\(set.width) pixels")
                print("  images: \(files.images)")
                print("  labels: \(files.labels)")
                let counts = set.classCounts()
                print("  classes: \(counts.count)")
                for c in counts {
                    print("    class \(Format.padLeft(String(c.label), 3)): \(Format.padLeft(String(c.count), 6))")
                }
            }
        case .folders(let folders):
            try inspect(folders)
        }
    }

    func inspect(_ folders: ImageFolders) throws {
        print("layout: image class folders (\(folders.splits.joined(separator: ", ")))")
        print("classes: \(folders.classNames.count): " + folders.classNames.enumerated().map { "\($0.offset) \($0.element)" }.joined(separator: ", "))
        let width = max(5, folders.classNames.map(\.count).max() ?? 0)
        var allSkipped: [ImageFolders.Skipped] = []
        for split in folders.splits {
            let (files, ignored) = try folders.files(split)
            var counts = [Int](repeating: 0, count: folders.classNames.count)
            var sizes: [String: Int] = [:]
            var skipped = ignored
            var line = ProgressLine(interval: 5)
            let start = ContinuousClock.now
            // decoded at 1x1 (the whole image is read, nothing large kept): what training would skip, this skips
            var pixel = [UInt8](repeating: 0, count: 1)
            for (done, file) in files.enumerated() {
                do {
                    try ImageFolders.decodeFile(file.path, height: 1, width: 1, into: &pixel)
                    let size = ImageFolders.size(of: file.path)!
                    sizes["\(size.width)x\(size.height)", default: 0] += 1
                    counts[Int(file.label)] += 1
                } catch {
                    skipped.append(ImageFolders.Skipped(path: file.path, reason: error.description))
                }
                line.show("\(split): \(done + 1)/\(files.count) images decoded", at: Double((ContinuousClock.now - start).components.seconds))
            }
            line.finish()
            print("\(split): \(counts.reduce(0, +)) images" + (skipped.isEmpty ? "" : ", \(skipped.count) skipped"))
            for (label, name) in folders.classNames.enumerated() {
                print("    \(Format.padLeft(String(label), 3)) \(name.padding(width)): \(Format.padLeft(String(counts[label]), 7))")
            }
            let common = sizes.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            if common.count <= 5 {
                print("  image sizes (width x height): " + common.map { "\($0.key) (\($0.value))" }.joined(separator: ", "))
            } else {
                let dims = sizes.keys.map { $0.split(separator: "x").compactMap { Int($0) } }
                let widths = dims.map { $0[0] }, heights = dims.map { $0[1] }
                print("  image sizes (width x height): \(common.count) different, \(widths.min()!)..\(widths.max()!) x \(heights.min()!)..\(heights.max()!)")
            }
            allSkipped += skipped
        }
        if !allSkipped.isEmpty {
            print("skipped \(allSkipped.count) file(s):")
            for s in allSkipped.prefix(showSkipped) { print("  \(s)") }
            if allSkipped.count > showSkipped { print("  … and \(allSkipped.count - showSkipped) more") }
        }
    }
}

struct ExportData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write an MNIST-format data set as PNG class folders (OUT/train/<class>/*.png, OUT/test/...).",
        discussion: """
            To try the image-folder path on data at hand: class folders are named by the label, zero-padded
            so that they sort in label order (0 ... 9), or by --class-names. Files are named by their index
            in the split (00000.png ...), 8-bit grayscale.
            Example: fedpi data export --data /usr/share/datasets/fashion-mnist --out /tmp/fmnist-png --limit 6000
            """)

    @OptionGroup var dataOptions: DataOptions

    @Option(help: ArgumentHelp("The folder to write (made if missing; existing files of the same name are replaced).", valueName: "dir"))
    var out: String

    @Option(help: ArgumentHelp("Write at most this many images of each split (a seeded subset, in index order).", valueName: "n"))
    var limit: Int?

    @Option(help: ArgumentHelp("Class folder names, comma-separated, one per label in order.", valueName: "names"))
    var classNames: String?

    @Option(help: "Seed of the --limit subset.")
    var seed: UInt64 = 1

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        guard case .idx(let source) = try dataOptions.directory().layout else {
            throw ValidationError("\(dataOptions.data) already holds image folders; export reads MNIST-format IDX files")
        }
        let names = classNames.map { $0.split(separator: ",").map(String.init) }
        if let names {
            guard Set(names).count == names.count, names.allSatisfy({ !$0.isEmpty && !$0.contains(Character("/")) && $0.first != "." }) else {
                throw ValidationError("--class-names must be distinct folder names (no /, not starting with .)")
            }
        }
        for split in MNISTDirectory.Split.allCases {
            let set = try source.load(split) { Partition.sample(Array($0.indices), limit: limit, seed: seed).sorted() }
            let maxLabel = Int(set.labels.max() ?? 0)
            if let names, names.count <= maxLabel {
                throw ValidationError("--class-names has \(names.count) names; the labels go up to \(maxLabel)")
            }
            let digits = String(maxLabel).count
            func folder(_ label: Int) -> String {
                names?[label] ?? String(repeating: "0", count: digits - String(label).count) + String(label)
            }
            for label in Set(set.labels.map(Int.init)) { try makeDirectory("\(out)/\(split.rawValue)/\(folder(label))") }
            let per = set.height * set.width
            let nameDigits = max(5, String(set.count - 1).count)
            var line = ProgressLine(interval: 5)
            let start = ContinuousClock.now
            for i in 0..<set.count {
                let index = String(i)
                let path = "\(out)/\(split.rawValue)/\(folder(Int(set.labels[i])))/"
                    + String(repeating: "0", count: max(0, nameDigits - index.count)) + index + ".png"
                let ok = set.pixels.withUnsafeBufferPointer {
                    stbi_write_png(path, Int32(set.width), Int32(set.height), 1, $0.baseAddress! + i * per, Int32(set.width))
                }
                guard ok != 0 else { throw ValidationError("cannot write \(path)") }
                line.show("\(split.rawValue): \(i + 1)/\(set.count) images written", at: Double((ContinuousClock.now - start).components.seconds))
            }
            line.finish()
            print("\(split.rawValue): \(set.count) images of \(set.height)x\(set.width) in \(out)/\(split.rawValue)")
        }
    }

    func makeDirectory(_ path: String) throws {
        var built = ""
        for part in path.split(separator: "/", omittingEmptySubsequences: false) {
            built += (built.isEmpty && path.hasPrefix("/") ? "" : (built.isEmpty ? "" : "/")) + part
            guard !built.isEmpty else { built = "/"; continue }
            if mkdir(built, 0o755) != 0 && errno != EEXIST { throw ValidationError("cannot make \(built): \(String(cString: strerror(errno)))") }
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}
