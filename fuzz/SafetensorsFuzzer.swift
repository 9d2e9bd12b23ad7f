// libFuzzer target for the safetensors decoder (and its JSON parser), built by fuzz/run.sh with
// -sanitize=fuzzer,address. Every input must be accepted or rejected with a WireError: no crash, no
// trap, no memory error; an accepted file must tile its payload exactly.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let file = try? SafetensorsFile.decode(bytes) {
        let covered = file.tensors.reduce(0) { $0 + $1.dataRange.count }
        precondition(covered == file.payload.count, "accepted file does not tile its payload")
        for t in file.tensors { _ = file.bytes(of: t).count }
    }
    return 0
}
