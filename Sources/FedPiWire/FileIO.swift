#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads with a size limit and crash-safe writes, without Foundation.
public enum FileIO {
    /// Reads a file of at most `limit` bytes (checked with fstat before allocating).
    public static func read(_ path: String, limit: Int = WireLimits().maxFileBytes) throws(WireError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw WireError("\(path): cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw WireError("\(path): cannot stat: \(String(cString: strerror(errno)))") }
        let size = Int(st.st_size)
        guard size <= limit else { throw WireError("\(path): \(size) bytes is more than the \(limit >> 20) MiB limit") }
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw WireError("\(path): read failed after \(done) of \(size) bytes") }
            done += n
        }
        return out
    }

    /// Removes the temporary files `writeAtomically` left beside `path` when a process writing it was
    /// killed: `path.tmp-PID` of a PID that no longer runs, or of this process (in a container the
    /// PID repeats). Call it at start, before this process writes `path`. Returns how many.
    @discardableResult
    public static func removeLeftovers(of path: String) -> Int {
        let (dir, name) = split(path)
        let prefix = name + ".tmp-"
        guard let d = opendir(dir) else { return 0 }
        defer { closedir(d) }
        var removed = 0
        while let entry = readdir(d) {
            let file = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard file.hasPrefix(prefix), let pid = pid_t(file.dropFirst(prefix.count)) else { continue }
            let gone = pid == getpid() || (kill(pid, 0) != 0 && errno == ESRCH)
            if gone, unlink(dir + "/" + file) == 0 { removed += 1 }
        }
        return removed
    }

    /// The folder and the name of a path ("." for a bare name).
    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    /// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs
    /// the directory: after a crash the file is either the old one or the new one, never a mix.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws(WireError) {
        let temp = path + ".tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw WireError("\(temp): cannot create: \(String(cString: strerror(errno)))") }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temp)
                throw WireError("\(temp): write failed: \(reason)")
            }
            done += n
        }
        guard fsync(fd) == 0, close(fd) == 0 else {
            unlink(temp)
            throw WireError("\(temp): fsync failed: \(String(cString: strerror(errno)))")
        }
        guard rename(temp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw WireError("\(path): cannot replace: \(reason)")
        }
        let dfd = open(split(path).directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }
}
