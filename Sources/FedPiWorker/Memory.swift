/// glibc keeps freed memory in per-thread arenas; a worker that trains once a round gives it back.
public enum Memory {
    /// Fewer malloc arenas (the NIO and training threads would otherwise each grow their own), and a
    /// fixed mmap threshold: by default glibc raises the threshold to the size of each large block
    /// freed, so after the first round the model-sized buffers (4.8 MB) came from the arenas, which
    /// fragment and kept growing a worker's peak round after round (57 → 81 MiB over 20 rounds).
    /// With the threshold fixed, every buffer of 256 KiB or more is its own mapping and goes back to
    /// the system when freed.
    public static func configureAllocator() {
        #if os(Linux) && !canImport(Musl)
        _ = glibcMallopt(-8, 2)  // M_ARENA_MAX
        _ = glibcMallopt(-3, 256 << 10)  // M_MMAP_THRESHOLD (setting it turns the dynamic adjustment off)
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
