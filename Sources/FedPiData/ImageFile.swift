import FedPiEngine
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Images kept in a file instead of in memory: a worker writes its shard's pixels once to its state
/// directory (`count × height × width` bytes, row-major) and reads each sample with `pread` as
/// batches are filled. Only the labels stay in the process; the pixels live in the kernel's page
/// cache, which the kernel can drop under memory pressure and read again, where a board's anonymous
/// memory could only be swapped or killed. (24,000 Fashion-MNIST images: 18.8 MB out of the worker's
/// resident memory.)
public final class ImageFile: BatchProvider, @unchecked Sendable {
    public let path: String
    public let height: Int
    public let width: Int
    public let labels: [UInt8]
    private let fd: Int32
    private let failure = Mutex<String?>(nil)

    /// Opens the pixels of `labels.count` images of `height × width` at `path`; a file of any other
    /// size is refused here, not halfway through training.
    public init(path: String, height: Int, width: Int, labels: [UInt8]) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DatasetError("cannot open the training shard \(path): \(String(cString: strerror(errno)))") }
        var st = stat()
        let expected = labels.count * height * width
        guard fstat(fd, &st) == 0, Int(st.st_size) == expected else {
            close(fd)
            throw DatasetError("the training shard \(path) is \(st.st_size) bytes; \(labels.count) images of \(height)x\(width) are \(expected)")
        }
        self.path = path
        self.height = height
        self.width = width
        self.labels = labels
    }

    deinit { close(fd) }

    public var count: Int { labels.count }
    public var sampleShape: [Int] { [height, width, 1] }
    public func label(at index: Int) -> Int { Int(labels[index]) }

    /// The first read that failed (the samples it should have filled are zeros), or nil.
    public var readFailure: String? { failure.withLock { $0 } }

    public func fillBatch(_ indices: ArraySlice<Int>, normalization: Model.Normalization, into input: Tensor, labels out: inout [Int32]) {
        let per = height * width
        input.resize([indices.count, height, width, 1])
        if out.count != indices.count { out = [Int32](repeating: 0, count: indices.count) }
        let table = LabeledImages.pixelTable(normalization)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: per) { sample in
            var dst = input.data
            for (k, i) in indices.enumerated() {
                if !read(sample, at: i * per) { sample.initialize(repeating: 0) }
                for p in 0..<per { dst[p] = table[Int(sample[p])] }
                dst += per
                out[k] = Int32(labels[i])
            }
        }
    }

    private func read(_ buffer: UnsafeMutableBufferPointer<UInt8>, at offset: Int) -> Bool {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            let reason = n == 0 ? "the file is shorter than its \(labels.count) samples" : String(cString: strerror(errno))
            failure.withLock { $0 = $0 ?? "reading the training shard \(path) failed: \(reason)" }
            return false
        }
        return true
    }
}
