import FedPiWire
import NIOCore
import XCTest

@testable import FedPiAggregator

/// The aggregator's decoders of node answers fed extreme integers and floats, and what cannot be
/// true: each is refused with a reason, nothing traps.
final class NodeAnswerTests: XCTestCase {
    func evaluation(_ json: String) throws -> Control.Evaluation {
        try RemoteWorker.decode(Control.Evaluation.self, ByteBuffer(string: json)).check()
    }

    func testEvaluationAnswersThatCannotBeTrueAreRefused() throws {
        XCTAssertEqual(try evaluation(#"{"accuracy":0.75,"loss":0.5,"samples":200,"seconds":1}"#).samples, 200)
        XCTAssertEqual(try evaluation(#"{"accuracy":0.3333333333333333,"loss":0.5,"samples":3,"seconds":1}"#).samples, 3)
        let refused = [
            #"{"accuracy":0.5,"loss":1,"samples":9223372036854775807,"seconds":1}"#,
            #"{"accuracy":0.5,"loss":1,"samples":-9223372036854775808,"seconds":1}"#,
            #"{"accuracy":0.5,"loss":1,"samples":0,"seconds":1}"#,
            #"{"accuracy":0.5,"loss":1,"samples":1e400,"seconds":1}"#,
            #"{"accuracy":0.5,"loss":1,"samples":99999999999999999999999,"seconds":1}"#,
            #"{"accuracy":1.5,"loss":1,"samples":10,"seconds":1}"#,
            #"{"accuracy":-0.1,"loss":1,"samples":10,"seconds":1}"#,
            #"{"accuracy":0.55,"loss":1,"samples":10,"seconds":1}"#,
            #"{"accuracy":0.5,"loss":-1,"samples":10,"seconds":1}"#,
            #"{"accuracy":0.5,"loss":1e999,"samples":10,"seconds":1}"#,
            #"{"accuracy":"NaN","loss":1,"samples":10,"seconds":1}"#,
            #"{"accuracy":0.5,"loss":1,"seconds":1}"#,
            #"[]"#, "", "{", String(repeating: "[", count: 10_000),
        ]
        for json in refused {
            XCTAssertThrowsError(try evaluation(json), json.prefix(80).description) { XCTAssertTrue($0 is ControlError, "\($0)") }
        }
    }

    /// A confusion matrix in an evaluation answer must be the model's classes square, of counts that
    /// add up to the samples, with the right answers on its diagonal.
    func testConfusionMatricesThatCannotBeTrueAreRefused() throws {
        func answer(_ confusion: String, accuracy: String = "0.75", samples: Int = 8) throws -> Control.Evaluation {
            let json = #"{"accuracy":\#(accuracy),"loss":0.5,"samples":\#(samples),"seconds":1,"confusion":\#(confusion)}"#
            return try RemoteWorker.decode(Control.Evaluation.self, ByteBuffer(string: json)).check(classes: 2)
        }
        XCTAssertEqual(try answer("[[3,1],[1,3]]").confusion, [[3, 1], [1, 3]])
        XCTAssertNil(try answer("null").confusion, "older workers send none")
        for bad in ["[[3,1],[1,3],[0,0]]", "[[3,1,0],[1,3,0]]", "[[3],[1,3]]", "[]", "[[4,1],[1,3]]", "[[3,1],[0,3]]",
                    "[[2,2],[1,3]]", "[[9,-1],[0,0]]", "[[3,1],[1,9223372036854775807]]", "[[3.5,0.5],[1,3]]", "\"x\""] {
            XCTAssertThrowsError(try answer(bad), bad) { XCTAssertTrue($0 is ControlError, "\(bad): \($0)") }
        }
    }

    func testRandomNumbersNeverTrap() throws {
        var g = SystemRandomNumberGenerator()
        let extremes: [String] = ["0", "-0", "1", "-1", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
                                  "1e308", "-1e308", "1e-320", "4.9e-324", "0.5", "NaN", "\"x\"", "null", "true", "[]", "{}"]
        for _ in 0..<2_000 {
            let a = extremes.randomElement(using: &g)!, l = extremes.randomElement(using: &g)!, n = extremes.randomElement(using: &g)!
            let json = #"{"accuracy":\#(a),"loss":\#(l),"samples":\#(n),"seconds":1}"#
            if let e = try? evaluation(json) {
                XCTAssertTrue((0...1).contains(e.accuracy) && e.loss.isFinite && (1...Control.maxSamples).contains(e.samples), json)
            }
            let node = #"{"node":"x","version":"1","models":[],"model":"m","dataset":"d","samples":\#(n),"classes":[],"state":"idle","#
                + #""progress":{"samples":0,"total":0,"seconds":0},"uptime_seconds":1,"health":{}}"#
            if let info = try? RemoteWorker.decode(Control.NodeInfo.self, ByteBuffer(string: node)).check() {
                XCTAssertTrue((1...Control.maxSamples).contains(info.samples), node)
            }
        }
    }

    func testNodeInfoClaimsAreBounded() throws {
        func info(samples: String) throws -> Control.NodeInfo {
            let json = #"{"node":"pi-1","version":"0.2.0","models":["mnist-cnn"],"model":"mnist-cnn","dataset":"/d","samples":\#(samples),"#
                + #""classes":[0,1],"state":"idle","progress":{"samples":0,"total":0,"seconds":0},"uptime_seconds":3,"health":{"load1":0.5}}"#
            return try RemoteWorker.decode(Control.NodeInfo.self, ByteBuffer(string: json)).check()
        }
        XCTAssertEqual(try info(samples: "24000").samples, 24000)
        for bad in ["9223372036854775807", "0", "-5", "100000001"] {
            XCTAssertThrowsError(try info(samples: bad), bad) { XCTAssertTrue("\($0)".contains("training samples"), "\($0)") }
        }
        // a reason quoting the node is cut short
        let long = String(repeating: "x", count: 900_000)
        XCTAssertLessThan(RemoteWorker.message(ByteBuffer(string: #"{"state":"error","message":"\#(long)"}"#)).utf8.count, 400)
    }
}
