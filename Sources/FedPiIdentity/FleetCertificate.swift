#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SwiftASN1
import X509

/// A certificate of the fleet as FedPi reads it: the node name (subject common name, also a DNS name
/// in the subject alternative names, which is what the aggregator's TLS checks), the role (the URI
/// SAN `fedpi:role/<role>`), the addresses, the validity and the SHA-256 fingerprint of the DER bytes.
public struct FleetCertificate: Sendable {
    public let certificate: Certificate
    public let der: [UInt8]

    public init(der: [UInt8]) throws(IdentityError) {
        do {
            certificate = try Certificate(derEncoded: der)
        } catch {
            throw IdentityError("not an X.509 certificate: \(error)")
        }
        self.der = der
    }

    public init(pem: String, source: String) throws(IdentityError) {
        let document: PEMDocument
        do {
            document = try PEMDocument(pemString: pem)
        } catch {
            throw IdentityError("\(source): not a PEM certificate")
        }
        guard document.discriminator == "CERTIFICATE" else {
            throw IdentityError("\(source): holds a \(document.discriminator), not a CERTIFICATE")
        }
        do {
            try self.init(der: document.derBytes)
        } catch {
            throw IdentityError("\(source): \(error.description)")
        }
    }

    /// Reads the first certificate of a PEM file.
    public init(file: String) throws(IdentityError) {
        try self.init(pem: try IdentityFiles.readText(file, what: "certificate"), source: file)
    }

    /// The URI SAN that carries a role.
    public static func roleURI(_ role: Role) -> String { "fedpi:role/\(role.rawValue)" }

    public var name: String? {
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                if let s = String(attribute.value) { return s }
                return "\(attribute.value)"
            }
        }
        return nil
    }

    var alternativeNames: [GeneralName] {
        ((try? certificate.extensions.subjectAlternativeNames).flatMap { $0 }).map(Array.init) ?? []
    }

    /// The role the fleet CA gave this certificate; nil for a certificate FedPi did not issue.
    public var role: Role? {
        for case .uniformResourceIdentifier(let uri) in alternativeNames {
            if uri.hasPrefix("fedpi:role/"), let r = Role(rawValue: String(uri.dropFirst("fedpi:role/".count))) { return r }
        }
        return nil
    }

    public var dnsNames: [String] {
        alternativeNames.compactMap { if case .dnsName(let d) = $0 { d } else { nil } }
    }

    public var ipAddresses: [String] {
        alternativeNames.compactMap {
            guard case .ipAddress(let octets) = $0 else { return nil }
            return try? IPAddress.text(Array(octets.bytes))
        }
    }

    public var notValidBefore: Date { certificate.notValidBefore }
    public var notValidAfter: Date { certificate.notValidAfter }
    public var isAuthority: Bool {
        if case .isCertificateAuthority? = try? certificate.extensions.basicConstraints { return true }
        return false
    }

    /// SHA-256 of the DER bytes, 64 lowercase hex digits: what deny-lists name.
    public var fingerprint: String { FleetCertificate.fingerprint(der: der) }

    public static func fingerprint(der: [UInt8]) -> String {
        SHA256Digest.hex(der)
    }

    /// A deny-list entry written with colons or in upper case, as other tools print fingerprints.
    public static func normalizedFingerprint(_ text: String) -> String? {
        let hex = text.lowercased().filter { $0 != ":" }
        guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else { return nil }
        return hex
    }

    /// Whether `authority` signed this certificate (issuer name and signature).
    public func isSigned(by authority: FleetCertificate) -> Bool {
        certificate.issuer == authority.certificate.subject
            && authority.certificate.publicKey.isValidSignature(certificate.signature, for: certificate)
    }

    /// Why this certificate may not stand for node `expected` with `role` at `now`, or nil when it may.
    public func problem(expectedName: String?, role expectedRole: Role?, authority: FleetCertificate,
                        deny: Set<String>, now: Date = Date()) -> String? {
        let who = name ?? "(no name)"
        if !isSigned(by: authority) { return "the certificate of \(who) is not signed by the fleet CA" }
        if now > notValidAfter { return "the certificate of \(who) expired on \(IdentityFiles.day(notValidAfter))" }
        if now < notValidBefore { return "the certificate of \(who) is not valid before \(IdentityFiles.day(notValidBefore))" }
        if deny.contains(fingerprint) { return "the certificate of \(who) is revoked (fingerprint \(fingerprint) is on the deny-list)" }
        if let expectedName, name != expectedName || !dnsNames.contains(expectedName) {
            return "the certificate of \(expectedName) is for \(who)"
        }
        if let expectedRole, role != expectedRole {
            return "the certificate of \(who) has the role \(role?.rawValue ?? "none"), not \(expectedRole.rawValue)"
        }
        return nil
    }
}

/// A certificate, key or CA that cannot be used, with the reason.
public struct IdentityError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
