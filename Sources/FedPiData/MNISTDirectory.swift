/// A folder of MNIST-format files (MNIST, Fashion-MNIST, or anything with the same names), raw or gzip.
public struct MNISTDirectory: Sendable {
    public enum Split: String, Sendable, CaseIterable {
        case train, test
        var stem: String { self == .train ? "train" : "t10k" }
    }

    public let path: String

    public init(_ path: String) { self.path = path }

    /// The images and labels files of a split: `train-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, …
    /// with or without `.gz`, and the `train-images.idx3-ubyte` spelling some mirrors use.
    public func files(_ split: Split) throws -> (images: String, labels: String) {
        (try find(split, "images", "idx3"), try find(split, "labels", "idx1"))
    }

    /// Loads a split; `keep` (see `LabeledImages.load`) holds only the chosen samples.
    public func load(_ split: Split, keep: (([UInt8]) throws -> [Int])? = nil) throws -> LabeledImages {
        let f = try files(split)
        return try LabeledImages.load(images: f.images, labels: f.labels, keep: keep)
    }

    private func find(_ split: Split, _ kind: String, _ idx: String) throws -> String {
        let names = ["\(split.stem)-\(kind)-\(idx)-ubyte", "\(split.stem)-\(kind).\(idx)-ubyte"]
        let candidates = names.flatMap { [$0, $0 + ".gz"] }.map { path + "/" + $0 }
        if let hit = candidates.first(where: { access($0, R_OK) == 0 }) { return hit }
        throw DatasetError(
            "no \(split.rawValue) \(kind) in \(path): looked for \(names[0])[.gz]. Point --data at a folder of MNIST-format files "
                + "(Fashion-MNIST: apt-get install dataset-fashion-mnist, then --data /usr/share/datasets/fashion-mnist)")
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
