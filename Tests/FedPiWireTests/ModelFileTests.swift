import FedPiEngine
import FedPiTesting
import Foundation
import XCTest

@testable import FedPiWire

final class ModelFileTests: XCTestCase {
    let model = try! ModelZoo.make("mnist-cnn", seed: 3)
    var layout: [ParameterInfo] { model.parameters.entries }
    lazy var values: [Float] = model.parameters.flatValues

    func encode(_ encoding: Encoding, _ v: [Float]? = nil, kind: ContentKind = .weights, seed: UInt64 = 0) -> [UInt8] {
        (v ?? values).withUnsafeBufferPointer {
            ModelFile.encode($0, layout: layout, model: "mnist-cnn", encoding: encoding, kind: kind, round: 7, examples: 1234, seed: seed)
        }
    }

    func assertRejects(_ bytes: [UInt8], _ text: String, line: UInt = #line) {
        XCTAssertThrowsError(try ModelFile.decode(bytes, expecting: layout, model: "mnist-cnn"), line: line) { error in
            XCTAssertTrue(String(describing: error).contains(text), "'\(error)' lacks '\(text)'", line: line)
        }
    }

    func testF32RoundTripIsExactAndCarriesMetadata() throws {
        let (back, header) = try ModelFile.decode(encode(.f32, kind: .delta), expecting: layout, model: "mnist-cnn")
        XCTAssertEqual(back, values)
        XCTAssertEqual(header.round, 7)
        XCTAssertEqual(header.examples, 1234)
        XCTAssertEqual(header.encoding, .f32)
        XCTAssertEqual(header.kind, .delta)
    }

    /// An update's origin and training time are typed header fields, written when it is encoded (the
    /// worker no longer decodes and re-encodes its update to add them); a value that is not a finite,
    /// non-negative time reads as nil.
    func testOriginAndTrainingTimeAreHeaderFields() throws {
        let bytes = values.withUnsafeBufferPointer {
            ModelFile.encode($0, layout: layout, model: "mnist-cnn", encoding: .f16, kind: .delta, round: 3, examples: 9,
                             global: "abc123", trainSeconds: 12.5)
        }
        let (_, header) = try ModelFile.decode(bytes, expecting: layout, model: "mnist-cnn")
        XCTAssertEqual(header.global, "abc123")
        XCTAssertEqual(header.trainSeconds, 12.5)
        XCTAssertNil(try ModelFile.decode(encode(.f16), expecting: layout, model: "mnist-cnn").header.trainSeconds)
        for bad in ["-1", "nan", "inf", "1e400", "twelve"] {
            let b = values.withUnsafeBufferPointer {
                ModelFile.encode($0, layout: layout, model: "mnist-cnn", encoding: .f16, extra: ["train_seconds": bad])
            }
            XCTAssertNil(try ModelFile.decode(b, expecting: layout, model: "mnist-cnn").header.trainSeconds, bad)
        }
    }

    func testF16AndI8ErrorsAreBounded() throws {
        let v = values
        let (h, _) = try ModelFile.decode(encode(.f16), expecting: layout, model: "mnist-cnn")
        for (a, b) in zip(v, h) { XCTAssertLessThanOrEqual(abs(a - b), max(abs(a) * 0x1p-11, 0x1p-25)) }
        let (q, _) = try ModelFile.decode(encode(.i8), expecting: layout, model: "mnist-cnn")
        for e in layout {
            let part = v[e.offset..<(e.offset + e.count)]
            let scale = part.map(abs).max()! / 127
            for i in part.indices { XCTAssertLessThanOrEqual(abs(v[i] - q[i]), scale * 1.0001) }
        }
    }

    /// Stochastic rounding is unbiased: the mean of many i8 encodings approaches the value.
    func testI8StochasticRoundingIsUnbiased() throws {
        let small = try ModelZoo.make("mnist-mlp", seed: 1)
        let lay = small.parameters.entries, v = small.parameters.flatValues
        let e = lay[0], probe = e.offset..<(e.offset + 20_000)  // part of fc1.weight
        var mean = [Double](repeating: 0, count: v.count)
        let runs = 100
        for s in 0..<runs {
            let bytes = v.withUnsafeBufferPointer { ModelFile.encode($0, layout: lay, model: "mnist-mlp", encoding: .i8, seed: UInt64(s)) }
            let (q, _) = try ModelFile.decode(bytes, expecting: lay, model: "mnist-mlp")
            for i in probe { mean[i] += Double(q[i]) / Double(runs) }
        }
        let scale = Double(v[e.offset..<(e.offset + e.count)].map(abs).max()! / 127)
        var worstBias = 0.0
        for i in probe { worstBias = max(worstBias, abs(mean[i] - Double(v[i]))) }
        XCTAssertLessThan(worstBias, scale * 0.3)  // ≈ 6 standard errors of a 100-sample mean
        let total = probe.reduce(0.0) { $0 + mean[$1] - Double(v[$1]) } / Double(probe.count)
        XCTAssertLessThan(abs(total), scale * 0.01)
    }

