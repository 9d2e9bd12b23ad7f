// swift-tools-version:6.1
import PackageDescription

// Numeric code is unusable at -Onone (a debug training step is ~50x slower), so the engine and the
// data readers are optimized in every configuration; `swift test` then runs the learning tests fast.
let optimized: [SwiftSetting] = [.unsafeFlags(["-O"])]

let package = Package(
    name: "FedPi",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "fedpi", targets: ["fedpi"]),
        .executable(name: "fedpi-worker", targets: ["fedpi-worker"]),
        .executable(name: "fedpi-aggregator", targets: ["fedpi-aggregator"]),
        .library(name: "FedPiEngine", targets: ["FedPiEngine"]),
        .library(name: "FedPiData", targets: ["FedPiData"]),
        .library(name: "FedPiWire", targets: ["FedPiWire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The worker's HTTP server; no default traits (they pull in swift-configuration and full Foundation).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        // The aggregator's HTTP client and history; the worker links neither.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // Fleet identity: TLS (BoringSSL inside swift-nio-ssl) and the fleet CA's certificates.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        // /metrics on the aggregator and the worker.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        // PNG/JPEG decoding for predictions (Debian's libstb-dev); the worker does not link it.
        .systemLibrary(
            name: "CStb", pkgConfig: "stb",
            providers: [.apt(["libstb-dev"])]),
        .target(name: "CHalf", cSettings: [.unsafeFlags(["-O2"])]),
        // The engine's hot kernels (Winograd tile transforms, the unpacked GEMM for the Winograd
        // products, max pooling): AVX2+FMA behind a runtime CPU check on x86-64, portable (NEON on
        // arm64) otherwise.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2"])]),
        .systemLibrary(
            name: "CSystemd", pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]),
        .target(name: "FedPiEngine", dependencies: ["CBLAS", "CKernels"], swiftSettings: optimized),
        .target(name: "FedPiWire", dependencies: ["FedPiEngine", "CHalf", "CZlib"], swiftSettings: optimized),
        // A node's local training (what the worker runs), the training config it receives, and the small
        // formatting and process helpers every binary shares.
        .target(name: "FedPiTraining", dependencies: ["FedPiEngine", "FedPiWire"], swiftSettings: optimized),
        // The round logic and the strategies: the aggregator and `fedpi simulate`, not the worker.
        .target(name: "FedPiFederation", dependencies: ["FedPiEngine", "FedPiWire", "FedPiTraining"], swiftSettings: optimized),
        .target(name: "FedPiData", dependencies: ["CZlib", "CStb", "FedPiEngine"], swiftSettings: optimized),
        // Class probabilities for one image (PNG/JPEG or raw pixels): `fedpi predict` and the aggregator's API.
        .target(name: "FedPiPredict", dependencies: ["CStb", "FedPiData", "FedPiEngine"], swiftSettings: optimized),
        // Fleet identity: certificates with a node name and a role, the fleet CA, TLS contexts that
        // require them, the deny-list. The worker, the aggregator and `fedpi certs` share it.
        .target(
            name: "FedPiIdentity",
            dependencies: [
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]),
        // What the worker's and the aggregator's HTTP servers share: mutual TLS per connection, the
        // client's certificate in the request context, JSON answers, bounded bodies.
        .target(
            name: "FedPiHTTP",
            dependencies: [
                "FedPiIdentity", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
        .executableTarget(
            name: "fedpi",
            dependencies: [
                "FedPiEngine", "FedPiData", "FedPiWire", "FedPiFederation", "FedPiTraining", "FedPiIdentity", "FedPiPredict", "CStb",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .target(
            name: "FedPiRuntime",
            dependencies: [
                "CSystemd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .target(
            name: "FedPiWorker",
            dependencies: [
                "FedPiEngine", "FedPiData", "FedPiWire", "FedPiTraining",
                "FedPiRuntime", "FedPiIdentity", "FedPiHTTP", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        .target(
            name: "FedPiAggregator",
            dependencies: [
                "FedPiEngine", "FedPiData", "FedPiWire", "FedPiFederation", "FedPiTraining", "FedPiPredict",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"), "FedPiRuntime", "FedPiIdentity", "FedPiHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        .executableTarget(
            name: "fedpi-worker",
            dependencies: ["FedPiWorker", "FedPiIdentity", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"])]),
        .executableTarget(
            name: "fedpi-aggregator",
            dependencies: ["FedPiAggregator", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .target(name: "FedPiTesting", dependencies: ["FedPiData", "CZlib", "CStb"], path: "Tests/FedPiTesting"),
        .testTarget(name: "FedPiEngineTests", dependencies: ["FedPiEngine", "FedPiData", "FedPiTesting", "CKernels"]),
        .testTarget(name: "FedPiWireTests", dependencies: ["FedPiWire", "CHalf", "FedPiTesting"]),
        .testTarget(name: "FedPiFederationTests", dependencies: ["FedPiFederation", "FedPiTraining", "FedPiData", "FedPiTesting"]),
        .testTarget(name: "FedPiDataTests", dependencies: ["FedPiData", "FedPiWire", "FedPiTesting"]),
        .testTarget(
            name: "FedPiWorkerTests",
            dependencies: [
                "FedPiWorker", "FedPiTraining", "FedPiTesting", "FedPiIdentity", "FedPiRuntime",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]),
        .testTarget(name: "FedPiPredictTests", dependencies: ["FedPiPredict", "FedPiEngine"]),
        .testTarget(name: "FedPiRuntimeTests", dependencies: ["FedPiRuntime", "FedPiTesting"]),
        .testTarget(
            name: "FedPiIdentityTests",
            dependencies: ["FedPiIdentity", .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOSSL", package: "swift-nio-ssl")]),
        .testTarget(
            name: "FedPiAggregatorTests",
            dependencies: [
                "FedPiAggregator", "FedPiFederation", "FedPiTraining", "FedPiTesting", "FedPiPredict",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]),
        .testTarget(
            name: "FedPiSystemTests",
            dependencies: [
                "fedpi-worker", "fedpi-aggregator", "FedPiAggregator", "FedPiWire", "FedPiData", "FedPiTesting", "FedPiIdentity",
                "FedPiFederation", "FedPiTraining", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        .testTarget(name: "fedpiTests", dependencies: ["fedpi", "FedPiTesting", "FedPiPredict"]),
    ]
)
