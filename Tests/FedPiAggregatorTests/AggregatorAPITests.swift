import AsyncHTTPClient
import FedPiEngine
import FedPiFederation
import FedPiTraining
import FedPiPredict
import FedPiTesting
import FedPiWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import XCTest

@testable import FedPiAggregator

/// The aggregator's API in process: the dashboard is self-contained and small, the JSON documents say
/// what the history and the live state hold, the model and predictions come from the current global
/// model, the controls steer the round runner, and bad requests get a reason and change nothing.
final class AggregatorAPITests: XCTestCase {
    struct Fixture {
        let api: AggregatorAPI
        let operations: Operations
        let history: History
        let client: HTTPClient
    }

    func fixture(rounds: Int = 3) throws -> Fixture {
        let dir = IDXFixtures.temporaryDirectory("fedpi-api")
        let config = try FleetConfig(text: """
            model = "mnist-mlp"
            rounds = \(rounds)
            state_dir = "\(dir)"
            [[nodes]]
            name = "pi-1"
            url = "http://127.0.0.1:9"
            [[nodes]]
            name = "pi-2"
            url = "http://127.0.0.1:10"
            """)
        let client = HTTPClient.shared
        var logger = Logger(label: "test")
        logger.logLevel = .error
        let inventory = NodeInventory(nodes: config.nodes, client: client, probeTimeout: 1, maxBackoff: 1, seed: 1, logger: logger)
        let history = try History(path: dir + "/history.sqlite")
        let operations = Operations(fleetRounds: rounds, controlPath: dir + "/control.json")
        let api = try AggregatorAPI(config: config, operations: operations, inventory: inventory, history: history,
                                    metrics: AggregatorMetrics(), strategy: "fedavg", logger: logger)
        return Fixture(api: api, operations: operations, history: history, client: client)
    }

