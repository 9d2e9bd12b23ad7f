import Dispatch
import FedPiEngine
import FedPiTraining
import FedPiWire
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Synchronization

/// The worker's one task: train on the global model of a round in the background, keep the finished
/// update on disk until a newer round replaces it, and answer where things stand. A task for the same
/// round and the same global model is the same task (PUT is idempotent); anything else replaces it.
public final class TaskRunner: Sendable {
    public enum Phase: String, Sendable { case idle, training, done, failed, cancelled }

    public struct Snapshot: Sendable {
        public var round: Int?
        public var phase: Phase = .idle
        public var samples = 0, total = 0
        public var loss: Double?
        public var seconds = 0.0
        public var reason: String?
        /// When training last reported a finished batch (or started).
        public var lastProgress = ContinuousClock.now
        var digest = ""
        var generation = 0
    }

    public enum Answer: Sendable {
        case ready([UInt8])
        case training(Snapshot)
        case unknown
        case superseded(current: Int)
        case failed(String)
    }

    /// Deliberately broken updates, only for the tests that prove the aggregator rejects them.
    public enum Fault: String, Sendable, CaseIterable { case nan, shape }

    let job: LocalTraining
    let layout: [ParameterInfo]
    let stateDir: String
    let logger: Logger
    let fault: Fault?
    /// Bounds on the work a task may ask for (worker.toml `max_local_epochs`, `max_task_seconds`).
    let maxEpochs: Int
    let maxSeconds: Double
    private let changeHandler = Mutex<@Sendable (Snapshot) -> Void>({ _ in })
    private let state = Mutex(Snapshot())
    private let queue = DispatchQueue(label: "fedpi.training")
    private let counters = Mutex((rounds: 0, samples: 0, served: 0))

    var updatePath: String { stateDir + "/update.safetensors" }
    /// A task's global model: kept on disk rather than in memory while it trains (2.4 MB of f16 for
    /// mnist-cnn, read back for the delta); one file per task, so a newer task cannot change an older
    /// one's. Removed when the training ends, and at start (a task does not survive a restart).
    func globalPath(_ generation: Int) -> String { stateDir + "/global-\(generation).safetensors" }

    public init(job: LocalTraining, stateDir: String, logger: Logger, fault: Fault? = nil, maxEpochs: Int = 20, maxSeconds: Double = 3600) throws {
        self.job = job
        self.maxEpochs = maxEpochs
        self.maxSeconds = maxSeconds
        layout = try ModelZoo.make(job.model, seed: 1).parameters.entries
        self.stateDir = stateDir
        self.logger = logger
        self.fault = fault
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        restore()
    }

    public var snapshot: Snapshot { state.withLock { $0 } }

    /// Called with the new state when a task starts, progresses (every few seconds) and ends.
    public func setOnChange(_ f: @escaping @Sendable (Snapshot) -> Void) { changeHandler.withLock { $0 = f } }
    private func onChange(_ s: Snapshot) { changeHandler.withLock { $0 }(s) }
    public var totals: (rounds: Int, samples: Int, served: Int) { counters.withLock { $0 } }

