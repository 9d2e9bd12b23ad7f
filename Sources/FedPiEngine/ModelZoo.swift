/// The models FedPi knows by name. Parameter keys and shapes match the PyTorch modules they mirror.
public enum ModelZoo {
    public static let names = ["mnist-cnn", "mnist-mlp"]

    /// Normalisation of PyTorch's MNIST example, used for every 28×28 grayscale data set.
    public static let mnistNormalization = Model.Normalization(mean: 0.1307, std: 0.3081)

    public struct UnknownModel: Error, CustomStringConvertible {
        public let name: String
        public init(name: String) { self.name = name }
        public var description: String { "unknown model '\(name)'; known models: \(ModelZoo.names.joined(separator: ", "))" }
    }

    public static func make(_ name: String, seed: UInt64 = 1) throws -> Model {
        switch name {
        case "mnist-cnn": return try mnistCNN(seed: seed)
        case "mnist-mlp": return try mnistMLP(seed: seed)
        default: throw UnknownModel(name: name)
        }
    }

    /// The CNN of PyTorch's MNIST example (and dc_federated): 1,199,882 parameters.
    /// conv(1→32,3×3)-ReLU-conv(32→64,3×3)-ReLU-maxpool2-dropout(0.25)-dense(9216→128)-ReLU-dropout(0.5)-dense(128→10)
    ///
    /// The second ReLU runs after the pooling: max(relu(x)) = relu(max(x)) and the gradients agree too
    /// (a window whose maximum is ≤ 0 gets no gradient either way), so this is the same function with a
    /// ReLU over a tensor four times smaller. `LayerSemanticsTests` checks the equivalence.
    public static func mnistCNN(seed: UInt64) throws -> Model {
        try Model(
            id: "mnist-cnn", inputShape: [28, 28, 1], classes: 10, normalization: mnistNormalization,
            layers: [
                Conv2D("conv1", inputChannels: 1, outputChannels: 32, kernelSize: 3),
                ReLU("relu1"),
                Conv2D("conv2", inputChannels: 32, outputChannels: 64, kernelSize: 3),
                MaxPool2D("pool", size: 2),
                ReLU("relu2"),
                Dropout("dropout1", rate: 0.25),
                Flatten(),
                Dense("fc1", inputs: 9216, outputs: 128),
                ReLU("relu3"),
                Dropout("dropout2", rate: 0.5),
                Dense("fc2", inputs: 128, outputs: 10),
            ],
            seed: seed)
    }

    /// 784-200-200-10 multilayer perceptron (the FedAvg paper's "2NN"): 199,210 parameters.
    public static func mnistMLP(seed: UInt64) throws -> Model {
        try Model(
            id: "mnist-mlp", inputShape: [28, 28, 1], classes: 10, normalization: mnistNormalization,
            layers: [
                Flatten(),
                Dense("fc1", inputs: 784, outputs: 200),
                ReLU("relu1"),
                Dense("fc2", inputs: 200, outputs: 200),
                ReLU("relu2"),
                Dense("fc3", inputs: 200, outputs: 10),
            ],
            seed: seed)
    }
}
