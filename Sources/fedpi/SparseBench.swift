import ArgumentParser
import FedPiFederation
import FedPiTraining
import FedPiEngine

/// The figures behind `Conv2D.sparseLimit` and `Dense.sparseLimit`: mnist-cnn's conv2 and fc1 backward
/// passes with the sparse path off and forced, on output gradients of given densities.
struct BenchSparse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sparse-bench",
        abstract: "Time mnist-cnn's conv2 and fc1 backward passes, dense and over the output gradient's nonzeros, at several densities.",
        discussion: """
            One core. conv2: 16 samples, Winograd (dense) against the sparse pass. fc1: one batch of 64 \
            as four micro-batches of 16 (the input gradients, then the weight gradient once; the forward \
            passes are not timed), OpenBLAS (dense) against the sparse products. Random inputs and gradients; each figure is the best \
            of --repetitions. In training, after max pooling, ReLU and dropout, 7–11% of conv2's \
            output gradient and ~18% of fc1's are nonzero.
            """)

    @Option(help: ArgumentHelp("Densities of nonzero output-gradient values, comma-separated.", valueName: "list"))
    var densities: String = "0.05,0.1,0.15,0.2,0.3,0.5"

    @Option(help: "Repetitions per measurement (the best is reported).")
    var repetitions: Int = 10

    func run() throws {
        let levels = try densities.split(separator: ",").map { part -> Double in
            guard let d = Double(part.filter { $0 != " " }), d >= 0, d <= 1 else {
                throw ValidationError("--densities: '\(part)' is not a number from 0 to 1")
            }
            return d
        }
        GEMM.threads = 1
        let net = try ModelZoo.make("mnist-cnn", seed: 1)
        guard let conv = net.layers.first(where: { $0.name == "conv2" }) as? Conv2D,
              let fc = net.layers.first(where: { $0.name == "fc1" }) as? Dense else {
            throw ValidationError("mnist-cnn has no conv2 or fc1")
        }
        var g = SeededGenerator(seed: 1)
        let n = 16
        let x = Tensor(shape: [n, 26, 26, conv.inputChannels], values: (0..<(n * 26 * 26 * conv.inputChannels)).map { _ in
            max(0, g.nextUnitFloat() - 0.5)
        })
        let features = (0..<4).map { _ in
            Tensor(shape: [n, fc.inputs], values: (0..<(n * fc.inputs)).map { _ in max(0, g.nextUnitFloat() - 0.5) })
        }
        let clock = ContinuousClock()
        func seconds(_ body: () -> Void) -> Double {
            let start = clock.now
            body()
            let d = (clock.now - start).components
            return Double(d.seconds) + Double(d.attoseconds) * 1e-18
        }
        func best(_ body: () -> Void) -> Double {
            (0..<max(1, repetitions)).map { _ in seconds(body) }.min()!
        }
        func gradient(_ shape: [Int], _ density: Double) -> Tensor {
            Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in
                g.nextUnitDouble() < density ? g.nextUnitFloat() - 0.5 : 0
            })
        }
        print("µs per sample, one core    conv2 (16 samples)              fc1 (a batch of 64)")
        print("nonzero   dense  sparse  ratio       dense  sparse  ratio")
        for density in levels {
            let dyConv = gradient([n] + (try conv.outputShape(forInput: [26, 26, conv.inputChannels])), density)
            var convTimes: [Double] = []
            for limit in [0, 1] {
                conv.sparseLimit = limit
                _ = conv.forward(x, training: true)
                conv.beginBatch()
                convTimes.append(best { _ = conv.backward(dyConv, inputGradient: true) } / Double(n) * 1e6)
                conv.endBatch()
            }
            let dyFc = (0..<4).map { _ in gradient([n, fc.outputs], density) }
            var fcTimes: [Double] = []
            for limit in [0, 1] {
                fc.sparseLimit = limit
                var fastest = Double.infinity
                for _ in 0..<max(1, repetitions) {
                    // the backward passes and the batch's weight gradient (endBatch) only
                    var spent = 0.0
                    fc.beginBatch()
                    for (f, dy) in zip(features, dyFc) {
                        _ = fc.forward(f, training: true)
                        spent += seconds { _ = fc.backward(dy, inputGradient: true) }
                    }
                    spent += seconds { fc.endBatch() }
                    fastest = min(fastest, spent)
                }
                fcTimes.append(fastest / Double(4 * n) * 1e6)
            }
            func row(_ t: [Double]) -> String {
                Format.padLeft(Format.fixed(t[0], 1), 8) + Format.padLeft(Format.fixed(t[1], 1), 8)
                    + Format.padLeft(Format.fixed(t[1] / t[0], 2) + "x", 7)
            }
            print(Format.padLeft(Format.fixed(density * 100, 1) + "%", 7) + row(convTimes) + "    " + row(fcTimes))
        }
    }
}
