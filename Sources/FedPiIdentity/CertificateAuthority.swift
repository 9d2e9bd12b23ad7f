import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SwiftASN1
import X509
#if canImport(Glibc)
import Glibc
#endif

/// The fleet CA: a P-256 key (`ca.key`, mode 0600) and a self-signed certificate (`ca.crt`) in one
/// folder. It issues node certificates whose common name and DNS name are the node name and whose
/// URI SAN `fedpi:role/<role>` is the role; every certificate may serve TLS and act as a TLS client.
public struct CertificateAuthority {
    public let directory: String
    public let certificate: FleetCertificate
    let key: Certificate.PrivateKey

    public static func certificatePath(_ directory: String) -> String { directory + "/ca.crt" }
    public static func keyPath(_ directory: String) -> String { directory + "/ca.key" }

    /// Opens an existing CA folder.
    public init(directory: String) throws(IdentityError) {
        self.directory = directory
        certificate = try FleetCertificate(file: CertificateAuthority.certificatePath(directory))
        key = try Keys.read(CertificateAuthority.keyPath(directory))
        guard key.publicKey == certificate.certificate.publicKey else {
            throw IdentityError("\(CertificateAuthority.keyPath(directory)) is not the key of \(CertificateAuthority.certificatePath(directory))")
        }
    }

    /// Creates a CA folder; refuses to overwrite an existing CA.
    @discardableResult
    public static func create(directory: String, name: String, days: Int, now: Date = Date()) throws(IdentityError) -> CertificateAuthority {
        guard (1...36_500).contains(days) else { throw IdentityError("--days must be in 1...36500") }
        if FileManager.default.fileExists(atPath: keyPath(directory)) || FileManager.default.fileExists(atPath: certificatePath(directory)) {
            throw IdentityError("\(directory) already holds a CA (ca.key or ca.crt); move it away to make a new one")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw IdentityError("cannot create \(directory): \(error)")
        }
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let der: [UInt8]
        do {
            let subject = try DistinguishedName { CommonName(name); OrganizationName("FedPi fleet") }
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: key.publicKey)
            }
            let certificate = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: key.publicKey,
                notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
                issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: key)
            der = try Self.der(certificate)
        } catch {
            throw IdentityError("cannot make the CA certificate: \(error)")
        }
        try Keys.write(key, to: keyPath(directory))
        try IdentityFiles.write(PEMText.certificate(der), to: certificatePath(directory))
        return try CertificateAuthority(directory: directory)
    }

    static func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    /// A certificate for `publicKey`, naming node `name` with `role`, valid for `days`.
    public func issue(name: String, role: Role, publicKey: Certificate.PublicKey, ips: [String] = [], dns: [String] = [],
                      days: Int, now: Date = Date()) throws(IdentityError) -> FleetCertificate {
        try NodeName.check(name)
        guard (1...36_500).contains(days) else { throw IdentityError("--days must be in 1...36500") }
        var alternatives: [GeneralName] = [.dnsName(name), .uniformResourceIdentifier(FleetCertificate.roleURI(role))]
        for d in dns where d != name {
            try NodeName.check(d, what: "DNS name")
            alternatives.append(.dnsName(d))
        }
        for ip in ips { alternatives.append(.ipAddress(ASN1OctetString(contentBytes: try IPAddress.bytes(ip)[...]))) }
        // never beyond the CA's own validity: a chain that outlives its root fails anyway
        let end = min(now.addingTimeInterval(Double(days) * 86_400), certificate.notValidAfter)
        do {
            let subject = try DistinguishedName { CommonName(name); OrganizationalUnitName(role.rawValue) }
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyAgreement: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(alternatives)
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: try certificate.certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            }
            let issued = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: publicKey,
                notValidBefore: now.addingTimeInterval(-300), notValidAfter: end,
                issuer: certificate.certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: extensions, issuerPrivateKey: key)
            return try FleetCertificate(der: try Self.der(issued))
        } catch let e as IdentityError {
            throw e
        } catch {
            throw IdentityError("cannot issue a certificate for \(name): \(error)")
        }
    }

    /// Signs a request made on a board (`fedpi certs request`): its signature must hold; the name is
    /// the request's common name unless given; the role is the CA's decision, never the request's.
    /// DNS and IP names the request asks for are kept.
    public func sign(request pem: String, source: String, role: Role, name: String? = nil, ips: [String] = [], dns: [String] = [],
                     days: Int) throws(IdentityError) -> FleetCertificate {
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateSigningRequest(pemEncoded: pem)
        } catch {
            throw IdentityError("\(source): not a PEM certificate request (CSR)")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw IdentityError("\(source): the request's signature does not match its key")
        }
        var requestedName: String?
        for rdn in csr.subject {
            for a in rdn where a.type == .RDNAttributeType.commonName { requestedName = (try? String(a.value)) ?? "\(a.value)" }
        }
        guard let nodeName = name ?? requestedName else { throw IdentityError("\(source): the request names no node; give --name") }
        var requestedDNS: [String] = [], requestedIPs: [String] = []
        if let extensions = try? csr.attributes.extensionRequest?.extensions,
           let names = try? extensions.subjectAlternativeNames {
            for n in names {
                switch n {
                case .dnsName(let d): requestedDNS.append(d)
                case .ipAddress(let o): requestedIPs.append(try IPAddress.text(Array(o.bytes)))
                default: break
                }
            }
        }
        return try issue(name: nodeName, role: role, publicKey: csr.publicKey, ips: requestedIPs + ips, dns: requestedDNS + dns, days: days)
    }

    /// A key and a certificate request for node `name` (on the board: the key never leaves it).
    public static func request(name: String, ips: [String] = [], dns: [String] = []) throws(IdentityError) -> (key: Certificate.PrivateKey, csr: String) {
        try NodeName.check(name)
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        var alternatives: [GeneralName] = [.dnsName(name)]
        for d in dns where d != name {
            try NodeName.check(d, what: "DNS name")
            alternatives.append(.dnsName(d))
        }
        for ip in ips { alternatives.append(.ipAddress(ASN1OctetString(contentBytes: try IPAddress.bytes(ip)[...]))) }
        do {
            let extensions = try Certificate.Extensions { SubjectAlternativeNames(alternatives) }
            let attributes = try CertificateSigningRequest.Attributes([.init(ExtensionRequest(extensions: extensions))])
            let csr = try CertificateSigningRequest(
                version: .v1, subject: try DistinguishedName { CommonName(name) }, privateKey: key,
                attributes: attributes, signatureAlgorithm: .ecdsaWithSHA256)
            return (key, try csr.serializeAsPEM().pemString + "\n")
        } catch {
            throw IdentityError("cannot make a certificate request: \(error)")
        }
    }
}

