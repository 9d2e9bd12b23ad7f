import ArgumentParser
import FedPiAggregator
import FedPiRuntime
import Foundation
import Logging

@main
struct AggregatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedpi-aggregator",
        abstract: "The FedPi aggregator: dials the fleet's workers and runs federated rounds.",
        discussion: """
            Reads a fleet file (TOML), probes the nodes, runs the rounds and prints one line per round.
            After each round the global model is checkpointed to STATE_DIR/checkpoint.safetensors and the
            round goes to STATE_DIR/history.sqlite; started again, the aggregator resumes after the last
            completed round. With test_data, a round's model is evaluated beside the next round, at idle
            priority, and its line is printed when that evaluation ends. The dashboard, the JSON API and
            /metrics are served on listen (default 127.0.0.1:8480; under [tls] with mutual TLS). SIGTERM
            stops between steps (exit 0): the round in progress is dropped and runs again after a restart,
            collecting the updates the workers kept. Minimal fleet.toml:
              rounds = 10
              min_nodes = 2
              test_data = "/usr/share/datasets/fashion-mnist"
              state_dir = "/var/lib/fedpi-aggregator"
              [[nodes]]
              name = "pi-1"
              url = "http://10.0.0.11:8470"
            See provisioning/fleet.example.toml for every key.
            """)

    @Option(help: ArgumentHelp("Fleet file (TOML).", valueName: "file"))
    var config: String

    @Option(help: ArgumentHelp("Override the fleet file's state_dir.", valueName: "dir"))
    var stateDir: String?

    @Option(help: ArgumentHelp("Override the fleet file's number of rounds.", valueName: "n"))
    var rounds: Int?

    @Option(help: ArgumentHelp("Write the final model here (default STATE_DIR/final.safetensors).", valueName: "file"))
    var save: String?

    @Option(help: ArgumentHelp("Write the API's port here once it listens (with listen = \"127.0.0.1:0\": any free port).", valueName: "file"))
    var portFile: String?

    @Option(help: ArgumentHelp("Override the fleet file's listen (HOST:PORT, or off).", valueName: "address"))
    var listen: String?

    func run() async throws {
        LineLogHandler.bootstrap()
        var fleet: FleetConfig
        do {
            fleet = try FleetConfig(path: config)
        } catch {
            throw ValidationError("\(error)")
        }
        if let stateDir { fleet.stateDir = stateDir }
        if let listen {
            do {
                fleet.listen = listen == "off" ? nil : try ListenAddress.parse(listen, path: "--listen")
            } catch {
                throw ValidationError("\(error)")
            }
        }
        if let rounds {
            guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
            fleet.rounds = rounds
        }
        let logger = Logger(label: "fedpi-aggregator")
        // SIGTERM (systemctl stop) is a graceful shutdown: the round runner stops between steps, every
        // completed round is already checkpointed, and the next start resumes after it
        // stdout carries the table; flush each line so a pipe or file sees rounds as they finish
        let portFile = self.portFile
        try await Aggregator(config: fleet, logger: logger).run(save: save, print: { line in
            print(line)
            fflush(nil)
        }, onListening: { port in
            if let portFile { try? String(port).write(toFile: portFile, atomically: true, encoding: .utf8) }
        })
    }
}
