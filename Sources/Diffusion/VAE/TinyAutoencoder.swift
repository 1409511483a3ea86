import Foundation

/// TAESD's decoder (madebyollin/taesd; diffusers `AutoencoderTiny`'s `DecoderTiny`): a small
/// convolutional decoder distilled from SD's VAE, about 1/18 of its work, for drafts and live previews.
///
///     clamp: 3·tanh(x/3) → conv 3×3 → ReLU → per level: blocks, then (but at the last) nearest 2×
///     upsampling and a bias-free 3×3 conv; the last level ends in a 3×3 conv to RGB → 2x − 1
///
/// A block is `ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x)`. It decodes the latents as the sampler
/// leaves them (TAESD's `scaling_factor` is 1: it was trained on SD's scaled latents).
public struct TinyAutoencoderDecoder: LatentDecoder, Sendable {
    /// The two layouts of the decoder's weights people have.
    public enum Layout: String, Sendable {
        /// diffusers' `AutoencoderTiny` folder or file: `decoder.layers.N.*`.
        case diffusers
        /// madebyollin's `taesd_decoder.safetensors`: the bare `nn.Sequential`, its index 0 the clamp,
        /// so every index is one more than diffusers'.
        case original
    }

    let convIn: Conv2d
    let levels: [(blocks: [TinyBlock], upsample: Bool, conv: Conv2d)]
    public let channels: [Int]
    public var decoderName: String { "TAESD" }

    /// - Parameters:
    ///   - weights: scoped at the `nn.Sequential` (diffusers: `decoder.layers`; original: the file's root).
    ///   - channels: each level's channels (diffusers' `decoder_block_out_channels`).
    ///   - blocks: blocks per level (`num_decoder_blocks`, TAESD's (3, 3, 3, 1)).
    ///   - indexOffset: 0 for diffusers' numbering, 1 for the original's.
    /// - Throws: `WeightsError` naming the first tensor that is absent or shaped differently.
    public init(weights: Weights, channels: [Int] = [64, 64, 64, 64], blocks: [Int] = [3, 3, 3, 1], latentChannels: Int = 4,
                indexOffset: Int = 0) throws {
        precondition(channels.count == blocks.count && !channels.isEmpty, "one block count per level")
        self.channels = channels
        var index = indexOffset
        func next() -> Weights {
            defer { index += 1 }
            return weights.scoped("\(index)")
        }
        convIn = try Conv2d(next(), inChannels: latentChannels, outChannels: channels[0], kernel: 3)
        index += 1  // ReLU
        var levels: [(blocks: [TinyBlock], upsample: Bool, conv: Conv2d)] = []
        for (level, count) in blocks.enumerated() {
            let width = channels[level]
            let isLast = level == blocks.count - 1
            let levelBlocks = try (0..<count).map { _ in try TinyBlock(next(), inChannels: width, outChannels: width) }
            if !isLast { index += 1 }  // nn.Upsample
            let out = isLast ? 3 : channels[level + 1]
            levels.append((levelBlocks, !isLast, try Conv2d(next(), inChannels: width, outChannels: out, kernel: 3, bias: isLast)))
        }
        self.levels = levels
    }

