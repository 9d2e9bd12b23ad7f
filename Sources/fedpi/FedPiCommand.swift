import ArgumentParser

@main
struct FedPiCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedpi",
        abstract: "FedPi: federated learning for fleets of small Linux boards.",
        discussion: """
            Train a model on MNIST-format data on this machine, classify images with a model, look at a data set, inspect and convert model files, \
            or time the engine's sparse backward passes (sparse-bench).
            Data sets are folders of IDX files (raw or .gz), e.g. Fashion-MNIST from the Debian package
            dataset-fashion-mnist in /usr/share/datasets/fashion-mnist (the default).
            """,
        subcommands: [Train.self, Simulate.self, Predict.self, DataCommand.self, ModelCommand.self, CertsCommand.self, BenchSparse.self])
}

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Inspect data sets; write IDX files as image folders.", subcommands: [InspectData.self, ExportData.self])
}
