import XCTest

@testable import FedPiEngine

final class OptimizerTests: XCTestCase {
    /// A one-parameter store with value 1 and gradient 0.5.
    func store() -> ParameterStore {
        let s = ParameterStore(entries: [ParameterInfo(name: "p", shape: [1], offset: 0)])
        s.values[0] = 1
        s.gradients[0] = 0.5
        return s
    }

    func testSGDMomentumAndWeightDecayByHand() {
        let s = store()
        let sgd = SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.1)
        sgd.step(s)  // g = 0.5 + 0.1·1 = 0.6; v = 0.6; p = 1 − 0.06
        XCTAssertEqual(s.values[0], 0.94, accuracy: 1e-6)
        sgd.step(s)  // g = 0.5 + 0.094 = 0.594; v = 0.54 + 0.594 = 1.134; p = 0.94 − 0.1134
        XCTAssertEqual(s.values[0], 0.8266, accuracy: 1e-6)
    }

    func testPlainSGD() {
        let s = store()
        SGD(learningRate: 0.2).step(s)
        XCTAssertEqual(s.values[0], 0.9, accuracy: 1e-7)
    }

    func testAdamByHand() {
        // with a constant gradient the bias-corrected step is exactly lr each time
        let s = store()
        let adam = Adam(learningRate: 0.1)
        adam.step(s)
        XCTAssertEqual(s.values[0], 0.9, accuracy: 1e-6)
        adam.step(s)
        XCTAssertEqual(s.values[0], 0.8, accuracy: 1e-6)
        s.gradients[0] = -0.5  // m = 0.9·0.095 − 0.05 = 0.0355, v unchanged scale ⇒ smaller step back
        adam.step(s)
        let m = 0.9 * 0.095 - 0.05, v = 0.999 * 0.00049975 + 0.00025
        let expected = 0.8 - 0.1 * (m / (1 - pow(0.9, 3))) / ((v / (1 - pow(0.999, 3))).squareRoot() + 1e-8)
        XCTAssertEqual(Double(s.values[0]), expected, accuracy: 1e-5)
    }
}

import Foundation
