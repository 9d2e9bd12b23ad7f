import FedPiEngine

/// Grayscale images with class labels, kept as bytes (a 60,000-image set is 47 MB) and converted
/// to normalised floats one batch at a time.
public struct LabeledImages: BatchProvider, Sendable {
    public let height: Int
    public let width: Int
    /// `count × height × width` pixels, row-major, one byte each.
    public let pixels: [UInt8]
    public let labels: [UInt8]

    public var count: Int { labels.count }
    public var sampleShape: [Int] { [height, width, 1] }

    /// Pairs an images array `(N, H, W)` with a labels array `(N)`; throws when they do not fit together.
    public init(height: Int, width: Int, pixels: [UInt8], labels: [UInt8]) throws {
        guard height > 0, width > 0, pixels.count == labels.count * height * width else {
            throw DatasetError("\(labels.count) labels do not match \(pixels.count) pixels of \(height)x\(width) images")
        }
        self.height = height
        self.width = width
        self.pixels = pixels
        self.labels = labels
    }

    /// Reads an IDX images file and an IDX labels file (raw or gzip) and checks that they agree.
    /// `keep`, given all labels, picks the samples to hold (ascending); the other images are streamed
    /// past, never held (a worker with a third of the classes holds a third of the pixels).
    public static func load(images imagesPath: String, labels labelsPath: String,
                            keep: (([UInt8]) throws -> [Int])? = nil) throws -> LabeledImages {
        let labels = try IDX.read(path: labelsPath)
        guard labels.dimensions.count == 1 else {
            throw IDXError(path: labelsPath, problem: "is not a labels file: expected 1 dimension, found \(labels.dimensions.count)")
        }
        let selection = try keep?(labels.bytes)
        let images = try IDX.read(path: imagesPath, records: selection)
        guard images.dimensions.count == 3 else {
            throw IDXError(path: imagesPath, problem: "is not an images file: expected 3 dimensions (count, rows, columns), found \(images.dimensions.count)")
        }
        guard images.fileRecords == labels.fileRecords else {
            throw DatasetError("\(imagesPath) has \(images.fileRecords) images but \(labelsPath) has \(labels.fileRecords) labels")
        }
        guard images.fileRecords > 0 else { throw IDXError(path: imagesPath, problem: "holds no images") }
        return try LabeledImages(height: images.dimensions[1], width: images.dimensions[2], pixels: images.bytes,
                                 labels: selection.map { $0.map { labels.bytes[$0] } } ?? labels.bytes)
    }

    public func label(at index: Int) -> Int { Int(labels[index]) }

    /// Number of samples of each label value present, ascending by label.
    public func classCounts() -> [(label: Int, count: Int)] {
        var counts = [Int](repeating: 0, count: 256)
        for l in labels { counts[Int(l)] += 1 }
        return counts.enumerated().filter { $0.element > 0 }.map { (label: $0.offset, count: $0.element) }
    }

    /// Indices of the samples whose label is in `classes`, ascending.
    public func indices(ofClasses classes: Set<Int>) -> [Int] {
        labels.indices.filter { classes.contains(Int(labels[$0])) }
    }

    public func fillBatch(_ indices: ArraySlice<Int>, normalization: Model.Normalization, into input: Tensor, labels out: inout [Int32]) {
        let per = height * width
        input.resize([indices.count, height, width, 1])
        if out.count != indices.count { out = [Int32](repeating: 0, count: indices.count) }
        LabeledImages.pixelTable(normalization).withUnsafeBufferPointer { t in
            pixels.withUnsafeBufferPointer { px in
                var dst = input.data
                for (k, i) in indices.enumerated() {
                    let src = px.baseAddress! + i * per
                    for p in 0..<per { dst[p] = t[Int(src[p])] }
                    dst += per
                    out[k] = Int32(labels[i])
                }
            }
        }
    }
}

extension LabeledImages {
    /// Throws when images of `height × width` with these labels cannot feed `model`: another image
    /// size, or a label the model has no output for (a data set of more classes than the model's).
    public static func check(height: Int, width: Int, labels: [UInt8], for model: Model, data: String) throws {
        guard height == model.inputShape[0], width == model.inputShape[1] else {
            throw DatasetError("\(data) has \(height)x\(width) images; \(model.id) takes \(model.inputShape[0])x\(model.inputShape[1])"
                               + " (image folders are resized to the model's size, IDX files are not)")
        }
        if let top = labels.max(), Int(top) >= model.classes {
            throw DatasetError("\(data) has labels up to \(top) (\(Int(top) + 1) classes or more); \(model.id) has \(model.classes) classes")
        }
    }

    /// `check(height:width:labels:for:data:)` for these images.
    public func check(for model: Model, data: String) throws {
        try LabeledImages.check(height: height, width: width, labels: labels, for: model, data: data)
    }

    /// The normalised float of every byte value: one load per pixel instead of a divide and a subtract.
    static func pixelTable(_ normalization: Model.Normalization) -> [Float] {
        (0..<256).map { (Float($0) / 255 - normalization.mean) / normalization.std }
    }
}

/// A data set that is inconsistent or missing, with what to do about it.
public struct DatasetError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
