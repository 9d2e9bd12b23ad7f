import ArgumentParser
import FedPiData
import FedPiEngine
import FedPiFederation
import FedPiTraining
import FedPiPredict
import FedPiWire
import Foundation

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Classify images with a model file: the class and every class's probability.",
        discussion: """
            Images are PNG, JPEG, BMP or GIF (decoded by stb_image), or raw grayscale bytes, exactly one per input pixel (784 for 28x28). \
            They are converted to grayscale and resized to the model's input (area averaging when shrinking, bilinear \
            when growing); for the MNIST-format models an image with a light border (dark ink on paper) is inverted, since \
            those data sets are light on dark. With --data and --index the \
            image comes from a data set's test split (or --split train) and its label is shown beside the prediction.
            Classes are named by --class-names, else by the class folders of --data, else shown by number.
            Examples:
              fedpi predict --model final.safetensors digit.png shirt.jpg
              fedpi predict --model final.safetensors --data /usr/share/datasets/fashion-mnist --index 0 --index 1 --json
            """)

    @Option(help: ArgumentHelp("A model file (safetensors written by FedPi: the aggregator's final model, a checkpoint).", valueName: "file"))
    var model: String

    @Argument(help: ArgumentHelp("Image files.", valueName: "image"))
    var images: [String] = []

    @Option(help: ArgumentHelp("A data folder (MNIST-format files or image class folders) to take images from (with --index).", valueName: "dir"))
    var data: String?

    @Option(help: ArgumentHelp("Index of an image in the data set's split (repeatable).", valueName: "n"))
    var index: [Int] = []

    @Option(help: ArgumentHelp("test or train.", valueName: "split"))
    var split: String = "test"

    @Option(help: ArgumentHelp("Names of the model's classes, comma-separated (default: --data's class folders).", valueName: "names"))
    var classNames: String?

    @Flag(help: "One JSON object per image.")
    var json = false

    func validate() throws {
        guard !images.isEmpty || !index.isEmpty else { throw ValidationError("give image files, or --data DIR with --index N") }
        guard index.isEmpty || data != nil else { throw ValidationError("--index needs --data") }
        guard MNISTDirectory.Split(rawValue: split) != nil else { throw ValidationError("--split must be test or train") }
    }

    struct Line: Encodable {
        var image: String, predictedClass: Int, predictedName: String?, probabilities: [Double], label: Int?
    }

    func run() throws {
        let bytes = try FileIO.read(model)
        let file = try SafetensorsFile.decode(bytes)
        guard let id = file.metadata["model"] else { throw ValidationError("\(model) has no model id in its metadata (not written by FedPi)") }
        let net = try ModelZoo.make(id, seed: 0)
        let (values, header) = try ModelFile.decode(bytes, expecting: net.parameters.entries, model: id)
        guard header.kind == .weights else { throw ValidationError("\(model) holds an update (a delta), not a model's weights") }
        net.parameters.load(values)
        let (h, w) = (net.inputShape[0], net.inputShape[1])
        let folder = try data.map { try DataDirectory($0) }
        let names = try classNames.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) } ?? folder?.classNames
        if let names, names.count != net.classes {
            throw ValidationError("\(names.count) class names (\(names.joined(separator: ","))) for \(id), which has \(net.classes) classes")
        }
        func name(_ c: Int) -> String { names.map { "\(c) \($0[c])" } ?? "\(c)" }
        var inputs: [(name: String, pixels: [UInt8], label: Int?)] = []
        for path in images {
            do {
                inputs.append((path, try ImageInput.pixels(from: try FileIO.read(path), width: w, height: h,
                                                                invertLightBorder: ModelZoo.lightOnDark(id)), nil))
            } catch {
                throw ValidationError("\(path): \(error)")
            }
        }
        if let data, let folder, !index.isEmpty {
            let set = try folder.load(MNISTDirectory.Split(rawValue: split)!, height: h, width: w)
            guard set.height == h, set.width == w else { throw ValidationError("\(data) has \(set.height)x\(set.width) images; \(id) takes \(h)x\(w)") }
            for i in index {
                guard (0..<set.count).contains(i) else { throw ValidationError("--index \(i) is outside 0..<\(set.count)") }
                inputs.append(("\(split)[\(i)]", Array(set.pixels[(i * h * w)..<((i + 1) * h * w)]), Int(set.labels[i])))
            }
        }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        for input in inputs {
            let p = try Prediction(model: net, pixels: input.pixels)
            if json {
                let line = Line(image: input.name, predictedClass: p.predictedClass, predictedName: names?[p.predictedClass],
                                probabilities: p.probabilities, label: input.label)
                print(String(decoding: try encoder.encode(line), as: UTF8.self))
                continue
            }
            let label = input.label.map { " (label \(name($0)): \($0 == p.predictedClass ? "right" : "wrong"))" } ?? ""
            print("\(input.name): class \(name(p.predictedClass)), \(Format.percent(p.probabilities[p.predictedClass]))\(label)")
            print("  " + p.probabilities.enumerated().map { "\(name($0.offset)): \(Format.fixed(100 * $0.element, 1))%" }.joined(separator: "  "))
        }
    }
}
