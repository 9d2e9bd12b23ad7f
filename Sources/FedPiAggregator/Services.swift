import FedPiData
import FedPiEngine
import FedPiFederation
import FedPiTraining
import FedPiRuntime
import FedPiWire
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Runs the rounds: resume, dispatch, collect, retry, checkpoint, record. On SIGTERM it stops between
/// steps: a checkpoint being written is finished (writes are synchronous), a round in progress is
/// dropped without a record, and the workers keep their tasks, so the restarted aggregator dispatches
/// the same round with the same model and collects the updates they already have.
final class RoundRunner: Service, @unchecked Sendable {
    let config: FleetConfig
    let federation: Federation
    let history: History
    let operations: Operations
    let metrics: AggregatorMetrics
    let evaluator: CentralEvaluator?
    let strategy: String
    let report: @Sendable (RoundRecord) -> Void
    let print: @Sendable (String) -> Void
    let logger: Logger
    /// The last completed round when the process started.
    let resumedAfter: Int
    let savePath: String
    /// Where the final model went; nil while rounds remain or after a stop by signal.
    let finalPath = Mutex<String?>(nil)

    init(config: FleetConfig, federation: Federation, history: History, operations: Operations, metrics: AggregatorMetrics,
         evaluator: CentralEvaluator?, resumedAfter: Int, save: String?, print: @escaping @Sendable (String) -> Void,
         report: @escaping @Sendable (RoundRecord) -> Void, logger: Logger) {
        self.config = config
        self.federation = federation
        self.history = history
        self.operations = operations
        self.metrics = metrics
        self.evaluator = evaluator
        self.strategy = federation.strategy.name
        self.resumedAfter = resumedAfter
        self.savePath = save ?? config.stateDir + "/final.safetensors"
        self.print = print
        self.report = report
        self.logger = logger
    }

