import FedPiFederation
import FedPiTraining
import ArgumentParser
import FedPiEngine
import FedPiWire

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure file sizes and encode/decode speed of each encoding on this machine.")

    @Option(help: ArgumentHelp("Model whose weights are encoded.", valueName: "name"))
    var model: String = "mnist-cnn"

    @Option(help: "Repetitions per measurement (the best is reported).")
    var repetitions: Int = 20

    func run() throws {
        let net = try ModelZoo.make(model, seed: 1)
        let layout = net.parameters.entries, values = net.parameters.flatValues
        let clock = ContinuousClock()
        func best(_ body: () throws -> Void) rethrows -> Double {
            var fastest = Double.infinity
            for _ in 0..<max(1, repetitions) {
                let start = clock.now
                try body()
                let d = (clock.now - start).components
                fastest = min(fastest, Double(d.seconds) + Double(d.attoseconds) * 1e-18)
            }
            return fastest
        }
        func rate(_ elements: Int, _ seconds: Double) -> String { Format.fixed(Double(elements) / seconds / 1e9, 2) + " G values/s" }

        // raw conversion on a 16 Mi-element buffer
        let n = 1 << 24
        let big = (0..<n).map { Float($0 % 1000) * 0.001 - 0.5 }
        var half = [UInt8](repeating: 0, count: 2 * n)  // preallocated: this times conversion, not page faults
        let toHalf = best {
            half.withUnsafeMutableBytes { h in
                big.withUnsafeBufferPointer { Codecs.f16($0, into: h.baseAddress!.assumingMemoryBound(to: UInt16.self)) }
            }
        }
        var back = [Float](repeating: 0, count: n)
        let fromHalf = best { back.withUnsafeMutableBufferPointer { Codecs.floats(fromF16: half[...], into: $0.baseAddress!) } }
        print("f32 -> f16: \(rate(n, toHalf)); f16 -> f32: \(rate(n, fromHalf)) (\(Codecs.hardwareF16 ? "hardware" : "portable") path, \(n) values)")

        let f32Size = values.withUnsafeBufferPointer { ModelFile.encode($0, layout: layout, model: model, encoding: .f32) }.count
        print("\(model), \(values.count) parameters:")
        print("encoding  file bytes  vs f32   encode            decode")
        for encoding in Encoding.allCases {
            var bytes: [UInt8] = []
            let enc = best { bytes = values.withUnsafeBufferPointer { ModelFile.encode($0, layout: layout, model: model, encoding: encoding) } }
            let dec = try best { _ = try ModelFile.decode(bytes, expecting: layout, model: model) }
            print(Format.padRight(encoding.rawValue, 8) + Format.padLeft(String(bytes.count), 12)
                  + Format.padLeft(Format.fixed(Double(bytes.count) / Double(f32Size), 3) + "x", 9)
                  + "   " + Format.padRight(rate(values.count, enc), 18) + rate(values.count, dec))
        }
    }
}