/// Private keys on disk: PEM (PKCS#8 or SEC1), written with mode 0600.
public enum Keys {
    public static func read(_ path: String) throws(IdentityError) -> Certificate.PrivateKey {
        let text = try IdentityFiles.readText(path, what: "key")
        do {
            return try Certificate.PrivateKey(pemEncoded: text)
        } catch {
            throw IdentityError("key \(path): not a PEM private key (P-256, P-384, RSA or Ed25519)")
        }
    }

    public static func write(_ key: Certificate.PrivateKey, to path: String) throws(IdentityError) {
        do {
            try IdentityFiles.write(try key.serializeAsPEM().pemString + "\n", to: path, mode: 0o600)
        } catch let e as IdentityError {
            throw e
        } catch {
            throw IdentityError("cannot encode the key for \(path): \(error)")
        }
    }
}

/// Node names become DNS names in certificates: letters, digits and hyphens, dot-separated labels.
public enum NodeName {
    public static func check(_ name: String, what: String = "node name") throws(IdentityError) {
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        let ok = !name.isEmpty && name.utf8.count <= 253 && labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && label.first != "-" && label.last != "-"
                && label.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-") }
        }
        guard ok else {
            throw IdentityError("\(what) \(name) cannot be a DNS name: use letters, digits and hyphens (e.g. pi-1), dot-separated")
        }
    }
}

/// IPv4 dotted quads and IPv6 addresses as the 4 or 16 bytes a certificate holds.
enum IPAddress {
    static func bytes(_ text: String) throws(IdentityError) -> [UInt8] {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: v6) { Array($0) } }
        throw IdentityError("\(text) is not an IP address")
    }

    static func text(_ bytes: [UInt8]) throws(IdentityError) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : bytes.count == 16 ? AF_INET6 : -1
        guard family >= 0, bytes.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &buffer, 64) }) != nil else {
            throw IdentityError("an IP address of \(bytes.count) bytes")
        }
        return String(cString: buffer)
    }
}
