import FedPiEngine
import FedPiFederation
import FedPiTraining
import FedPiRuntime
import FedPiWire
import Foundation
import Synchronization

/// What the operator sees and steers while the aggregator runs: the round in progress with each
/// node's part in it, the controls (pause, stop after this round, more rounds), and where the served
/// model is (its file: the API reads it from there, so no copy is held). The round runner writes it;
/// the HTTP API reads it and sets the controls.
public final class Operations: Sendable {
    /// The controls, as the API reports them.
    public struct Control: Sendable, Encodable, Equatable {
        /// No new round is dispatched while paused (the one running finishes).
        public var paused = false
        /// The last round to run; `add_rounds` raises it, `stop` lowers it to the current round.
        public var targetRounds: Int
        /// The last completed round.
        public var completedRounds = 0
        /// What the runner is doing: starting, waiting for nodes, running, paused, finished, stopping.
        public var phase = "starting"
    }

    /// One node's part in the round in progress.
    public struct NodeTask: Sendable, Encodable {
        public var node: String
        /// dispatched, accepted or failed.
        public var status: String
        public var reason: String?
        public var seconds: Double?
    }

    public struct RoundProgress: Sendable, Encodable {
        public var round: Int, attempt: Int, startedAt: String
        public var nodes: [NodeTask]
    }

    struct State {
        var control: Control
        var round: RoundProgress?
        var model: (round: Int, file: String)?
    }

    let state: Mutex<State>
    /// Where `targetRounds` is kept across restarts, with the fleet file's `rounds` it was raised from.
    let controlPath: String?
    let fleetRounds: Int

    /// `controlPath`: a file that keeps rounds added through the API across restarts (as long as the
    /// fleet file's `rounds` stays what it was when they were added).
    public init(fleetRounds: Int, controlPath: String? = nil) {
        self.fleetRounds = fleetRounds
        self.controlPath = controlPath
        var target = fleetRounds
        if let controlPath, let data = FileManager.default.contents(atPath: controlPath),
           let saved = try? JSONDecoder().decode(Saved.self, from: data), saved.fleetRounds == fleetRounds,
           (1...Operations.maxRounds).contains(saved.targetRounds) {
            target = saved.targetRounds
        }
        state = Mutex(State(control: Control(targetRounds: target)))
    }

    struct Saved: Codable { var fleetRounds: Int, targetRounds: Int }

    /// The most rounds a run may be raised to.
    public static let maxRounds = 1_000_000

    public var control: Control { state.withLock { $0.control } }
    public var round: RoundProgress? { state.withLock { $0.round } }
    /// The file holding the served model (the moving average's with `model_ema`, else the checkpoint;
    /// nil before the first round) and its round.
    public var model: (round: Int, file: String)? { state.withLock { $0.model } }

    /// A request of the API's `POST /api/v1/control`.
    public enum Command: Equatable, Sendable {
        case pause, resume, stop, addRounds(Int)

        /// Parses `{"action": "pause" | "resume" | "stop" | "add_rounds", "rounds": N}`.
        public init(json: [UInt8]) throws(ConfigError) {
            struct Body: Decodable { var action: String, rounds: Int? }
            guard let body = try? JSONDecoder().decode(Body.self, from: Data(json)) else {
                throw ConfigError(#"expected JSON like {"action": "pause"}; actions: pause, resume, stop, add_rounds (with "rounds": N)"#)
            }
            switch body.action {
            case "pause": self = .pause
            case "resume": self = .resume
            case "stop": self = .stop
            case "add_rounds":
                guard let n = body.rounds, (1...10_000).contains(n) else { throw ConfigError("add_rounds needs \"rounds\": 1...10000") }
                self = .addRounds(n)
            default: throw ConfigError("unknown action \(body.action.prefix(40)); actions: pause, resume, stop, add_rounds")
            }
        }
    }

    /// Applies a command and returns the controls after it.
    @discardableResult
    public func apply(_ command: Command) -> Control {
        let (control, save) = state.withLock { s -> (Control, Bool) in
            switch command {
            case .pause: s.control.paused = true
            case .resume: s.control.paused = false
            case .stop:
                // the round running now (or none) is the last
                s.control.targetRounds = max(s.control.completedRounds, s.round?.round ?? s.control.completedRounds)
            case .addRounds(let n):
                s.control.targetRounds = min(Operations.maxRounds, max(s.control.targetRounds, s.control.completedRounds) + n)
            }
            return (s.control, command != .pause && command != .resume)
        }
        if save { persist(control.targetRounds) }
        return control
    }

    func persist(_ target: Int) {
        guard let controlPath, let data = try? JSONEncoder().encode(Saved(fleetRounds: fleetRounds, targetRounds: target)) else { return }
        try? FileIO.writeAtomically(Array(data), to: controlPath)
    }

    func setPhase(_ phase: String) { state.withLock { $0.control.phase = phase } }

    func completed(_ round: Int, file: String?) {
        state.withLock {
            $0.control.completedRounds = round
            $0.model = file.map { (round, $0) }
        }
    }

    func roundStarted(_ round: Int, attempt: Int) {
        state.withLock {
            $0.round = RoundProgress(round: round, attempt: attempt, startedAt: Date().formatted(.iso8601), nodes: [])
        }
    }

    func dispatched(_ round: Int, nodes: [String]) {
        state.withLock {
            guard $0.round?.round == round else { return }
            $0.round?.nodes = nodes.map { NodeTask(node: $0, status: "dispatched") }
            $0.control.phase = "running"
        }
    }

    func nodeFinished(_ round: Int, _ node: String, _ outcome: Result<Participation, NodeFailure>) {
        state.withLock { s in
            guard s.round?.round == round, let i = s.round?.nodes.firstIndex(where: { $0.node == node }) else { return }
            switch outcome {
            case .success(let p): s.round?.nodes[i] = NodeTask(node: node, status: "accepted", seconds: p.seconds)
            case .failure(let f): s.round?.nodes[i] = NodeTask(node: node, status: "failed", reason: f.reason)
            }
        }
    }

    func roundEnded() { state.withLock { $0.round = nil } }

    /// Waits while paused; false when the task is cancelled (shutdown).
    func waitWhilePaused() async -> Bool {
        var noted = false
        while state.withLock({ $0.control.paused }) {
            if !noted {
                setPhase("paused")
                noted = true
            }
            do { try await Task.sleep(for: .milliseconds(200)) } catch { return false }
        }
        return true
    }
}
