import ArgumentParser
import FedPiIdentity
import Foundation

struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "The fleet's certificate authority: make it, issue and sign node certificates, inspect them.",
        discussion: """
            A new fleet (README "Security"):
              fedpi certs init --dir fleet-ca
              fedpi certs issue --ca fleet-ca --role aggregator --name aggregator --out tls/aggregator
              fedpi certs issue --ca fleet-ca --role worker --name pi-1 --ip 10.0.0.11 --out tls/pi-1
            or, keeping each board's key on the board:
              fedpi certs request --name pi-1 --out /etc/fedpi/tls          (on the board)
              fedpi certs sign --ca fleet-ca --role worker pi-1.csr          (on the CA's machine)
            A certificate's common name and DNS name are the node name; its role (worker, aggregator,
            observer, admin) is the URI SAN fedpi:role/ROLE. Keys are P-256, written with mode 0600.
            """,
        subcommands: [InitCA.self, Issue.self, Request.self, Sign.self, Inspect.self])
}

struct SANOptions: ParsableArguments {
    @Option(name: .customLong("ip"), help: ArgumentHelp("An IP address the node is reached at (repeatable).", valueName: "address"))
    var ips: [String] = []

    @Option(name: .customLong("dns"), help: ArgumentHelp("Another DNS name of the node (repeatable).", valueName: "name"))
    var dns: [String] = []
}

extension CertsCommand {
    struct InitCA: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init", abstract: "Make a fleet CA: DIR/ca.key (P-256, mode 0600) and DIR/ca.crt.")

        @Option(help: ArgumentHelp("Folder for the CA (created; an existing CA is never overwritten).", valueName: "dir"))
        var dir: String

        @Option(help: "The CA's common name.")
        var name = "FedPi fleet CA"

        @Option(help: "Days the CA is valid.")
        var days = 3650

        func run() throws {
            let ca = try CertificateAuthority.create(directory: dir, name: name, days: days)
            print("made CA \(name) in \(dir): ca.crt (share with every node), ca.key (keep offline; mode 0600)")
            print("valid until \(IdentityFiles.day(ca.certificate.notValidAfter)), fingerprint \(ca.certificate.fingerprint)")
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "issue", abstract: "Make a key and a certificate for a node: OUT/NAME.key, OUT/NAME.crt and OUT/ca.crt.")

        @Option(help: ArgumentHelp("The CA folder (from certs init).", valueName: "dir"))
        var ca: String

        @Option(help: ArgumentHelp("worker, aggregator, observer or admin.", valueName: "role"))
        var role: String

        @Option(help: ArgumentHelp("Node name: the name in fleet.toml (letters, digits, hyphens).", valueName: "name"))
        var name: String

        @OptionGroup var names: SANOptions

        @Option(help: "Days the certificate is valid (never beyond the CA).")
        var days = 825

        @Option(help: ArgumentHelp("Folder for the files (created).", valueName: "dir"))
        var out: String

        func validate() throws { _ = try parseRole(role) }

