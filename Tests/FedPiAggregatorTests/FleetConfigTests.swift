import FedPiFederation
import FedPiTraining
import FedPiRuntime
import FedPiTesting
import XCTest

@testable import FedPiAggregator

final class FleetConfigTests: XCTestCase {
    let nodes = """
        [[nodes]]
        name = "pi-1"
        url = "http://10.0.0.11:8470/"
        [[nodes]]
        name = "pi-2"
        url = "http://10.0.0.12:8470"

        """

    func testEveryKeyIsRead() throws {
        let c = try FleetConfig(text: """
            model = "mnist-mlp"
            rounds = 7
            local_epochs = 2
            batch_size = 32
            learning_rate = 0.05
            momentum = 0.5
            min_nodes = 2
            fraction = 0.5
            round_timeout = 90
            unreachable_grace = 4
            probe_timeout = 1.5
            max_backoff = 12
            strategy = "fedprox"
            mu = 0.1
            clip_norm = 5
            encoding = "i8"
            state_dir = "/tmp/s"
            test_data = "/data"
            test_limit = 500
            seed = 9
            listen = ":9000"
            insecure = true
            server_lr = 0.05
            lr_decay = 0.95
            lr_floor = 0.2
            server_momentum = 0.8
            beta1 = 0.85
            beta2 = 0.995
            tau = 0.0001
            keep_serving = true
            loss = "fedrs"
            fedrs_alpha = 0.3
            local_steps = 120
            class_names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]

            """ + nodes)
        XCTAssertEqual(c.learningRateDecay, 0.95)
        XCTAssertEqual(c.learningRateFloor, 0.2)
        XCTAssertEqual(c.training.loss, .fedRS(alpha: 0.3))
        XCTAssertEqual(c.training.localSteps, 120)
        XCTAssertEqual(try FleetConfig(text: "loss = \"fedlc\"\nfedlc_tau = 2\n" + nodes).training.loss, .fedLC(tau: 2))
        XCTAssertThrowsError(try FleetConfig(text: "loss = \"focal\"\n" + nodes)) { XCTAssertTrue("\($0)".contains("loss focal"), "\($0)") }
        XCTAssertThrowsError(try FleetConfig(text: "fedrs_alpha = 2\n" + nodes))
        XCTAssertThrowsError(try FleetConfig(text: "local_steps = 0\n" + nodes))
        XCTAssertEqual(c.server.serverLR, 0.05)
        XCTAssertEqual(c.server.momentum, 0.8)
        XCTAssertEqual(c.server.beta1, 0.85)
        XCTAssertEqual(c.server.beta2, 0.995)
        XCTAssertEqual(c.server.tau, 0.0001)
        let adam = try XCTUnwrap(try FleetConfig(text: "strategy = \"fedadam\"\nserver_lr = 0.02\n" + nodes).makeStrategy() as? FedOpt)
        XCTAssertEqual(adam.rule, .fedadam)
        XCTAssertEqual(adam.lr, 0.02)
        XCTAssertEqual(c.listen?.host, "0.0.0.0")
        XCTAssertEqual(c.listen?.port, 9000)
        XCTAssertTrue(c.keepServing)
        XCTAssertEqual(c.classNames?.last, "j")
        XCTAssertEqual(try FleetConfig(text: nodes).listen?.port, 8480, "the API is on by default, on loopback")
        // the measured recommendation is the default: FedAvgM, server lr 1, momentum 0.7, plain cross-entropy
        let recommended = try XCTUnwrap(try FleetConfig(text: nodes).makeStrategy() as? FedOpt)
        XCTAssertEqual(recommended.rule, .fedavgm)
        XCTAssertEqual(recommended.lr, 1)
        XCTAssertEqual(recommended.momentum, 0.7)
        XCTAssertEqual(try FleetConfig(text: nodes).training.loss, .crossEntropy)
        XCTAssertNil(try FleetConfig(text: "listen = \"off\"\n" + nodes).listen)
        XCTAssertEqual(c.model, "mnist-mlp")
        XCTAssertEqual(c.rounds, 7)
        XCTAssertEqual(c.nodes, [.init(name: "pi-1", url: "http://10.0.0.11:8470"), .init(name: "pi-2", url: "http://10.0.0.12:8470")])
        XCTAssertEqual(c.minNodes, 2)
        XCTAssertEqual(c.roundTimeout, 90)
        XCTAssertEqual(c.encoding, .i8)
        XCTAssertEqual(c.makeStrategy().proximalMu, 0.1, accuracy: 1e-7)
        XCTAssertEqual(c.training.batchSize, 32)
        XCTAssertEqual(c.training.epochs, 2)
        XCTAssertEqual(c.testLimit, 500)
        XCTAssertEqual(c.seed, 9)
    }

