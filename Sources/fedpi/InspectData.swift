import FedPiFederation
import FedPiTraining
import ArgumentParser
import FedPiData

struct InspectData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show the files, image size and per-class counts of an MNIST-format data set.")

    @Argument(help: ArgumentHelp("Folder of MNIST-format IDX files (raw or .gz).", valueName: "dir"))
    var directory: String

    func run() throws {
        let dir = MNISTDirectory(directory)
        print("data set \(directory)")
        for split in MNISTDirectory.Split.allCases {
            let files = try dir.files(split)
            let set = try LabeledImages.load(images: files.images, labels: files.labels)
            print("\(split.rawValue): \(set.count) images of \(set.height)x\(set.width) pixels")
            print("  images: \(files.images)")
            print("  labels: \(files.labels)")
            let counts = set.classCounts()
            print("  classes: \(counts.count)")
            for c in counts {
                print("    class \(Format.padLeft(String(c.label), 3)): \(Format.padLeft(String(c.count), 6))")
            }
        }
    }
}