        func run() throws {
            let authority = try CertificateAuthority(directory: ca)
            let (key, _) = try CertificateAuthority.request(name: name)
            let certificate = try authority.issue(name: name, role: try parseRole(role), publicKey: key.publicKey,
                                                  ips: names.ips, dns: names.dns, days: days)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try Keys.write(key, to: "\(out)/\(name).key")
            try writeCertificate(certificate, to: "\(out)/\(name).crt")
            try writeCertificate(authority.certificate, to: "\(out)/ca.crt")
            print("issued \(role) certificate for \(name): \(out)/\(name).crt, key \(out)/\(name).key (mode 0600), CA \(out)/ca.crt")
            printSummary(certificate)
        }
    }

    struct Request: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "request",
            abstract: "On a board: make a key (OUT/NAME.key, mode 0600) and a certificate request (OUT/NAME.csr) for the CA to sign.")

        @Option(help: ArgumentHelp("This node's name in fleet.toml.", valueName: "name"))
        var name: String

        @OptionGroup var names: SANOptions

        @Option(help: ArgumentHelp("Folder for the files (created).", valueName: "dir"))
        var out: String

        func run() throws {
            let (key, csr) = try CertificateAuthority.request(name: name, ips: names.ips, dns: names.dns)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            if FileManager.default.fileExists(atPath: "\(out)/\(name).key") {
                throw ValidationError("\(out)/\(name).key exists; move it away first (a renewal signs the same request again)")
            }
            try Keys.write(key, to: "\(out)/\(name).key")
            try IdentityFiles.write(csr, to: "\(out)/\(name).csr")
            print("key \(out)/\(name).key (stays here), request \(out)/\(name).csr: sign it with fedpi certs sign on the CA's machine")
        }
    }

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sign",
            abstract: "Sign a certificate request: writes the certificate next to it (NAME.crt) or to --out.",
            discussion: "The role is the CA's decision; the name is the request's unless --name is given. Signing the same request again renews the certificate for the same key.")

        @Option(help: ArgumentHelp("The CA folder.", valueName: "dir"))
        var ca: String

        @Option(help: ArgumentHelp("worker, aggregator, observer or admin.", valueName: "role"))
        var role: String

        @Option(help: ArgumentHelp("Node name, if not the request's.", valueName: "name"))
        var name: String?

        @OptionGroup var names: SANOptions

        @Option(help: "Days the certificate is valid (never beyond the CA).")
        var days = 825

        @Option(help: ArgumentHelp("Where to write the certificate.", valueName: "file"))
        var out: String?

        @Argument(help: ArgumentHelp("The request (.csr, PEM).", valueName: "csr"))
        var request: String

        func validate() throws { _ = try parseRole(role) }

        func run() throws {
            let authority = try CertificateAuthority(directory: ca)
            let certificate = try authority.sign(request: try IdentityFiles.readText(request, what: "request"), source: request,
                                                 role: try parseRole(role), name: name, ips: names.ips, dns: names.dns, days: days)
            let path = out ?? (request.hasSuffix(".csr") ? String(request.dropLast(4)) : request) + ".crt"
            try writeCertificate(certificate, to: path)
            print("signed \(role) certificate for \(certificate.name ?? "?"): \(path)")
            printSummary(certificate)
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "inspect", abstract: "Show a certificate: subject, role, names, validity, SHA-256 fingerprint; with --ca, whether that CA signed it.")

        @Option(help: ArgumentHelp("A CA folder or ca.crt to check the signature against.", valueName: "ca"))
        var ca: String?

        @Argument(help: ArgumentHelp("A certificate (PEM).", valueName: "file"))
        var file: String

        func run() throws {
            let c = try FleetCertificate(file: file)
            print("\(file):")
            print("  subject      \(c.certificate.subject)")
            print("  issuer       \(c.certificate.issuer)")
            print("  role         \(c.isAuthority ? "certificate authority" : c.role?.rawValue ?? "none (not a FedPi node certificate)")")
            printSummary(c)
            if let ca {
                let path = FileManager.default.fileExists(atPath: CertificateAuthority.certificatePath(ca)) ? CertificateAuthority.certificatePath(ca) : ca
                let authority = try FleetCertificate(file: path)
                print("  signed by    \(path): \(c.isSigned(by: authority) ? "yes" : "NO")")
            }
        }
    }
}

func parseRole(_ text: String) throws -> Role {
    guard let r = Role(rawValue: text) else {
        throw ValidationError("--role must be one of \(Role.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return r
}

func writeCertificate(_ c: FleetCertificate, to path: String) throws {
    try IdentityFiles.write(PEMText.certificate(c.der), to: path)
}

func printSummary(_ c: FleetCertificate) {
    let now = Date()
    let left = Int(c.notValidAfter.timeIntervalSince(now) / 86_400)
    if !c.dnsNames.isEmpty { print("  DNS names    \(c.dnsNames.joined(separator: ", "))") }
    if !c.ipAddresses.isEmpty { print("  IP addresses \(c.ipAddresses.joined(separator: ", "))") }
    print("  valid        \(IdentityFiles.day(c.notValidBefore)) to \(IdentityFiles.day(c.notValidAfter))"
          + (left < 0 ? " (EXPIRED)" : " (\(left) days left)"))
    print("  sha256       \(c.fingerprint)")
}
