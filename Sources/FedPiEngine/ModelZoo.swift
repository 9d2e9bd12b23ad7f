/// The models FedPi knows by name. Parameter keys and shapes match the PyTorch modules they mirror.
public enum ModelZoo {
    public static let names = ["mnist-cnn", "mnist-mlp", "xray-cnn", "xray-cnn-128"]

    /// Normalisation of PyTorch's MNIST example, used for every 28×28 grayscale data set.
    public static let mnistNormalization = Model.Normalization(mean: 0.1307, std: 0.3081)

    /// Whether the model was made for light-on-dark images (the MNIST-format sets), so that a photo of
    /// dark ink on paper is inverted before it is classified.
    public static func lightOnDark(_ name: String) -> Bool { name.hasPrefix("mnist-") }

    public struct UnknownModel: Error, CustomStringConvertible {
        public let name: String
        public init(name: String) { self.name = name }
        public var description: String { "unknown model '\(name)'; known models: \(ModelZoo.names.joined(separator: ", "))" }
    }

    public static func make(_ name: String, seed: UInt64 = 1) throws -> Model {
        switch name {
        case "mnist-cnn": return try mnistCNN(seed: seed)
        case "mnist-mlp": return try mnistMLP(seed: seed)
        case "xray-cnn": return try xrayCNN(side: 64, seed: seed)
        case "xray-cnn-128": return try xrayCNN(side: 128, seed: seed)
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

    /// Normalisation of the X-ray models: grayscale radiographs spread over most of the byte range.
    public static let xrayNormalization = Model.Normalization(mean: 0.5, std: 0.25)

    /// A small CNN for two-class grayscale images (chest X-rays: NORMAL, PNEUMONIA), for image folders
    /// decoded at 64×64 (`xray-cnn`, 318,594 parameters) or 128×128 (`xray-cnn-128`, one more stage,
    /// 355,522 parameters). Each stage is conv 3×3 (valid) → max-pool 2 → ReLU, the channels 16, 32,
    /// 64 (and 64), down to 64×6×6; then dense 2304→128, ReLU, dropout 0.5, dense 128→2. The PyTorch
    /// module with the same parameter names is in `bench/torch_xray_cnn.py`.
    public static func xrayCNN(side: Int, seed: UInt64) throws -> Model {
        precondition(side == 64 || side == 128)
        var layers: [Layer] = []
        let channels = side == 64 ? [1, 16, 32, 64] : [1, 16, 32, 64, 64]
        for stage in 1..<channels.count {
            layers += [
                Conv2D("conv\(stage)", inputChannels: channels[stage - 1], outputChannels: channels[stage], kernelSize: 3),
                MaxPool2D("pool\(stage)", size: 2),
                ReLU("relu\(stage)"),
            ]
        }
        layers += [
            Flatten(),
            Dense("fc1", inputs: 64 * 6 * 6, outputs: 128),
            ReLU("relu_fc1"),
            Dropout("dropout", rate: 0.5),
            Dense("fc2", inputs: 128, outputs: 2),
        ]
        return try Model(id: side == 64 ? "xray-cnn" : "xray-cnn-128", inputShape: [side, side, 1], classes: 2,
                         normalization: xrayNormalization, layers: layers, seed: seed)
    }
}
