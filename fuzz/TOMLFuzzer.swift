// libFuzzer target for FedPi's TOML reader (worker.toml, fleet.toml), built by fuzz/run.sh with
// -sanitize=fuzzer,address. Every input must parse or be refused with a TOMLError: no crash, no
// trap, no memory error, no runaway nesting.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTOML(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let table = try? TOML.parse(text) {
        // an accepted document can be walked
        var stack: [TOMLValue] = table.keys.compactMap { table[$0] }
        var seen = 0
        while let v = stack.popLast(), seen < 100_000 {
            seen += 1
            if let a = v.array { stack += a }
            if let t = v.table { stack += t.keys.compactMap { t[$0] } }
        }
    }
    return 0
}