    /// Opens TAESD weights: a diffusers `AutoencoderTiny` folder (its `config.json` gives the sizes),
    /// a diffusers `diffusion_pytorch_model.safetensors`, or madebyollin's `taesd_decoder.safetensors`
    /// (or its `.pth`, read without running anything).
    /// - Throws: `TinyAutoencoderError` for a file that is neither (`.encoder` for TAESD's encoder), or
    ///   `WeightsError` for a tensor that does not fit or is not stored as floats; `SafetensorsError` or
    ///   `TorchFileError` for an unreadable or refused file.
    public static func load(_ url: URL) throws -> TinyAutoencoderDecoder {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw TinyAutoencoderError.notFound(path: url.path)
        }
        var channels = [64, 64, 64, 64], blocks = [3, 3, 3, 1], latentChannels = 4
        var file = url
        if isDirectory.boolValue {
            // Not an AutoencoderTiny folder: the caller tries the other decoders' layouts.
            guard let weights = ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"]
                .map({ url.appendingPathComponent($0) }).first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
                throw TinyAutoencoderError.notTAESD(path: url.path, reason: "the folder has no diffusion_pytorch_model.safetensors")
            }
            file = weights
            if let data = FileManager.default.contents(atPath: url.appendingPathComponent("config.json").path),
               let config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
                channels = config["decoder_block_out_channels"] as? [Int] ?? channels
                blocks = config["num_decoder_blocks"] as? [Int] ?? blocks
                latentChannels = config["latent_channels"] as? Int ?? latentChannels
            }
        }
        let source = try openTensorFile(file)
        let keys = Set(source.keys)
        if keys.contains("decoder.layers.0.weight") {
            if !isDirectory.boolValue, let width = source.shape(of: "decoder.layers.0.weight")?.first {
                channels = Array(repeating: width, count: blocks.count)
            }
            guard channels.count == blocks.count else { throw TinyAutoencoderError.notTAESD(path: file.path, reason: "its config gives \(channels.count) levels but \(blocks.count) block counts") }
            return try TinyAutoencoderDecoder(weights: Weights(source: source, prefix: "decoder.layers.", keepConverted: true),
                                              channels: channels, blocks: blocks, latentChannels: latentChannels)
        }
        if let shape = source.shape(of: "1.weight"), shape.count == 4, keys.contains("3.conv.0.weight") {
            return try TinyAutoencoderDecoder(weights: Weights(source: source, keepConverted: true),
                                              channels: Array(repeating: shape[0], count: 4), latentChannels: shape[1], indexOffset: 1)
        }
        // The encoder's `nn.Sequential` is conv(3, C), Block, conv(stride 2), Block, …: a conv from RGB
        // at index 0, where the decoder has its clamp, and a block at 1, where the decoder has its conv.
        if let rgb = source.shape(of: "0.weight") ?? source.shape(of: "encoder.layers.0.weight"), rgb.count == 4, rgb[1] == 3,
           keys.contains("1.conv.0.weight") || keys.contains("encoder.layers.1.conv.0.weight") {
            throw TinyAutoencoderError.encoder(path: file.path)
        }
        let first = source.keys.sorted().first ?? "(no tensors)"
        throw TinyAutoencoderError.notTAESD(path: file.path, reason: "its first tensor, '\(first)', is not a TAESD decoder's")
    }

    public func decode(_ latents: Tensor, cancellation: CancellationToken?) throws -> Tensor {
        // clamp: 3·tanh(x/3), in Float32 as torch
        var h = latents
        for i in h.data.indices { h.data[i] = tanhf(h.data[i] / 3) * 3 }
        h = convIn(h)
        h.formReLU()
        for level in levels {
            try cancellation?.check()
            for block in level.blocks { h = block(h) }
            if level.upsample { h = h.upsampleNearest2x() }
            h = level.conv(h)
        }
        return h * 2 + (-1)  // [0, 1] -> diffusers' [-1, 1]
    }
}

/// `ReLU(conv(ReLU(conv(ReLU(conv(x))))) + skip(x))`, the skip a bias-free 1×1 conv when the widths
/// differ (keys `conv.0`, `conv.2`, `conv.4`, `skip`).
struct TinyBlock: Sendable {
    let convs: [Conv2d]
    let skip: Conv2d?

    init(_ weights: Weights, inChannels: Int, outChannels: Int) throws {
        convs = try [0, 2, 4].map { index in
            try Conv2d(weights.scoped("conv.\(index)"), inChannels: index == 0 ? inChannels : outChannels,
                       outChannels: outChannels, kernel: 3)
        }
        skip = inChannels == outChannels ? nil
            : try Conv2d(weights.scoped("skip"), inChannels: inChannels, outChannels: outChannels, kernel: 1, bias: false)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        // In place: at 512×512 each 64-channel map is 64 MB, not worth allocating and filling afresh for
        // a ReLU or a sum. `· 1 +` is the plain sum, bit for bit.
        var h = convs[0](x)
        h.formReLU()
        h = convs[1](h)
        h.formReLU()
        h = convs[2](h)
        h.formScaledSum(1, plus: skip?(x) ?? x)
        h.formReLU()
        return h
    }
}

/// A file given as TAESD that is not one.
public enum TinyAutoencoderError: Error, Equatable, CustomStringConvertible {
    case notFound(path: String)
    case notTAESD(path: String, reason: String)
    /// TAESD's encoder (`taesd_encoder.safetensors`), which comes beside the decoder.
    case encoder(path: String)

    public var description: String {
        switch self {
        case let .notFound(path):
            return "no TAESD at \(path): the path does not exist"
        case let .encoder(path):
            return "\(path) is TAESD's encoder (taesd_encoder), which turns images into latents; sdrepl decodes with TAESD's decoder: "
                + "give taesd_decoder.safetensors from the same place (madebyollin/taesd)"
        case let .notTAESD(path, reason):
            return "\(path) is not a TAESD decoder: \(reason); give taesd_decoder.safetensors or a diffusers AutoencoderTiny folder (madebyollin/taesd)"
        }
    }
}