    var checkpointPath: String { config.stateDir + "/checkpoint.safetensors" }
    var averagePath: String { config.stateDir + "/average.safetensors" }
    /// The file of the served model, which the API reads: the moving average's when `model_ema` is on.
    var servedPath: String { federation.average.isEmpty ? checkpointPath : averagePath }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await self.rounds() }
        } catch where Task.isShuttingDownGracefully {
            operations.setPhase("stopped")
            let after = operations.control.completedRounds
            logger.info("stopped on SIGTERM after round \(after); a restart resumes there, and the workers' current tasks stay collectable")
        }
    }

    func rounds() async throws {
        let done = resumedAfter
        operations.completed(done, file: done > 0 ? servedPath : nil)
        metrics.lastRound.set(Double(done))
        if done == 0, try history.attempts(of: 0) == 0 {
            // with central evaluation federation.evaluate is nil: the record comes back without metrics
            // and `finish` evaluates it beside round 1
            try await finish(try await federation.evaluateInitial())
        } else if let evaluator, let id = try history.completedRoundWithoutMetrics(done) {
            // the last run stopped while this round's evaluation ran: evaluate the checkpoint now
            evaluator.submit(federation.servedModel.parameters.flatValues, round: done) { [history, logger, metrics] e in
                guard let e else { return }
                history.setMetrics(id, accuracy: e.accuracy, loss: e.loss, confusion: e.confusion, logger: logger)
                metrics.evaluated(accuracy: e.accuracy, loss: e.loss)
                logger.info("round \(done): accuracy \(Format.percent(e.accuracy)) (evaluated after the restart)")
            }
        }
        var round = done + 1
        while true {
            while round <= operations.control.targetRounds {
                guard await operations.waitWhilePaused() else { throw CancellationError() }
                guard round <= operations.control.targetRounds else { break }  // stopped while paused
                try await run(round)
                round += 1
            }
            await evaluator?.idle()
            try saveFinal(round: round - 1)
            guard config.keepServing else { return }
            operations.setPhase("finished")
            logger.info("all rounds done; serving the API until stopped (add rounds from the dashboard or POST /api/v1/control)")
            while round > operations.control.targetRounds {
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// Runs `round` until it completes, retrying a failed attempt with the model unchanged.
    func run(_ round: Int) async throws {
        var attempt = try history.attempts(of: round) + 1
        while true {
            operations.roundStarted(round, attempt: attempt)
            let r = try await federation.runRound(round, attempt: attempt)
            operations.roundEnded()
            // stopped mid-round: nothing is recorded, the round runs again after the restart
            try Task.checkCancellation()
            // the checkpoint decides where a restart resumes; a crash before the history row loses the row, not the round
            if r.completed {
                // a server optimizer's state first: whenever checkpoint R exists, so does the state that goes with it
                let optimizer = federation.strategy as? FedOpt
                if let optimizer {
                    try FileIO.writeAtomically(ServerOptimizerFile.encode(optimizer.state, rule: optimizer.rule, round: round),
                                               to: config.stateDir + "/" + ServerOptimizerFile.name(round: round))
                }
                try FileIO.writeAtomically(ModelFile.encode(weightsOf: federation.model, round: round), to: checkpointPath)
                // the average after the checkpoint: a kill in between leaves round R−1's, which the resume folds forward
                if !federation.average.isEmpty {
                    try FileIO.writeAtomically(ModelFile.encode(weightsOf: federation.servedModel, round: round), to: averagePath)
                }
                operations.completed(round, file: servedPath)
                if optimizer != nil { try? FileManager.default.removeItem(atPath: config.stateDir + "/" + ServerOptimizerFile.name(round: round - 1)) }
            }
            metrics.record(r)
            try await finish(r)
            if r.completed { return }
            let pause = min(30.0, 2 * Double(attempt))
            logger.warning("""
                round \(round) failed: \(r.participants.count) usable update(s), \(config.minNodes) needed; \
                retrying in \(Int(pause)) s with the model unchanged
                """)
            try await Task.sleep(for: .seconds(pause))
            attempt += 1
        }
    }

    /// Records the round, and with central evaluation evaluates it beside the next one before its
    /// table line is printed. Waits for the previous evaluation first, so lines print in round order.
    func finish(_ r: RoundRecord) async throws {
        await evaluator?.idle()
        let id = try history.record(r, strategy: strategy, encoding: config.encoding.rawValue)
        if let a = r.testAccuracy, let l = r.testLoss { metrics.evaluated(accuracy: a, loss: l) }
        guard let evaluator, r.completed, r.testAccuracy == nil else { return report(r) }
        evaluator.submit(federation.servedModel.parameters.flatValues, round: r.round) { [history, logger, metrics, report] e in
            var r = r
            if let e {
                history.setMetrics(id, accuracy: e.accuracy, loss: e.loss, confusion: e.confusion, logger: logger)
                metrics.evaluated(accuracy: e.accuracy, loss: e.loss)
            }
            (r.testAccuracy, r.testLoss) = (e?.accuracy, e?.loss)
            report(r)
        }
    }

    func saveFinal(round: Int) throws {
        try FileIO.writeAtomically(ModelFile.encode(weightsOf: federation.servedModel, round: round), to: savePath)
        finalPath.withLock { $0 = savePath }
        operations.setPhase("finished")
        let what = federation.average.isEmpty ? "global model" : "moving average of the global models (model_ema \(config.modelEMA))"
        print("saved the \(what) after round \(round) to \(savePath)")
    }
}

/// Probes the fleet every second: offline nodes when their backoff runs out, online ones every two
/// seconds for the dashboard (board health, task progress, a node gone between rounds).
struct ProberService: Service {
    let inventory: NodeInventory

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await inventory.refresh(healthEvery: 2)
                try await Task.sleep(for: .seconds(1))
            }
        }
    }
}

/// Central evaluation as a service: one evaluation at a time, beside the rounds, on a thread of its
/// own at idle priority (see `CentralEvaluation`).
final class CentralEvaluator: Service, Sendable {
    struct Job: Sendable {
        var values: [Float], round: Int
        var then: @Sendable (EvaluationResult?) -> Void
    }

    let evaluation: Aggregator.CentralEvaluation
    let logger: Logger
    let jobs: AsyncStream<Job>
    let input: AsyncStream<Job>.Continuation
    /// Jobs submitted and not finished, and who waits for none to be left.
    let pending = Mutex((count: 0, waiters: [CheckedContinuation<Void, Never>]()))

    init(_ evaluation: Aggregator.CentralEvaluation, logger: Logger) {
        self.evaluation = evaluation
        self.logger = logger
        (jobs, input) = AsyncStream.makeStream(of: Job.self)
    }

    func submit(_ values: [Float], round: Int, then: @escaping @Sendable (EvaluationResult?) -> Void) {
        pending.withLock { $0.count += 1 }
        input.yield(Job(values: values, round: round, then: then))
    }

    /// Returns once every submitted evaluation has finished.
    func idle() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = pending.withLock { p -> Bool in
                if p.count == 0 { return true }
                p.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func run() async throws {
        for await job in jobs.cancelOnGracefulShutdown() {
            let e = await evaluation.evaluate(job.values, round: job.round, logger: logger)
            job.then(e)
            let waiters = pending.withLock { p -> [CheckedContinuation<Void, Never>] in
                p.count -= 1
                guard p.count == 0 else { return [] }
                defer { p.waiters = [] }
                return p.waiters
            }
            for w in waiters { w.resume() }
        }
    }
}
