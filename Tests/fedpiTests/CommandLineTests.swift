import FedPiPredict
import FedPiTesting
import Foundation
import XCTest

/// Runs the real `fedpi` executable, as a user would.
final class CommandLineTests: XCTestCase {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// `fedpi` is built next to the test bundle (this target depends on it).
    var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("fedpi")
    }

    func fedpi(_ arguments: String...) throws -> Output { try fedpi(arguments) }

    func fedpi(_ arguments: [String]) throws -> Output {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Output(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    func testExecutableIsBuilt() {
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: executable.path), "missing \(executable.path)")
    }

    func testInspectListsSplitsAndClasses() throws {
        let dir = IDXFixtures.syntheticDirectory(train: 200, test: 50, gzip: true)
        let r = try fedpi("data", "inspect", dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: 200 images of 28x28 pixels"), r.stdout)
        XCTAssertTrue(r.stdout.contains("test: 50 images of 28x28 pixels"), r.stdout)
        XCTAssertTrue(r.stdout.contains("class   0:"), r.stdout)
    }

    func testTrainShowsProgressAndLearns() throws {
        let dir = IDXFixtures.syntheticDirectory(train: 600, test: 200, gzip: false)
        let r = try fedpi("train", "--data", dir, "--model", "mnist-mlp", "--epochs", "3", "--batch-size", "32", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("samples/s") && r.stderr.contains("ETA") && r.stderr.contains("loss"), r.stderr)
        XCTAssertTrue(r.stdout.contains("test accuracy: "), r.stdout)
        let json = try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.hasPrefix("{") })
        let result = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        XCTAssertGreaterThan(result["test_accuracy"] as! Double, 0.9)
        XCTAssertEqual(result["train_samples"] as? Int, 1800)
        XCTAssertLessThan(result["peak_rss_mib"] as! Double, 64)  // mnist-mlp on 600 images: ~24 MiB
    }

    /// IDX files exported as PNG class folders (fedpi data export), inspected, and trained on: the same
    /// images, so the same accuracy within seed noise.
    func testExportedImageFoldersInspectAndTrainLikeTheIDXFiles() throws {
        let idx = IDXFixtures.syntheticDirectory(train: 600, test: 200, gzip: true)
        let folders = IDXFixtures.temporaryDirectory("fedpi-png")
        var r = try fedpi("data", "export", "--data", idx, "--out", folders)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: 600 images of 28x28"), r.stdout)
        IDXFixtures.write(Array("not an image".utf8), to: folders + "/train/3/broken.png")
        r = try fedpi("data", "inspect", folders)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("layout: image class folders (train, test)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("train: 600 images, 1 skipped"), r.stdout)
        XCTAssertTrue(r.stdout.contains("28x28 (600)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("broken.png: not a readable image"), r.stdout)
        var accuracy: [Double] = []
        for data in [idx, folders] {
            r = try fedpi("train", "--data", data, "--model", "mnist-mlp", "--epochs", "3", "--batch-size", "32", "--json")
            XCTAssertEqual(r.status, 0, r.stderr)
            let json = try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.hasPrefix("{") })
            accuracy.append((try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any])["test_accuracy"] as! Double)
        }
        XCTAssertTrue(r.stderr.contains("skipped 1 file(s)") && r.stderr.contains("broken.png"), r.stderr)
        XCTAssertGreaterThan(accuracy[1], 0.9)
        XCTAssertEqual(accuracy[0], accuracy[1], accuracy: 0.05)
        // a model of other classes or another input size is refused with the reason
        r = try fedpi("train", "--data", folders, "--model", "xray-cnn")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("has labels up to 9") && r.stderr.contains("xray-cnn has 2 classes"), r.stderr)
        r = try fedpi("train", "--data", idx, "--model", "xray-cnn")
        XCTAssertTrue(r.stderr.contains("28x28 images; xray-cnn takes 64x64"), r.stderr)
    }

    /// xray-cnn on chest-X-ray-like folders (3:1 imbalance, odd sizes, PNG, RGB PNG and JPEG) with
    /// balanced class weights: it learns, and reports recall, precision and the confusion matrix.
    func testXrayCNNOnImageFoldersWithClassWeightsAndPerClassMetrics() throws {
        let dir = IDXFixtures.temporaryDirectory("fedpi-xray")
        IDXFixtures.xrayLikeFolders(dir, counts: ["train": [40, 120], "test": [30, 30]])
        let model = dir + "/xray.safetensors"
        let r = try fedpi("train", "--data", dir, "--model", "xray-cnn", "--epochs", "4", "--batch-size", "16", "--lr", "0.02",
                          "--class-weights", "balanced", "--json", "--save", model)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("class weights: 2.000 0.667"), r.stdout)
        XCTAssertTrue(r.stdout.contains("NORMAL") && r.stdout.contains("precision"), r.stdout)
        let json = try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.hasPrefix("{") })
        let result = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        XCTAssertGreaterThan(result["test_accuracy"] as! Double, 0.85, r.stdout)
        let perClass = try XCTUnwrap(result["per_class"] as? [[String: Any]])
        XCTAssertEqual(perClass.map { $0["name"] as? String }, ["NORMAL", "PNEUMONIA"])
        XCTAssertEqual(perClass.map { $0["support"] as? Int }, [30, 30])
        let confusion = try XCTUnwrap(result["confusion"] as? [[Int]])
        XCTAssertEqual(confusion.flatMap { $0 }.reduce(0, +), 60)
        XCTAssertEqual(Double(confusion[0][0] + confusion[1][1]) / 60, result["test_accuracy"] as! Double, accuracy: 1e-6)
        XCTAssertEqual(perClass[0]["recall"] as! Double, Double(confusion[0][0]) / 30, accuracy: 1e-6)
        // predict names the classes by the folders, or by --class-names, which must fit the model
        var p = try fedpi("predict", "--model", model, "--data", dir, "--index", "0")
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(p.stdout.contains("(label 0 NORMAL: ") && p.stdout.contains("1 PNEUMONIA: "), p.stdout)
        p = try fedpi("predict", "--model", model, "--data", dir, "--index", "0", "--class-names", "healthy,sick", "--json")
        let line = try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(line["predicted_name"] as? String, ["healthy", "sick"][line["predicted_class"] as! Int], p.stdout)
        p = try fedpi("predict", "--model", model, "--data", dir, "--index", "0", "--class-names", "a,b,c")
        XCTAssertNotEqual(p.status, 0)
        XCTAssertTrue(p.stderr.contains("3 class names (a,b,c) for xray-cnn, which has 2 classes"), p.stderr)
    }

    func testClassSubsetReportsBothAccuracies() throws {
        let dir = IDXFixtures.syntheticDirectory(train: 400, test: 100, gzip: false)
        let r = try fedpi("train", "--data", dir, "--model", "mnist-mlp", "--classes", "0-3")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("test accuracy (classes 0-3): "), r.stdout)
        XCTAssertTrue(r.stdout.contains("test accuracy (all classes): "), r.stdout)
    }

    func testClearErrors() throws {
        let missing = try fedpi("train", "--data", "/nonexistent-fedpi")
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("no train images in /nonexistent-fedpi"), missing.stderr)

        let zeroEpochs = try fedpi("train", "--epochs", "0")
        XCTAssertNotEqual(zeroEpochs.status, 0)
        XCTAssertTrue(zeroEpochs.stderr.contains("--epochs must be at least 1"), zeroEpochs.stderr)

        let badModel = try fedpi("train", "--model", "resnet50")
        XCTAssertNotEqual(badModel.status, 0)
        XCTAssertTrue(badModel.stderr.contains("known models: mnist-cnn, mnist-mlp"), badModel.stderr)

        let badClasses = try fedpi("train", "--classes", "7-3")
        XCTAssertNotEqual(badClasses.status, 0)
        XCTAssertTrue(badClasses.stderr.contains("is not a class list"), badClasses.stderr)

        // a truncated images file is named in the error
        let dir = IDXFixtures.syntheticDirectory(train: 20, test: 10, gzip: false)
        let path = dir + "/train-images-idx3-ubyte"
        let bytes = IDXFixtures.read(path)
        IDXFixtures.write(Array(bytes[0..<(bytes.count - 100)]), to: path)
        let truncated = try fedpi("train", "--data", dir)
        XCTAssertNotEqual(truncated.status, 0)
        XCTAssertTrue(truncated.stderr.contains(path) && truncated.stderr.contains("truncated"), truncated.stderr)
    }

    /// `fedpi predict` on test images by index, as a PNG and as 784 raw bytes: the same pixels give the
    /// same answer, the trained model gets most labels right, and bad input is an error with the reason.
    func testPredictImagesAndIndices() throws {
        let dir = IDXFixtures.syntheticDirectory(train: 300, test: 20, gzip: true)
        let model = dir + "/m.safetensors"
        XCTAssertEqual(try fedpi("train", "--data", dir, "--model", "mnist-mlp", "--epochs", "4", "--save", model).status, 0)
        let test = IDXFixtures.syntheticImages(count: 20, seed: 2)
        let image = Array(test.pixels[0..<784])
        let png = dir + "/zero.png", raw = dir + "/zero.u8"
        IDXFixtures.write(ImageOutput.encode(image, width: 28, height: 28), to: png)
        IDXFixtures.write(image, to: raw)
        let r = try fedpi("predict", "--model", model, png, raw, "--data", dir, "--json", "--index", "0",
                          "--index", "1", "--index", "2", "--index", "3", "--index", "4", "--index", "5")
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try r.stdout.split(separator: "\n").map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertEqual(lines.count, 8)
        XCTAssertEqual(lines.map { $0["image"] as? String }, [png, raw] + (0..<6).map { "test[\($0)]" })
        for line in lines {
            XCTAssertEqual((line["probabilities"] as? [Double])?.reduce(0, +) ?? 0, 1, accuracy: 1e-6)
        }
        let classes = lines.map { $0["predicted_class"] as? Int }
        XCTAssertEqual(classes[0], classes[2], "the PNG of test image 0 is predicted like test[0]")
        XCTAssertEqual(classes[1], classes[2], "so are its raw bytes")
        let right = lines[2...].filter { $0["predicted_class"] as? Int == $0["label"] as? Int }.count
        XCTAssertGreaterThanOrEqual(right, 5, r.stdout)
        let text = try fedpi("predict", "--model", model, "--data", dir, "--index", "0")
        XCTAssertTrue(text.stdout.contains("test[0]: class \(classes[2]!)") && text.stdout.contains("(label \(test.labels[0])"), text.stdout)
        // mistakes are named
        IDXFixtures.write(Array("not an image".utf8), to: dir + "/bad.png")
        for (args, reason) in [(["--model", model, dir + "/bad.png"], "not an image"), (["--model", model, "--data", dir, "--index", "20"], "outside"),
                               (["--model", model], "give image files"), (["--model", dir + "/none", png], "none")] {
            let e = try fedpi(["predict"] + args)
            XCTAssertNotEqual(e.status, 0)
            XCTAssertTrue(e.stderr.contains(reason), "\(args): \(e.stderr)")
        }
    }

    func testSaveInspectConvertAndInit() throws {
        let dir = IDXFixtures.syntheticDirectory(train: 300, test: 100, gzip: false)
        let f32 = dir + "/m.safetensors", i8 = dir + "/m8.safetensors"
        let trained = try fedpi("train", "--data", dir, "--model", "mnist-mlp", "--epochs", "4", "--save", f32, "--json")
        XCTAssertEqual(trained.status, 0, trained.stderr)
        func accuracy(_ o: Output) throws -> Double {
            let json = try XCTUnwrap(o.stdout.split(separator: "\n").last { $0.hasPrefix("{") })
            return (try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any])["test_accuracy"] as! Double
        }
        XCTAssertGreaterThan(try accuracy(trained), 0.9)
        let inspect = try fedpi("model", "inspect", f32)
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("fc1.weight") && inspect.stdout.contains("[200, 784]") && inspect.stdout.contains("model = mnist-mlp"), inspect.stdout)
        let convert = try fedpi("model", "convert", "--to", "i8", f32, i8)
        XCTAssertEqual(convert.status, 0, convert.stderr)
        let sizes = try [f32, i8].map { try FileManager.default.attributesOfItem(atPath: $0)[.size] as! Int }
        XCTAssertLessThanOrEqual(Double(sizes[1]), 0.26 * Double(sizes[0]))
        // starting from the trained weights with a tiny learning rate keeps the accuracy
        let resumed = try fedpi("train", "--data", dir, "--model", "mnist-mlp", "--init", i8, "--lr", "0.00001", "--limit", "32", "--json")
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("initial weights from"))
        XCTAssertGreaterThan(try accuracy(resumed), try accuracy(trained) - 0.05)
        // a corrupted file is refused with the reason
        var bytes = IDXFixtures.read(f32)
        bytes[bytes.count - 10] ^= 0xFF
        IDXFixtures.write(bytes, to: f32)
        let refused = try fedpi("train", "--data", dir, "--model", "mnist-mlp", "--init", f32)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("checksum mismatch"), refused.stderr)
        // the file tools verify it too: inspect says so and fails, convert writes nothing
        XCTAssertTrue(inspect.stdout.contains("checksum: matches"), inspect.stdout)
        let corrupted = try fedpi("model", "inspect", f32)
        XCTAssertEqual(corrupted.status, 1)
        XCTAssertTrue(corrupted.stdout.contains("checksum: MISMATCH"), corrupted.stdout)
        let laundered = dir + "/laundered.safetensors"
        let converted = try fedpi("model", "convert", "--to", "f16", f32, laundered)
        XCTAssertNotEqual(converted.status, 0)
        XCTAssertTrue(converted.stderr.contains("checksum mismatch"), converted.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: laundered))
    }

    func testSimulatePrintsARowPerRoundAndLearns() throws {
        let dir = IDXFixtures.syntheticDirectory(train: 900, test: 200, gzip: true)
        let save = dir + "/global.safetensors"
        let r = try fedpi("simulate", "--data", dir, "--model", "mnist-mlp", "--rounds", "3", "--batch-size", "32", "--save", save)
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = r.stdout.split(separator: "\n").filter { $0.hasPrefix("    ") }
        XCTAssertEqual(rows.count, 4, r.stdout)  // rounds 0...3
        let columns = try XCTUnwrap(rows.last?.split(separator: " "))  // round, try, accuracy, …
        XCTAssertEqual(columns.count, 8, r.stdout)
        let accuracy = try XCTUnwrap(Double(columns[2].dropLast()), r.stdout)
        XCTAssertGreaterThan(accuracy, 90, r.stdout)  // in percent
        XCTAssertEqual(try fedpi("model", "inspect", save).status, 0)
        let bad = try fedpi("simulate", "--data", dir, "--split", "dirichlet:0:3")
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("dirichlet:ALPHA:N"), bad.stderr)
    }

    /// `fedpi sparse-bench` prints a row per density with both layers' dense and sparse times, and
    /// refuses a density outside 0...1 with the option's name.
    func testSparseBenchPrintsARowPerDensity() throws {
        let r = try fedpi("sparse-bench", "--densities", "0.05,0.5", "--repetitions", "1")
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = r.stdout.split(separator: "\n").filter { $0.contains("%") && $0.contains("x") }
        XCTAssertEqual(rows.count, 2, r.stdout)
        XCTAssertTrue(rows[0].hasPrefix("   5.0%") && rows[1].hasPrefix("  50.0%"), r.stdout)
        for row in rows {
            let numbers = row.split(separator: " ").dropFirst().compactMap { Double($0.replacingOccurrences(of: "x", with: "")) }
            XCTAssertEqual(numbers.count, 6, String(row))
            XCTAssertTrue(numbers.allSatisfy { $0 > 0 }, String(row))
        }
        let bad = try fedpi("sparse-bench", "--densities", "0.1,2")
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--densities: '2' is not a number from 0 to 1"), bad.stderr)
    }

    func testHelpDescribesOptions() throws {
        let r = try fedpi("train", "--help")
        XCTAssertEqual(r.status, 0)
        for option in ["--data", "--model", "--epochs", "--batch-size", "--lr", "--classes", "--seed", "--threads"] {
            XCTAssertTrue(r.stdout.contains(option), "help lacks \(option)")
        }
    }
}