    func testMistakesAreNamed() {
        let cases: [(String, String)] = [
            ("rounds = 3\nroundz = 4\n" + nodes, "unknown key roundz"),
            ("rounds = \"ten\"\n" + nodes, "rounds must be an integer"),
            ("rounds = 0\n" + nodes, "rounds must be an integer in 1"),
            ("learning_rate = -1\n" + nodes, "learning_rate must be a number"),
            ("strategy = \"fedsgd\"\n" + nodes, "strategy fedsgd is not one of"),
            ("encoding = \"f64\"\n" + nodes, "encoding must be"),
            ("model = \"resnet\"\n" + nodes, "model resnet is not one of"),
            ("rounds = 3\n", "no nodes"),
            ("min_nodes = 3\n" + nodes, "min_nodes is 3 but only 2"),
            (nodes + "[[nodes]]\nname = \"pi-1\"\nurl = \"http://x:1\"\n", "pi-1 appears twice"),
            ("[[nodes]]\nname = \"a\"\nurl = \"ftp://x\"\n", "needs a url"),
            ("[[nodes]]\nname = \"a\"\nurl = \"http://x:1\"\nport = 3\n", "unknown key nodes[1].port"),
            ("rounds = = 3\n", "fleet.toml: line 1"),
            ("listen = \"0.0.0.0:8480\"\n" + nodes, "refusing to serve the API over plain HTTP"),
            ("listen = \"127.0.0.1:99999\"\n" + nodes, "listen address"),
            ("class_names = [\"a\"]\n" + nodes, "class_names needs 10 names"),
            ("model = \"xray-cnn\"\nclass_names = [\"a\", \"b\", \"c\"]\n" + nodes, "class_names needs 2 names of 1-40 characters (xray-cnn has 2 classes)"),
            ("beta2 = 1\n" + nodes, "beta2 must be a number"),
            ("server_lr = 0\n" + nodes, "server_lr must be a number"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try FleetConfig(text: text), expected) { error in
                XCTAssertTrue("\(error)".contains(expected), "expected “\(expected)” in “\(error)”")
            }
        }
        XCTAssertThrowsError(try FleetConfig(path: "/nonexistent/fleet.toml")) { XCTAssertTrue("\($0)".contains("cannot read")) }
    }

    func testBackoffDoublesUpToTheCapWithJitter() {
        XCTAssertEqual(NodeInventory.backoff(failures: 0, cap: 30, jitter: 1), 0)
        XCTAssertEqual(NodeInventory.backoff(failures: 1, cap: 30, jitter: 1), 0.5)
        XCTAssertEqual(NodeInventory.backoff(failures: 4, cap: 30, jitter: 1), 4)
        XCTAssertEqual(NodeInventory.backoff(failures: 4, cap: 30, jitter: 0), 2)
        XCTAssertEqual(NodeInventory.backoff(failures: 20, cap: 30, jitter: 1), 30)
        XCTAssertEqual(NodeInventory.backoff(failures: 1000, cap: 30, jitter: 0.5), 22.5)
    }

