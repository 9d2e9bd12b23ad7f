// swift-tools-version:6.0
import PackageDescription

// Numeric code is unusable at -Onone (a debug training step is ~50x slower), so the engine and the
// data readers are optimized in every configuration; `swift test` then runs the learning tests fast.
let optimized: [SwiftSetting] = [.unsafeFlags(["-O"])]

let package = Package(
    name: "FedPi",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "fedpi", targets: ["fedpi"]),
        .library(name: "FedPiEngine", targets: ["FedPiEngine"]),
        .library(name: "FedPiData", targets: ["FedPiData"]),
        .library(name: "FedPiWire", targets: ["FedPiWire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CHalf", cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "FedPiEngine", dependencies: ["CBLAS"], swiftSettings: optimized),
        .target(name: "FedPiWire", dependencies: ["FedPiEngine", "CHalf", "CZlib"], swiftSettings: optimized),
        .target(name: "FedPiFederation", dependencies: ["FedPiEngine", "FedPiWire"], swiftSettings: optimized),
        .target(name: "FedPiData", dependencies: ["CZlib", "FedPiEngine"], swiftSettings: optimized),
        .executableTarget(
            name: "fedpi",
            dependencies: [
                "FedPiEngine", "FedPiData", "FedPiWire", "FedPiFederation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .target(name: "FedPiTesting", dependencies: ["FedPiData", "CZlib"], path: "Tests/FedPiTesting"),
        .testTarget(name: "FedPiEngineTests", dependencies: ["FedPiEngine", "FedPiData", "FedPiTesting"]),
        .testTarget(name: "FedPiWireTests", dependencies: ["FedPiWire", "CHalf", "FedPiTesting"]),
        .testTarget(name: "FedPiFederationTests", dependencies: ["FedPiFederation", "FedPiData", "FedPiTesting"]),
        .testTarget(name: "FedPiDataTests", dependencies: ["FedPiData", "FedPiTesting"]),
        .testTarget(name: "fedpiTests", dependencies: ["fedpi", "FedPiTesting"]),
    ]
)
