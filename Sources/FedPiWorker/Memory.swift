/// glibc keeps freed memory in per-thread arenas; a worker that trains once a round gives it back.
public enum Memory {
    /// Fewer malloc arenas: the NIO and training threads would otherwise each grow their own.
    public static func limitArenas() {
        #if os(Linux) && !canImport(Musl)
        _ = glibcMallopt(-8, 2)  // M_ARENA_MAX
        #endif
    }

    public static func releaseFreePages() {
        #if os(Linux) && !canImport(Musl)
        _ = glibcMallocTrim(0)
        #endif
    }
}

#if os(Linux) && !canImport(Musl)
// <malloc.h> is not part of Swift's Glibc module
@_silgen_name("mallopt") private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
@_silgen_name("malloc_trim") private func glibcMallocTrim(_ pad: Int) -> Int32
#endif