    func testHistoryRecordsRoundsParticipantsAndFailures() throws {
        let h = try History(path: IDXFixtures.temporaryDirectory("fedpi-history") + "/h.sqlite")
        XCTAssertEqual(try h.lastCompletedRound(), 0)
        let ok = RoundRecord(round: 1, completed: true,
                             participants: [Participation(node: "b", examples: 5, bytes: 10, seconds: 1, trainSeconds: 0.9),
                                            Participation(node: "a", examples: 3, bytes: 10, seconds: 2)],
                             failures: [NodeFailure(node: "c", reason: "update rejected: NaN")],
                             testAccuracy: 0.5, testLoss: 1, seconds: 3, bytesDown: 30, bytesUp: 20)
        var failed = ok
        failed.round = 2
        failed.completed = false
        failed.participants = []
        try h.record(ok, strategy: "fedavg", encoding: "f16")
        try h.record(failed, strategy: "fedavg", encoding: "f16")
        XCTAssertEqual(try h.lastCompletedRound(), 1)
        XCTAssertEqual(try h.attempts(of: 2), 1)
        let rounds = try h.rounds()
        XCTAssertEqual(rounds.map(\.round), [1, 2])
        XCTAssertEqual(rounds[0].participants, ["a", "b"])
        XCTAssertEqual(rounds[0].failures, ["c: update rejected: NaN"])
        XCTAssertEqual(rounds[0].accuracy, 0.5)
        XCTAssertFalse(rounds[1].completed)
    }

    func testTLSSectionNodeURLsAndNames() throws {
        let fp = String(repeating: "0a", count: 32)
        let c = try FleetConfig(text: """
            [tls]
            cert = "/etc/fedpi/tls/aggregator.crt"
            key = "/etc/fedpi/tls/aggregator.key"
            ca = "/etc/fedpi/tls/ca.crt"
            deny = ["\(fp.uppercased())"]
            [[nodes]]
            name = "pi-1"
            url = "https://10.0.0.11:8470"
            [[nodes]]
            name = "pi-2"
            url = "https://[fd00::12]:9000/"
            """)
        XCTAssertEqual(c.tls?.authority, "/etc/fedpi/tls/ca.crt")
        XCTAssertEqual(c.deny, [fp])
        XCTAssertEqual(c.nodes[0].dialURL(tls: true), "https://pi-1:8470")
        XCTAssertEqual(c.nodes[0].endpoint.host, "10.0.0.11")
        XCTAssertEqual(c.nodes[1].endpoint.host, "fd00::12")
        XCTAssertEqual(c.nodes[1].endpoint.port, 9000)
        let tls = "[tls]\ncert = \"a\"\nkey = \"b\"\nca = \"c\"\n"
        let refused: [(String, String)] = [
            (tls + "[[nodes]]\nname = \"pi-1\"\nurl = \"http://10.0.0.11:8470\"\n", "every url must be https"),
            ("[[nodes]]\nname = \"pi-1\"\nurl = \"https://10.0.0.11:8470\"\n", "no [tls] section"),
            (tls + "[[nodes]]\nname = \"pi_1\"\nurl = \"https://10.0.0.11:8470\"\n", "cannot be a DNS name"),
            ("[tls]\ncert = \"a\"\nca = \"c\"\n[[nodes]]\nname = \"pi-1\"\nurl = \"https://h:1\"\n", "needs cert, key and ca"),
            (tls + "deny = [\"abc\"]\n[[nodes]]\nname = \"pi-1\"\nurl = \"https://h:1\"\n", "not a SHA-256 fingerprint"),
            (tls + "colour = 1\n[[nodes]]\nname = \"pi-1\"\nurl = \"https://h:1\"\n", "unknown key tls.colour"),
        ]
        for (text, reason) in refused {
            XCTAssertThrowsError(try FleetConfig(text: text), reason) { XCTAssertTrue("\($0)".contains(reason), "\($0)") }
        }
    }
}