    static func json(_ r: TestResponse) throws -> Any { try JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8)) }

    func testDashboardIsSelfContainedAndSmall() async throws {
        let f = try fixture()
        try await Application(router: f.api.router()).test(.router) { client in
            try await client.execute(uri: "/", method: .get) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual(r.headers[.contentType], "text/html; charset=utf-8")
                let page = String(buffer: r.body)
                XCTAssertLessThanOrEqual(r.body.readableBytes, 100_000, "page, script and style within 100 KB")
                XCTAssertFalse(page.contains("http://") || page.contains("https://") || page.contains("//cdn"), "nothing fetched from elsewhere")
                for id in ["nodes", "chart", "bytes", "failures", "classes", "pause", "resume", "add-rounds", "draw", "upload", "prediction"] {
                    XCTAssertTrue(page.contains("id=\"\(id)\""), id)
                }
            }
        }
    }

    func testFleetAndRoundsDocuments() async throws {
        let f = try fixture()
        let failure = NodeFailure(node: "pi-2", reason: "update rejected: checksum mismatch")
        try f.history.record(RoundRecord(round: 1, completed: true,
                                         participants: [Participation(node: "pi-1", examples: 100, bytes: 2000, seconds: 3, trainSeconds: 2)],
                                         failures: [failure], testAccuracy: 0.8, testLoss: 0.5, seconds: 4, bytesDown: 4000, bytesUp: 2000),
                             strategy: "fedavg", encoding: "f16")
        f.operations.roundStarted(2, attempt: 1)
        f.operations.dispatched(2, nodes: ["pi-1", "pi-2"])
        f.operations.nodeFinished(2, "pi-2", .failure(NodeFailure(node: "pi-2", reason: "connection refused")))
        try await Application(router: f.api.router()).test(.router) { client in
            try await client.execute(uri: "/api/v1/fleet", method: .get) { r in
                XCTAssertEqual(r.status, .ok)
                let o = try XCTUnwrap(try Self.json(r) as? [String: Any])
                let nodes = try XCTUnwrap(o["nodes"] as? [[String: Any]])
                XCTAssertEqual(nodes.map { $0["name"] as? String }, ["pi-1", "pi-2"])
                XCTAssertEqual(nodes.map { $0["state"] as? String }, ["unknown", "unknown"])
                let round = try XCTUnwrap(o["round"] as? [String: Any])
                XCTAssertEqual(round["round"] as? Int, 2)
                let tasks = try XCTUnwrap(round["nodes"] as? [[String: Any]])
                XCTAssertEqual(tasks.map { $0["status"] as? String }, ["dispatched", "failed"])
                XCTAssertEqual(tasks[1]["reason"] as? String, "connection refused")
                let control = try XCTUnwrap(o["control"] as? [String: Any])
                XCTAssertEqual(control["target_rounds"] as? Int, 3)
                XCTAssertEqual(control["paused"] as? Bool, false)
                let aggregator = try XCTUnwrap(o["aggregator"] as? [String: Any])
                XCTAssertEqual(aggregator["model_ema"] as? Double, Double(Federation.defaultModelEMA))
            }
            try await client.execute(uri: "/api/v1/rounds", method: .get) { r in
                let rows = try XCTUnwrap(try Self.json(r) as? [[String: Any]])
                XCTAssertEqual(rows.count, 1)
                XCTAssertEqual(rows[0]["accuracy"] as? Double, 0.8)
                XCTAssertEqual(rows[0]["bytes_down"] as? Int, 4000)
                XCTAssertEqual((rows[0]["participants"] as? [[String: Any]])?.first?["train_seconds"] as? Double, 2)
                XCTAssertEqual((rows[0]["failures"] as? [[String: Any]])?.first?["reason"] as? String, failure.reason)
            }
            try await client.execute(uri: "/api/v1/rounds/1", method: .get) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/api/v1/rounds/7", method: .get) { XCTAssertEqual($0.status, .notFound) }
            for bad in ["/api/v1/rounds/-1", "/api/v1/rounds/x", "/api/v1/rounds?limit=0", "/api/v1/rounds?limit=99999999999999999999"] {
                try await client.execute(uri: bad, method: .get) { XCTAssertEqual($0.status, .badRequest, bad) }
            }
        }
    }

    func testModelAndPredictionsFollowTheCurrentGlobalModel() async throws {
        let f = try fixture()
        let net = try ModelZoo.make("mnist-mlp", seed: 5)
        let image = (0..<784).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try await Application(router: f.api.router()).test(.router) { client in
            try await client.execute(uri: "/api/v1/model", method: .get) { XCTAssertEqual($0.status, .serviceUnavailable) }
            try await client.execute(uri: "/api/v1/predict", method: .post, body: ByteBuffer(bytes: image)) {
                XCTAssertEqual($0.status, .serviceUnavailable)
            }
            let checkpoint = IDXFixtures.temporaryDirectory("fedpi-api-model") + "/checkpoint.safetensors"
            try FileIO.writeAtomically(ModelFile.encode(weightsOf: net, round: 4), to: checkpoint)
            f.operations.completed(4, file: checkpoint)
            for (query, dtype) in [("", DType.f32), ("?encoding=f16", .f16)] {
                try await client.execute(uri: "/api/v1/model" + query, method: .get) { r in
                    XCTAssertEqual(r.status, .ok)
                    let bytes = Array(r.body.readableBytesView)
                    let (values, header) = try ModelFile.decode(bytes, expecting: net.parameters.entries, model: "mnist-mlp")
                    XCTAssertEqual(header.round, 4)
                    XCTAssertEqual(try SafetensorsFile.decode(bytes).tensors.first?.dtype, dtype)
                    if dtype == .f32 { XCTAssertEqual(values, net.parameters.flatValues) }
                }
            }
            try await client.execute(uri: "/api/v1/model?encoding=i8", method: .get) { XCTAssertEqual($0.status, .badRequest) }
            let expected = try Prediction(model: net, pixels: image)
            for body in [image, ImageOutput.encode(image, width: 28, height: 28)] {
                try await client.execute(uri: "/api/v1/predict", method: .post, body: ByteBuffer(bytes: body)) { r in
                    XCTAssertEqual(r.status, .ok, String(buffer: r.body))
                    let o = try XCTUnwrap(try Self.json(r) as? [String: Any])
                    XCTAssertEqual(o["predicted_class"] as? Int, expected.predictedClass)
                    XCTAssertEqual(o["round"] as? Int, 4)
                    let p = try XCTUnwrap(o["probabilities"] as? [Double])
                    for (a, b) in zip(p, expected.probabilities) { XCTAssertEqual(a, b, accuracy: 1e-9) }
                }
            }
            // bad images: a reason, 400; too large: 413 before it is read
            for body in [[UInt8](), [1, 2, 3], Array(ImageOutput.encode(image, width: 28, height: 28).prefix(50))] {
                try await client.execute(uri: "/api/v1/predict", method: .post, body: ByteBuffer(bytes: body)) { r in
                    XCTAssertEqual(r.status, .badRequest)
                    XCTAssertNotNil((try Self.json(r) as? [String: Any])?["error"])
                }
            }
            try await client.execute(uri: "/api/v1/predict", method: .post,
                                     body: ByteBuffer(bytes: [UInt8](repeating: 0, count: AggregatorAPI.maxImageBytes + 1))) { r in
                XCTAssertEqual(r.status, .contentTooLarge)
            }
        }
    }

    func testControlsAreAppliedKeptAndBounded() async throws {
        let f = try fixture(rounds: 3)
        try await Application(router: f.api.router()).test(.router) { client in
            var (status, o) = try await Self.post(client, #"{"action": "pause"}"#)
            XCTAssertEqual(status, .ok)
            XCTAssertEqual(o?["paused"] as? Bool, true)
            (status, o) = try await Self.post(client, #"{"action": "add_rounds", "rounds": 4}"#)
            XCTAssertEqual(o?["target_rounds"] as? Int, 7)
            (status, o) = try await Self.post(client, #"{"action": "resume"}"#)
            XCTAssertEqual(o?["paused"] as? Bool, false)
            for bad in ["", "{", #"{"action": "explode"}"#, #"{"action": "add_rounds"}"#, #"{"action": "add_rounds", "rounds": 0}"#,
                        #"{"action": "add_rounds", "rounds": 1e30}"#, #"{"action": "add_rounds", "rounds": 99999999999999999999}"#,
                        #"{"action": ["pause"]}"#, String(repeating: "x", count: 5000)] {
                (status, o) = try await Self.post(client, bad)
                XCTAssertTrue(status == .badRequest || status == .contentTooLarge, "\(bad.prefix(40)): \(status)")
            }
            XCTAssertEqual(f.operations.control.targetRounds, 7, "bad requests changed nothing")
            f.operations.completed(2, file: nil)
            f.operations.roundStarted(3, attempt: 1)
            (status, o) = try await Self.post(client, #"{"action": "stop"}"#)
            XCTAssertEqual(o?["target_rounds"] as? Int, 3, "the round running now is the last")
        }
        // rounds added are kept across a restart while the fleet file's rounds stay the same
        let path = f.operations.controlPath!
        XCTAssertEqual(Operations(fleetRounds: 3, controlPath: path).control.targetRounds, 3)
        f.operations.apply(.addRounds(5))
        XCTAssertEqual(Operations(fleetRounds: 3, controlPath: path).control.targetRounds, 8)
        XCTAssertEqual(Operations(fleetRounds: 10, controlPath: path).control.targetRounds, 10, "a changed fleet file wins")
    }

    static func post(_ client: some TestClientProtocol, _ body: String) async throws -> (HTTPResponse.Status, [String: Any]?) {
        try await client.execute(uri: "/api/v1/control", method: .post, body: ByteBuffer(string: body)) { r in
            (r.status, try? Self.json(r) as? [String: Any])
        }
    }

    func testMetricsNameEveryNodeAndRound() async throws {
        let f = try fixture()
        f.api.metrics.record(RoundRecord(
            round: 1, completed: true, participants: [Participation(node: "pi-1", examples: 600, bytes: 2000, seconds: 3, trainSeconds: 2)],
            failures: [NodeFailure(node: "pi-2", reason: "update rejected: its norm 9.000 is 9.0× the median update norm 1.000 (max_norm_ratio 5.0)")],
            testAccuracy: nil, testLoss: nil, seconds: 4, bytesDown: 4000, bytesUp: 2000))
        f.api.metrics.evaluated(accuracy: 0.75, loss: 0.7)
        try await Application(router: f.api.router()).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { r in
                let text = String(buffer: r.body)
                for line in ["fedpi_rounds_completed_total 1", #"fedpi_transfer_bytes_total{node="pi-1",direction="down"} 2000"#,
                             #"fedpi_transfer_bytes_total{node="pi-1",direction="up"} 2000"#, #"fedpi_node_up{node="pi-2"} 0"#,
                             #"fedpi_update_rejections_total{node="pi-2",reason="norm_screened"} 1"#, "fedpi_test_accuracy_ratio 0.75",
                             #"fedpi_node_training_samples_per_second{node="pi-1"} 300"#, "fedpi_round_duration_seconds_count 1"] {
                    XCTAssertTrue(text.contains(line), "\(line) in\n\(text)")
                }
            }
        }
    }
}
