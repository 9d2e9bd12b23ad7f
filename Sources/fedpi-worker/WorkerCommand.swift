import ArgumentParser
import FedPiEngine
import FedPiIdentity
import FedPiRuntime
import FedPiWorker
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging

@main
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedpi-worker",
        abstract: "The FedPi worker daemon: trains on this board's data when an aggregator asks, over HTTP.",
        discussion: """
            Settings come from --config (TOML), then from flags, which win. Example worker.toml:
              name = "pi-1"
              listen = "0.0.0.0:8470"
              data = "/srv/mnist"
              classes = "0-3"            # or partition = "iid:1/3"
              state_dir = "/var/lib/fedpi"
              tls_cert = "/etc/fedpi/tls/pi-1.crt"   # with tls_key and tls_ca: HTTPS, mutual TLS
              tls_ca = "/etc/fedpi/tls/ca.crt"
              tls_deny = []              # SHA-256 fingerprints of revoked certificates
            Without TLS the worker listens only on loopback unless --insecure is given.
            SIGHUP (systemctl reload) re-reads the certificates and tls_deny; the running task goes on.
            API: GET /v1/health, GET /v1/node, PUT /v1/rounds/R, GET /v1/rounds/R/update?wait=S,
            DELETE /v1/rounds/R, POST /v1/evaluate, GET /metrics.
            """,
        version: WorkerService.version)

    @Option(help: ArgumentHelp("TOML settings file.", valueName: "file"))
    var config: String?

    @Option(help: "Node name the aggregator knows this worker by.")
    var name: String?

    @Option(help: ArgumentHelp("Address to listen on: HOST:PORT, :PORT (all interfaces) or PORT (loopback). Port 0 picks a free one.", valueName: "address"))
    var listen: String?

    @Option(help: ArgumentHelp("Folder of MNIST-format files (raw or .gz).", valueName: "dir"))
    var data: String?

    @Option(help: ArgumentHelp("Train only on these classes, e.g. 0-3 or 0,2,5.", valueName: "classes"))
    var classes: String?

    @Option(help: ArgumentHelp("Keep one shard of a seeded split: iid:K/N or dirichlet:ALPHA:K/N.", valueName: "spec"))
    var partition: String?

    @Option(help: ArgumentHelp("Keep at most this many training samples (seeded subset).", valueName: "n"))
    var limit: Int?

    @Option(help: ArgumentHelp("Evaluate posted models on at most this many test samples.", valueName: "n"))
    var testLimit: Int?

    @Option(help: ArgumentHelp("Folder for finished updates (kept across restarts).", valueName: "dir"))
    var stateDir: String?

    @Option(help: ArgumentHelp("Training threads (default: one per core).", valueName: "n"))
    var lanes: Int?

    @Option(help: ArgumentHelp("Model this worker trains: \(ModelZoo.names.joined(separator: ", ")).", valueName: "name"))
    var model: String = "mnist-cnn"

    @Option(help: ArgumentHelp("This worker's certificate (PEM, from fedpi certs). With --tls-key and --tls-ca: HTTPS with mutual TLS.", valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("This worker's private key (PEM). Under systemd, the credential tls.key when not given.", valueName: "file"))
    var tlsKey: String?

    @Option(help: ArgumentHelp("The fleet CA's certificate: clients must present a certificate it signed.", valueName: "file"))
    var tlsCa: String?

    @Flag(help: "Serve plain HTTP on a non-loopback address: anyone who reaches the port can send tasks and read updates.")
    var insecure = false

    @Option(help: ArgumentHelp("Write the bound port to this file once listening (for scripts using port 0).", valueName: "file"))
    var portFile: String?

    @Flag(help: ArgumentHelp("Ask the worker these settings describe for GET /v1/health and exit: 0 when it answers 200, 1 otherwise. Dials 127.0.0.1 for an all-interfaces address. Without TLS settings it uses FEDPI_HEALTH_CERT, FEDPI_HEALTH_KEY and FEDPI_HEALTH_CA when that certificate is readable (the image's HEALTHCHECK)."))
    var healthCheck = false

    @Option(help: .hidden)
    var debugCorruptUpdates: String?

    func validate() throws {
        guard ModelZoo.names.contains(model) else { throw ValidationError(ModelZoo.UnknownModel(name: model).description) }
        if let f = debugCorruptUpdates, TaskRunner.Fault(rawValue: f) == nil { throw ValidationError("unknown fault \(f)") }
        if let lanes, lanes < 1 { throw ValidationError("--lanes must be at least 1") }
    }

    func run() async throws {
        let s = try settings()
        if healthCheck { return try await probe(s) }
        Memory.configureAllocator()
        LineLogHandler.bootstrap()
        var logger = Logger(label: "fedpi-worker")
        logger[metadataKey: "node"] = "\(s.name)"
        let identity: WorkerIdentity?
        do {
            let files = try s.tlsFiles()
            try s.checkExposure(tls: files != nil)
            identity = try files.map { files throws in try WorkerIdentity(files: files, deny: s.deny) }
        } catch {
            throw ValidationError("\(error)")
        }
        // SIGHUP re-reads the deny-list from the config file with the certificates
        let config = self.config, initialDeny = s.deny
        let currentDeny: @Sendable () throws -> Set<String> = {
            guard let config else { return initialDeny }
            var fresh = WorkerSettings()
            try fresh.load(path: config)
            return fresh.deny
        }
        let service = try WorkerService(settings: s, model: model, fault: debugCorruptUpdates.flatMap(TaskRunner.Fault.init(rawValue:)),
                                        identity: identity, currentDeny: currentDeny, logger: logger)
        let portFile = self.portFile
        try await service.run { port in
            if let portFile { try? String(port).write(toFile: portFile, atomically: true, encoding: .utf8) }
        }
        logger.info("stopped")
    }

    /// The settings file, then the flags.
    func settings() throws -> WorkerSettings {
        var s = WorkerSettings()
        do {
            if let config { try s.load(path: config) }
            if let name { s.name = name }
            if let listen { (s.host, s.port) = try WorkerSettings.parseListen(listen) }
            if let data { s.data = data }
            if let classes { s.classes = classes }
            if let partition { s.partition = partition }
            if let limit { s.limit = limit }
            if let testLimit { s.testLimit = testLimit }
            if let stateDir { s.stateDir = stateDir }
            if let lanes { s.lanes = lanes }
            if let tlsCert { s.tlsCertificate = tlsCert }
            if let tlsKey { s.tlsKey = tlsKey }
            if let tlsCa { s.tlsAuthority = tlsCa }
            if insecure { s.insecure = true }
        } catch {
            throw ValidationError("\(error)")
        }
        return s
    }

    /// --health-check: one GET /v1/health, the answer printed, the exit code for HEALTHCHECK.
    func probe(_ s: WorkerSettings) async throws {
        let environment = ProcessInfo.processInfo.environment
        var files: TLSFiles?
        do { files = try s.tlsFiles(environment: environment) } catch { throw ValidationError("\(error)") }
        if files == nil, let certificate = environment["FEDPI_HEALTH_CERT"], FileManager.default.isReadableFile(atPath: certificate) {
            files = TLSFiles(certificate: certificate, key: environment["FEDPI_HEALTH_KEY"] ?? "", authority: environment["FEDPI_HEALTH_CA"] ?? "")
        }
        let host = ["0.0.0.0", "::", ""].contains(s.host) ? "127.0.0.1" : s.host
        do {
            let (status, body) = try await HealthProbe.check(host: host, port: s.port, tls: files)
            print(status, body.filter { $0 != "\n" && $0 != "\r" })
            if status != 200 { throw ExitCode(1) }
        } catch let failure as HealthProbe.Failure {
            print("unhealthy: \(failure)")
            throw ExitCode(1)
        }
    }
}