    /// An update finished before a restart is still served: its file says which round it is for.
    private func restore() {
        FileIO.removeLeftovers(of: updatePath)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: stateDir)) ?? []
        where name.hasPrefix("global-") && name.contains(".safetensors") {
            try? FileManager.default.removeItem(atPath: stateDir + "/" + name)
        }
        guard let bytes = try? FileIO.read(updatePath),
              let file = try? SafetensorsFile.decode(bytes), ModelFile.checksumMatches(file) == true,
              let round = file.metadata["round"].flatMap(Int.init), let digest = file.metadata["global"] else { return }
        state.withLock {
            $0.round = round
            $0.digest = digest
            $0.phase = .done
        }
        logger.info("kept update for round \(round) from before the restart", metadata: ["file": "\(updatePath)"])
    }

    public enum Start: Sendable { case started, alreadyRunning, alreadyDone }

    /// A task this board cannot take now (not enough memory), with the reason.
    public struct Refusal: Error, CustomStringConvertible {
        public let description: String
    }

    /// A task for a round older than the one this worker holds: refused, nothing deleted.
    public struct Stale: Error, CustomStringConvertible {
        public let description: String
    }

    /// A task that asks for more work than this worker allows.
    public struct TooMuchWork: Error, CustomStringConvertible {
        public let description: String
    }

    /// Memory the board has free for a new task (MemAvailable); replaceable in tests.
    public var availableMemory: @Sendable () -> Int? {
        get { memoryProbe.withLock { $0 } }
        set { memoryProbe.withLock { $0 = newValue } }
    }
    private let memoryProbe = Mutex<@Sendable () -> Int?>({ BoardHealth.read().memoryAvailableBytes })

    /// Bytes a training task needs beyond what the worker already holds: weights, gradients, momentum,
    /// the global copy and the update (six model-sized buffers) plus activations and buffers.
    public var taskBytes: Int { layout.reduce(0) { $0 + $1.count } * 4 * 6 + (32 << 20) }

    /// Starts (or re-confirms) the task for `round`; `global` is the aggregator's model file with the
    /// training config in its metadata. A bad file throws and changes nothing.
    public func start(round: Int, global: [UInt8]) throws -> Start {
        let header = try ModelFile.decode(global, expecting: layout, model: job.model).header  // validates every value
        guard header.kind == .weights else { throw WireError("expected model weights, got a \(header.kind.rawValue)") }
        guard header.round == round else { throw WireError("the model file is for round \(header.round), the request for round \(round)") }
        let config = try TrainingConfig(metadata: header.metadata)
        guard config.epochs <= maxEpochs else {
            throw TooMuchWork(description: "the task asks for \(config.epochs) local epochs; this worker allows at most \(maxEpochs) (max_local_epochs)")
        }
        if let stale = TaskRunner.stale(round, snapshot) { throw stale }
        let digest = Codecs.crc32Hex([global[...]])
        let sameTask = state.withLock { $0.round == round && $0.digest == digest && ($0.phase == .training || $0.phase == .done) }
        if !sameTask, let free = availableMemory(), free < taskBytes {
            throw Refusal(description: "not enough memory for this task: it needs about \(taskBytes >> 20) MiB, "
                + "the board has \(free >> 20) MiB available")
        }
        let (decision, generation) = try state.withLock { s throws -> (Start, Int) in
            // checked again under the lock: a newer task may have arrived meanwhile
            if let stale = TaskRunner.stale(round, s) { throw stale }
            if s.round == round, s.digest == digest {
                if s.phase == .training { return (.alreadyRunning, s.generation) }
                if s.phase == .done { return (.alreadyDone, s.generation) }
            }
            s = Snapshot(round: round, phase: .training, total: config.plannedSamples(count: job.indices.count), digest: digest, generation: s.generation + 1)
            return (.started, s.generation)
        }
        guard decision == .started else { return decision }
        try? FileManager.default.removeItem(atPath: updatePath)  // superseded
        do {
            try FileIO.writeAtomically(global, to: globalPath(generation))
        } catch {
            let refusal = Refusal(description: "cannot keep the global model in the state folder: \(error)".clipped())
            state.withLock {
                guard $0.generation == generation else { return }
                $0.phase = .failed
                $0.reason = refusal.description
            }
            throw refusal  // 503: the board's trouble, not the request's
        }
        logger.info("round \(round): training started", metadata: [
            "board": "\(BoardHealth.read().summary)",
            "samples": "\(job.indices.count)", "epochs": "\(config.epochs)", "lr": "\(config.learningRate)", "encoding": "\(config.encoding)",
            "loss": "\(config.loss.label)", "local_steps": "\(config.localSteps.map(String.init) ?? "all")"])
        onChange(snapshot)
        queue.async { self.train(round: round, config: config, digest: digest, generation: generation) }
        return .started
    }

    /// A task for a round older than the worker's current one is refused unless that one was cancelled
    /// (DELETE), which is how a new federation starts over with a worker that ran a later round.
    static func stale(_ round: Int, _ s: Snapshot) -> Stale? {
        guard let current = s.round, current > round, s.phase != .cancelled else { return nil }
        return Stale(description: "round \(round) is older than this worker's round \(current); nothing was changed "
            + "(to start a new federation, DELETE /v1/rounds/\(current) first)")
    }

    private func isCurrent(_ generation: Int) -> Bool { state.withLock { $0.generation == generation && $0.phase == .training } }

    private func train(round: Int, config: TrainingConfig, digest: String, generation: Int) {
        let globalPath = self.globalPath(generation)
        defer { try? FileManager.default.removeItem(atPath: globalPath) }
        guard isCurrent(generation) else { return }
        let clock = ContinuousClock(), start = clock.now
        var lastReport = start
        do {
            let maxSeconds = self.maxSeconds
            var bytes = try job.run(round: round, global: { try FileIO.read(globalPath) }, config: config, origin: digest) { p in
                guard self.isCurrent(generation) else { throw CancellationError() }
                if p.elapsedSeconds > maxSeconds {
                    throw TooMuchWork(description: "training stopped after \(Int(p.elapsedSeconds)) s: longer than max_task_seconds (\(Int(maxSeconds)) s)")
                }
                self.state.withLock {
                    $0.lastProgress = .now
                    $0.samples = p.runSamples
                    $0.loss = p.loss
                    $0.seconds = p.elapsedSeconds
                }
                if clock.now - lastReport > .seconds(2) {
                    lastReport = clock.now
                    self.onChange(self.snapshot)
                }
            }
            if let fault { bytes = try TaskRunner.inject(fault, into: bytes) }
            let seconds = Format.fixed(ContinuousClock.seconds(clock.now - start), 1)
            // the file and the state change together: a newer task cannot slip in between
            let done: Bool = try state.withLock {
                guard $0.generation == generation, $0.phase == .training else { return false }
                try FileIO.writeAtomically(bytes, to: updatePath)
                $0.phase = .done
                $0.samples = $0.total
                return true
            }
            if done {
                counters.withLock {
                    $0.rounds += 1
                    $0.samples += config.plannedSamples(count: job.indices.count)
                }
                logger.info("round \(round): update ready", metadata: ["bytes": "\(bytes.count)", "seconds": "\(seconds)"])
            } else {
                logger.info("round \(round): finished, but a newer task replaced it")
            }
        } catch is CancellationError {
            logger.info("round \(round): training stopped (cancelled or superseded)")
        } catch {
            state.withLock {
                guard $0.generation == generation else { return }
                $0.phase = .failed
                $0.reason = "\(error)".clipped()
            }
            logger.error("round \(round): training failed: \(error)")
        }
        onChange(snapshot)
        Memory.releaseFreePages()
    }

    /// A test fault in a finished update (`--debug-corrupt-updates`): the file is decoded and encoded
    /// again with the fault, which only tests do; a normal update is written as training encoded it.
    static func inject(_ fault: Fault, into bytes: [UInt8]) throws -> [UInt8] {
        let file = try SafetensorsFile.decode(bytes)
        var metadata = file.metadata
        var tensors = file.tensors.map { (name: $0.name, dtype: $0.dtype, shape: $0.shape, data: Array(file.bytes(of: $0))) }
        switch fault {
        case .shape: tensors[0].shape = [tensors[0].shape.reduce(1, *)]
        case .nan:
            // a NaN in the first value, with a checksum that matches, so only the finiteness check can catch it
            switch tensors[0].dtype {
            case .f32: tensors[0].data.replaceSubrange(0..<4, with: [0x00, 0x00, 0xC0, 0x7F])
            case .f16, .bf16: tensors[0].data.replaceSubrange(0..<2, with: [0x00, 0x7E])
            case .i8, .u8: metadata["scale." + tensors[0].name] = "nan"
            }
            metadata["checksum"] = Codecs.crc32Hex(tensors.map { $0.data[...] })
        }
        return SafetensorsFile.encode(tensors, metadata: metadata)
    }

    /// Where round `round` stands, for the aggregator's collect call.
    public func answer(round: Int) -> Answer {
        let s = snapshot
        guard let current = s.round, current >= round else { return .unknown }
        if current > round { return .superseded(current: current) }
        switch s.phase {
        case .done:
            guard let bytes = try? FileIO.read(updatePath) else { return .failed("the finished update could not be read back") }
            counters.withLock { $0.served += 1 }
            return .ready(bytes)
        case .training: return .training(s)
        case .failed: return .failed(s.reason ?? "training failed")
        case .cancelled, .idle: return .unknown
        }
    }

    /// Cancels round `round`'s task; false when there is no such task.
    public func cancel(round: Int) -> Bool {
        let cancelled: Bool = state.withLock {
            guard $0.round == round, $0.phase == .training || $0.phase == .done else { return false }
            $0.phase = .cancelled
            return true
        }
        if cancelled {
            try? FileManager.default.removeItem(atPath: updatePath)
            logger.info("round \(round): cancelled by the aggregator")
            onChange(snapshot)
        }
        return cancelled
    }
}

extension ContinuousClock {
    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
}
