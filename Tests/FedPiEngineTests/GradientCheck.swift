import XCTest

@testable import FedPiEngine

/// Finite-difference checks: the analytic gradient of f = Σ y·r (r a fixed random tensor) against
/// central differences, for a layer's input and each of its parameters.
struct GradientCheck {
    var step: Float = 1e-2
    /// |analytic − numeric| ≤ tolerance · max(1, |analytic|, |numeric|)
    var tolerance: Float = 1e-2
    /// At most this many coordinates of each tensor are probed (chosen at random).
    var probes = 60

    /// `makeInput` must return the same values each call (layers such as ReLU work in place).
    func check(_ layer: Layer, inputShape: [Int], makeInput: () -> [Float], seed: UInt64 = 11,
               before: () -> Void = {}, file: StaticString = #filePath, line: UInt = #line) {
        var g = SeededGenerator(seed: seed)
        let store = bindRandomParameters(layer, seed: seed &+ 1)
        let entries = store.entries

        let x0 = makeInput()
        var x0Current = x0
        var r: [Float] = []
        func f() -> Double {
            before()
            let y = layer.forward(Tensor(shape: inputShape, values: x0Current), training: true)
            var s = 0.0
            for i in 0..<y.count { s += Double(y.data[i]) * Double(r[i]) }
            return s
        }
        before()
        let input = Tensor(shape: inputShape, values: x0)
        let y = layer.forward(input, training: true)
        r = (0..<y.count).map { _ in g.nextUnitFloat() * 2 - 1 }
        let gradOut = Tensor(shape: y.shape, values: r)
        let dx = layer.backward(gradOut, inputGradient: true).map { $0.array }
        let analyticParams = Array(UnsafeBufferPointer(start: store.gradients, count: store.count))
        XCTAssertEqual(dx?.count, x0.count, "input gradient missing or misshapen", file: file, line: line)

        func compare(_ analytic: Float, _ numeric: Float, _ what: String) {
            let scale = max(1, abs(analytic), abs(numeric))
            XCTAssertLessThanOrEqual(abs(analytic - numeric), tolerance * scale,
                                     "\(layer.name) \(what): analytic \(analytic) numeric \(numeric)", file: file, line: line)
        }
        for i in probeIndices(x0.count, &g) {
            x0Current = x0; x0Current[i] += step
            let plus = f()
            x0Current = x0; x0Current[i] -= step
            let minus = f()
            x0Current = x0
            compare(dx?[i] ?? .nan, Float((plus - minus) / Double(2 * step)), "d/dx[\(i)]")
        }
        for e in entries {
            for j in probeIndices(e.count, &g) {
                let k = e.offset + j, saved = store.values[k]
                store.values[k] = saved + step
                let plus = f()
                store.values[k] = saved - step
                let minus = f()
                store.values[k] = saved
                compare(analyticParams[k], Float((plus - minus) / Double(2 * step)), "d/d\(e.name)[\(j)]")
            }
        }
    }

    private func probeIndices(_ n: Int, _ g: inout SeededGenerator) -> [Int] {
        if n <= probes { return Array(0..<n) }
        return (0..<probes).map { _ in Int(g.next() % UInt64(n)) }
    }
}

/// Gives a lone layer a parameter store of its own, filled with U(−1, 1) values from `seed`.
@discardableResult
func bindRandomParameters(_ layer: Layer, seed: UInt64) -> ParameterStore {
    var entries: [ParameterInfo] = [], offsets: [Int] = [], offset = 0
    for r in layer.parameterRequests {
        entries.append(ParameterInfo(name: layer.name + "." + r.suffix, shape: r.shape, offset: offset))
        offsets.append(offset)
        offset += r.shape.reduce(1, *)
    }
    let store = ParameterStore(entries: entries)
    layer.bind(store: store, offsets: offsets)
    var g = SeededGenerator(seed: seed)
    for i in 0..<store.count { store.values[i] = g.nextUnitFloat() * 2 - 1 }
    return store
}
