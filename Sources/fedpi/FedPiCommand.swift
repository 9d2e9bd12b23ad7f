import ArgumentParser

@main
struct FedPiCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedpi",
        abstract: "FedPi: federated learning for fleets of small Linux boards.",
        discussion: """
            Train a model on this machine, classify images with a model, look at a data set, inspect and convert model files, \
            or time the engine's sparse backward passes (sparse-bench).
            A data set (--data) is a folder of MNIST-format IDX files (raw or .gz), e.g. Fashion-MNIST from the Debian package \
            dataset-fashion-mnist in /usr/share/datasets/fashion-mnist (the default), or of image class folders: \
            train/<class>/*.png|jpg, with test/ (or val/) for evaluation, decoded to grayscale at the model's input size.
            Models: mnist-cnn, mnist-mlp (28x28, 10 classes), xray-cnn (64x64, 2 classes), xray-cnn-128 (128x128, 2 classes).
            """,
        subcommands: [Train.self, Simulate.self, Predict.self, DataCommand.self, ModelCommand.self, CertsCommand.self, BenchSparse.self])
}

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Inspect data sets; write IDX files as image folders.", subcommands: [InspectData.self, ExportData.self])
}
