import FedPiFederation
import FedPiTraining
import ArgumentParser
import FedPiEngine
import FedPiWire

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Inspect and convert model and update files (safetensors).",
        subcommands: [InspectModel.self, ConvertModel.self, BenchModel.self])
}

struct InspectModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "List the tensors (name, dtype, shape, bytes) and metadata of a safetensors file.")

    @Argument(help: ArgumentHelp("A .safetensors file.", valueName: "file"))
    var file: String

    func run() throws {
        let bytes = try FileIO.read(file)
        let f = try SafetensorsFile.decode(bytes)
        print("\(file): \(bytes.count) bytes, \(f.tensors.count) tensors, \(f.payload.count) data bytes")
        var total = 0
        for t in f.tensors {
            total += t.elementCount
            print("  " + Format.padRight(t.name, 16) + Format.padRight(t.dtype.rawValue, 6)
                  + Format.padRight("[" + t.shape.map(String.init).joined(separator: ", ") + "]", 18)
                  + Format.padLeft(String(t.dataRange.count), 10) + " bytes")
        }
        print("  \(total) values")
        if !f.metadata.isEmpty {
            print("metadata:")
            for (k, v) in f.metadata.sorted(by: { $0.key < $1.key }) { print("  \(k) = \(v.clipped(200))") }
        }
        switch ModelFile.checksumMatches(f) {
        case true?: print("checksum: matches")
        case false?:
            print("checksum: MISMATCH: the data is not what was written (corrupted file)")
            throw ExitCode(1)
        case nil: print("checksum: none in the file (not written by FedPi)")
        }
    }
}

struct ConvertModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Re-encode every tensor of a safetensors file as f32, f16 or i8 (per-tensor scale).",
        discussion: "The model id, kind, round and examples are kept; encoding, scales, layout and checksum are written anew. Example: fedpi model convert --to f16 model.safetensors model-f16.safetensors")

    @Option(help: ArgumentHelp("Target encoding: f32, f16 or i8.", valueName: "encoding"))
    var to: String

    @Option(help: "Seed for i8 stochastic rounding.")
    var seed: UInt64 = 0

    @Argument(help: ArgumentHelp("Input file.", valueName: "in"))
    var input: String

    @Argument(help: ArgumentHelp("Output file (written atomically).", valueName: "out"))
    var output: String

    func validate() throws {
        guard Encoding(rawValue: to) != nil else { throw ValidationError("--to must be f32, f16 or i8") }
    }

    func run() throws {
        let f = try SafetensorsFile.decode(try FileIO.read(input))
        // never launder corruption into a new file with a fresh, valid checksum
        try ModelFile.verifyChecksum(f)
        var values: [Float] = []
        var layout: [ParameterInfo] = []
        for t in f.tensors {
            let start = values.count
            values += [Float](repeating: 0, count: t.elementCount)
            try values.withUnsafeMutableBufferPointer { (b: inout UnsafeMutableBufferPointer<Float>) throws(WireError) in
                try ModelFile.floatValues(of: t, in: f, into: b.baseAddress! + start)
            }
            layout.append(ParameterInfo(name: t.name, shape: t.shape, offset: start))
        }
        let header = f.metadata
        let bytes = values.withUnsafeBufferPointer {
            ModelFile.encode($0, layout: layout, model: header["model"] ?? "unknown", encoding: Encoding(rawValue: to)!,
                             kind: ContentKind(rawValue: header["kind"] ?? "") ?? .weights,
                             round: Int(header["round"] ?? "") ?? 0, examples: Int(header["examples"] ?? "") ?? 0, seed: seed)
        }
        try FileIO.writeAtomically(bytes, to: output)
        print("\(output): \(to), \(bytes.count) bytes (\(input): \(f.payload.count) data bytes)")
    }
}