    /// A small update sent as an f16 delta is reconstructed far more precisely than the weights
    /// themselves would be in f16: the rounding error scales with the delta, not the weight.
    func testF16DeltaKeepsSmallUpdatesPrecise() throws {
        var g = SeededGenerator(seed: 4)
        let global = values
        let local = global.map { $0 + (g.nextUnitFloat() - 0.5) * 1e-3 }
        let d = ModelFile.delta(local, from: global)
        let bytes = encode(.f16, d, kind: .delta)
        let (decoded, header) = try ModelFile.decode(bytes, expecting: layout, model: "mnist-cnn")
        XCTAssertEqual(header.kind, .delta)
        let rebuilt = ModelFile.apply(decoded, to: global)
        let deltaError = zip(rebuilt, local).map { abs($0 - $1) }.max()!
        let (weightsF16, _) = try ModelFile.decode(encode(.f16, local), expecting: layout, model: "mnist-cnn")
        let weightsError = zip(weightsF16, local).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(deltaError, 1e-6)
        XCTAssertLessThan(deltaError * 10, weightsError)
    }

    func testSizes() {
        let f32 = encode(.f32).count, f16 = encode(.f16).count, i8 = encode(.i8).count
        let payload = model.parameterCount * 4
        XCTAssertLessThan(f32 - payload, 2048, "header stays small")
        XCTAssertLessThanOrEqual(Double(f16), 0.5 * Double(payload) + 2048)
        XCTAssertLessThanOrEqual(Double(i8), 0.26 * Double(f32))
    }

    func testRejectsWrongModelShapesNamesAndValues() {
        // a tensor with the wrong shape: mnist-mlp's file offered as mnist-cnn
        let mlp = try! ModelZoo.make("mnist-mlp")
        let other = mlp.parameters.flatValues.withUnsafeBufferPointer {
            ModelFile.encode($0, layout: mlp.parameters.entries, model: "mnist-mlp", encoding: .f16)
        }
        assertRejects(other, "file is for model mnist-mlp, expected mnist-cnn")
        // names and shapes only (no FedPi metadata), as a Python writer would produce
        func plain(_ tensors: [(String, [Int])]) -> [UInt8] {
            SafetensorsFile.encode(tensors.map { ($0.0, DType.f32, $0.1, [UInt8](repeating: 0, count: $0.1.reduce(1, *) * 4)) }, metadata: [:])
        }
        var shapes = layout.map { ($0.name, $0.shape) }
        XCTAssertNoThrow(try ModelFile.decode(plain(shapes), expecting: layout, model: "mnist-cnn"))
        shapes[2].1 = [64, 32, 5, 5]
        assertRejects(plain(shapes), "tensor conv2.weight has shape [64, 32, 5, 5], expected [64, 32, 3, 3]")
        assertRejects(plain(Array(layout.map { ($0.name, $0.shape) }.dropLast())), "missing tensor fc2.bias")
        assertRejects(plain(layout.map { ($0.name, $0.shape) } + [("extra", [1])]), "unexpected tensor extra")

        for bad in [Float.nan, .infinity, -.infinity] {
            var v = values
            v[100] = bad
            assertRejects(encode(.f32, v), "values must be finite")
            assertRejects(encode(.f16, v), "values must be finite")
        }
        var big = values
        big[5] = 1e6  // beyond f16's range: becomes inf on the wire, rejected on arrival
        assertRejects(encode(.f16, big), "values must be finite")
    }

    func testChecksumAndScaleAreVerified() {
        var bytes = encode(.f16)
        bytes[bytes.count - 3] ^= 0x40
        assertRejects(bytes, "checksum mismatch")
        // i8 without its scale: drop scale.* keys by rewriting the file
        let f = try! SafetensorsFile.decode(encode(.i8))
        var meta = f.metadata.filter { !$0.key.hasPrefix("scale.") }
        meta["checksum"] = nil
        let rebuilt = SafetensorsFile.encode(f.tensors.map { ($0.name, $0.dtype, $0.shape, Array(f.bytes(of: $0))) }, metadata: meta)
        assertRejects(rebuilt, "has no scale.")
    }

    /// i8 files written with `scale.<name>` replaced by `text`.
    func i8File(scale name: String, _ text: String) -> [UInt8] {
        let f = try! SafetensorsFile.decode(encode(.i8))
        var meta = f.metadata
        meta["scale." + name] = text
        meta["checksum"] = nil
        return SafetensorsFile.encode(f.tensors.map { ($0.name, $0.dtype, $0.shape, Array(f.bytes(of: $0))) }, metadata: meta)
    }

