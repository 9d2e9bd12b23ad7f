import FedPiTesting
import Foundation
import XCTest

/// Crash safety of FedPi's file writes (temporary file, fsync, rename, fsync of the folder; the path
/// every checkpoint, final model and worker update takes): `fedpi model convert` is SIGKILLed at
/// random instants while it rewrites the same file 50 times; every time the file left is a complete,
/// valid old or new version.
final class CrashSafetyTests: XCTestCase {
    var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("fedpi")
    }

    func run(_ arguments: [String], killAfter: Double? = nil) throws -> Int32 {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        if let killAfter {
            usleep(useconds_t(killAfter * 1_000_000))
            kill(p.processIdentifier, SIGKILL)
        }
        p.waitUntilExit()
        return p.terminationStatus
    }

    func testKilledWritesLeaveAValidOldOrNewFile() throws {
        let dir = IDXFixtures.temporaryDirectory("fedpi-crash")
        let source = dir + "/source.safetensors", target = dir + "/checkpoint.safetensors"
        // an mnist-cnn sized file (4.8 MB) and its two re-encodings, the versions the target can hold
        let data = IDXFixtures.syntheticDirectory(train: 64, test: 16, gzip: false)
        XCTAssertEqual(try run(["train", "--data", data, "--model", "mnist-cnn", "--limit", "64", "--test-limit", "16", "--save", source]), 0)
        XCTAssertEqual(try run(["model", "convert", "--to", "f16", source, dir + "/v-f16"]), 0)
        XCTAssertEqual(try run(["model", "convert", "--to", "f32", source, dir + "/v-f32"]), 0)
        let versions = [IDXFixtures.read(dir + "/v-f16"), IDXFixtures.read(dir + "/v-f32")]
        XCTAssertEqual(try run(["model", "convert", "--to", "f16", source, target]), 0)
        var killed = 0, finished = 0
        var g = SystemRandomNumberGenerator()
        for i in 0..<50 {
            let status = try run(["model", "convert", "--to", i % 2 == 0 ? "f32" : "f16", source, target],
                                 killAfter: Double.random(in: 0...0.1, using: &g))
            if status == 0 { finished += 1 } else { killed += 1 }
            let left = IDXFixtures.read(target)
            XCTAssertTrue(versions.contains(left), "after kill \(i) the file is \(left.count) bytes: neither version")
        }
        print("50 rewrites: \(killed) killed mid-way, \(finished) finished; the file was a whole version every time")
        XCTAssertGreaterThan(killed, 10, "the kills must land during the work")
    }
}
