import XCTest

@testable import FedPiEngine

final class ModelZooTests: XCTestCase {
    func testMNISTCNNMatchesPyTorchStateDict() throws {
        let m = try ModelZoo.make("mnist-cnn")
        XCTAssertEqual(m.parameterCount, 1_199_882)
        // names, order and shapes of PyTorch's examples/mnist Net().state_dict()
        XCTAssertEqual(m.parameters.entries.map(\.name), ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        XCTAssertEqual(m.parameters.entries.map(\.shape), [[32, 1, 3, 3], [32], [64, 32, 3, 3], [64], [128, 9216], [128], [10, 128], [10]])
    }

    func testMNISTMLP() throws {
        let m = try ModelZoo.make("mnist-mlp")
        XCTAssertEqual(m.parameterCount, 199_210)
        XCTAssertEqual(m.parameters.entries.map(\.shape), [[200, 784], [200], [200, 200], [200], [10, 200], [10]])
    }

    /// The X-ray models: the parameter names and shapes of bench/torch_xray_cnn.py's XrayCNN (whose
    /// PyTorch parameter counts are 318,594 and 355,522), two classes, grayscale input of 64 or 128.
    func testXrayCNNsMatchTheirPyTorchModule() throws {
        let small = try ModelZoo.make("xray-cnn"), large = try ModelZoo.make("xray-cnn-128")
        XCTAssertEqual(small.parameterCount, 318_594)
        XCTAssertEqual(large.parameterCount, 355_522)
        XCTAssertEqual(small.inputShape, [64, 64, 1])
        XCTAssertEqual(large.inputShape, [128, 128, 1])
        XCTAssertEqual([small.classes, large.classes], [2, 2])
        XCTAssertEqual(large.parameters.entries.map(\.name), ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias",
                                                           "conv4.weight", "conv4.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        XCTAssertEqual(small.parameters.entries.map(\.shape), [[16, 1, 3, 3], [16], [32, 16, 3, 3], [32], [64, 32, 3, 3], [64],
                                                              [128, 2304], [128], [2, 128], [2]])
        let out = large.forward(Tensor(shape: [3, 128, 128, 1]), training: false)
        XCTAssertEqual(out.shape, [3, 2])
        XCTAssertTrue(ModelZoo.lightOnDark("mnist-cnn") && !ModelZoo.lightOnDark("xray-cnn"))
    }

    func testUnknownModelIsAClearError() {
        XCTAssertThrowsError(try ModelZoo.make("resnet")) { error in
            XCTAssertEqual(String(describing: error), "unknown model 'resnet'; known models: mnist-cnn, mnist-mlp, xray-cnn, xray-cnn-128")
        }
    }

    func testShapeMismatchIsReportedAtConstruction() {
        XCTAssertThrowsError(try Model(id: "bad", inputShape: [28, 28, 1], classes: 10, normalization: .init(mean: 0, std: 1),
                                       layers: [Flatten(), Dense("fc", inputs: 100, outputs: 10)], seed: 1)) { error in
            XCTAssertTrue(String(describing: error).contains("fc: expects 100 input features"), "\(error)")
        }
    }

    func testInitialisationIsSeededAndFollowsPyTorchBounds() throws {
        let a = try ModelZoo.make("mnist-cnn", seed: 1), b = try ModelZoo.make("mnist-cnn", seed: 1), c = try ModelZoo.make("mnist-cnn", seed: 2)
        XCTAssertEqual(a.parameters.flatValues, b.parameters.flatValues)
        XCTAssertNotEqual(a.parameters.flatValues, c.parameters.flatValues)
        // kaiming_uniform(a=√5) ⇒ U(±1/√fan_in); fan_in of fc1 is 9216
        let fc1 = a.parameters.values(of: "fc1.weight")!
        let bound = 1 / Float(9216).squareRoot()
        XCTAssertLessThanOrEqual(fc1.map(abs).max()!, bound)
        XCTAssertGreaterThan(fc1.map(abs).max()!, bound * 0.99)
        let mean = fc1.reduce(0, +) / Float(fc1.count)
        XCTAssertEqual(mean, 0, accuracy: bound * 0.01)
    }

    func testRandomStreamsAreIndependentAndGammaHasTheRightMean() {
        var a = SeededGenerator(seed: 1, stream: "init"), b = SeededGenerator(seed: 1, stream: "shuffle")
        XCTAssertNotEqual(a.next(), b.next())
        var g = SeededGenerator(seed: 8)
        for shape in [0.1, 0.5, 2.0, 10.0] {
            let n = 20000
            let mean = (0..<n).map { _ in g.nextGamma(shape: shape) }.reduce(0, +) / Double(n)
            XCTAssertEqual(mean, shape, accuracy: 0.05 * max(shape, 1), "Gamma(\(shape))")
        }
    }
}