    /// One scale per row of the first dimension; a row of large values no longer coarsens the others.
    func testI8HasAScalePerRowAndSmallRowsKeepTheirPrecision() throws {
        let file = try SafetensorsFile.decode(encode(.i8))
        for e in layout {
            let scales = file.metadata["scale." + e.name]!.split(separator: ",")
            XCTAssertEqual(scales.count, e.shape.count >= 2 ? e.shape[0] : 1, e.name)
        }
        // fc1.weight with row 0 a hundred times larger than the rest
        var v = values
        let fc1 = layout.first { $0.name == "fc1.weight" }!
        let width = fc1.count / fc1.shape[0]
        for i in fc1.offset..<(fc1.offset + width) { v[i] *= 100 }
        let (q, _) = try ModelFile.decode(encode(.i8, v), expecting: layout, model: "mnist-cnn")
        let tensorStep = v[fc1.offset..<(fc1.offset + fc1.count)].map(abs).max()! / 127
        let rest = (fc1.offset + width)..<(fc1.offset + fc1.count)
        let worst = rest.map { abs(v[$0] - q[$0]) }.max()!
        XCTAssertLessThan(worst, tensorStep / 20, "rows after the large one keep their own, finer step")
        for r in 1..<fc1.shape[0] {
            let row = (fc1.offset + r * width)..<(fc1.offset + (r + 1) * width)
            let step = row.map { abs(v[$0]) }.max()! / 127
            for i in row { XCTAssertLessThanOrEqual(abs(v[i] - q[i]), step * 1.0001) }
        }
    }

    /// Files from before per-row scales (one scale per tensor) still decode; wrong counts and bad
    /// numbers are refused with the tensor's name.
    func testI8ScaleListsAreValidated() throws {
        let name = "conv1.weight"  // 32 rows
        let single = i8File(scale: name, "0.001")
        let (values, _) = try ModelFile.decode(single, expecting: layout, model: "mnist-cnn")
        let file = try SafetensorsFile.decode(single)
        let t = file.tensor(name)!, e = layout.first { $0.name == name }!
        for (i, b) in file.bytes(of: t).enumerated() { XCTAssertEqual(values[e.offset + i], Float(Int8(bitPattern: b)) * 0.001) }
        assertRejects(i8File(scale: name, "0.1,0.2,0.3"), "conv1.weight has 3 scales in scale.conv1.weight; expected 1 or 32")
        assertRejects(i8File(scale: name, Array(repeating: "0.1", count: 31).joined(separator: ",") + ",nan"), "invalid scale 'nan'")
        assertRejects(i8File(scale: name, "-1"), "invalid scale '-1'")
        assertRejects(i8File(scale: name, ""), "invalid scale ''")
        assertRejects(i8File(scale: name, "0.1,"), "has 2 scales")
    }

    /// The worker's delta: subtracting a file in place equals subtracting its decoded values, for every
    /// encoding, and a corrupted file is refused like `decode` refuses it.
    func testSubtractInPlaceEqualsSubtractingTheDecodedValues() throws {
        var g = SystemRandomNumberGenerator()
        let trained = values.map { $0 + Float.random(in: -0.1...0.1, using: &g) }
        for encoding in [Encoding.f32, .f16, .i8] {
            let bytes = encode(encoding, seed: 5)
            let decoded = try ModelFile.decode(bytes, expecting: layout, model: "mnist-cnn").values
            var w = trained
            try w.withUnsafeMutableBufferPointer { try ModelFile.subtract(bytes, expecting: layout, model: "mnist-cnn", from: $0) }
            XCTAssertEqual(w, zip(trained, decoded).map { $0 - $1 }, "\(encoding)")
        }
        var corrupt = encode(.f16)
        corrupt[corrupt.count - 3] ^= 0x40
        var w = trained
        XCTAssertThrowsError(try w.withUnsafeMutableBufferPointer { try ModelFile.subtract(corrupt, expecting: layout, model: "mnist-cnn", from: $0) }) {
            XCTAssertTrue("\($0)".contains("checksum"), "\($0)")
        }
    }

    /// A killed writer leaves `FILE.tmp-PID`; the next start removes it, and nothing else.
    func testLeftoversOfKilledWritersAreRemovedAndNothingElse() throws {
        let dir = IDXFixtures.temporaryDirectory("fedpi-leftovers")
        let finished = Process()
        finished.executableURL = URL(fileURLWithPath: "/bin/true")
        try finished.run()
        finished.waitUntilExit()
        let dead = finished.processIdentifier
        // "model" first: writing it goes through model.tmp-PID of this process
        let names = ["model", "model.tmp-\(dead)", "model.tmp-\(getpid())", "model.tmp-1", "model.tmp-abc", "other.tmp-\(dead)"]
        for n in names { try FileIO.writeAtomically([1, 2, 3], to: dir + "/" + n) }
        XCTAssertEqual(FileIO.removeLeftovers(of: dir + "/model"), 2)  // the dead writer's and this process's own
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["model.tmp-1", "model.tmp-abc", "other.tmp-\(dead)", "model"])
        XCTAssertEqual(FileIO.removeLeftovers(of: dir + "/absent/model"), 0)
    }
}
