import Foundation

/// The sizes of an RRDBNet (ESRGAN, Real-ESRGAN; basicsr `RRDBNet`), with basicsr's option names.
///
/// Real-ESRGAN's released models are `RealESRGAN_x4plus` (23 blocks, 64 features, growth 32),
/// `RealESRGAN_x4plus_anime_6B` (6 blocks) and `RealESRGAN_x2plus` (its input pixel-unshuffled by 2,
/// so 12 input channels). Nothing here is per file: `RRDBNetConfig.detect` reads every size from the
/// weights' names and shapes.
public struct RRDBNetConfig: Codable, Equatable, Sendable {
    /// Image channels in and out (RGB: 3 and 3).
    public var imageChannels = 3
    /// `num_feat`: the trunk's width.
    public var features = 64
    /// `num_grow_ch`: channels each dense convolution adds.
    public var growth = 32
    /// `num_block`: residual-in-residual dense blocks.
    public var blocks = 23
    /// Nearest ×2 upsampling stages, each followed by a 3×3 convolution (basicsr's are always 2).
    public var upsamplings = 2
    /// The input is pixel-unshuffled by this factor first (1; Real-ESRGAN's x2 models 2, x1 models 4),
    /// so the network works at 1/factor of the image's size.
    public var unshuffle = 1

    enum CodingKeys: String, CodingKey {
        case imageChannels = "num_out_ch"
        case features = "num_feat"
        case growth = "num_grow_ch"
        case blocks = "num_block"
        case upsamplings, unshuffle
    }

    public init(imageChannels: Int = 3, features: Int = 64, growth: Int = 32, blocks: Int = 23, upsamplings: Int = 2,
                unshuffle: Int = 1) {
        self.imageChannels = imageChannels
        self.features = features
        self.growth = growth
        self.blocks = blocks
        self.upsamplings = upsamplings
        self.unshuffle = unshuffle
    }

    /// Output size over input size: `2^upsamplings / unshuffle` (4 for x4plus, 2 for x2plus).
    public var scale: Int { (1 << upsamplings) / unshuffle }

    /// `conv_first`'s input channels: the image's, times `unshuffle²`.
    public var inputChannels: Int { imageChannels * unshuffle * unshuffle }

    /// Multiply-adds × 2 of one forward pass over a `height × width` input (the dense count: every
    /// convolution as `2 · Cin · Cout · 9` per output pixel), for the benchmark's floor.
    public func flops(height: Int, width: Int) -> Double {
        let low = Double(height * width) / Double(unshuffle * unshuffle)
        let conv = { (cin: Int, cout: Int) in 2.0 * 9 * Double(cin * cout) }
        var perPixel = conv(inputChannels, features) + conv(features, features)  // conv_first, conv_body
        var dense = 0.0
        for k in 0..<4 { dense += conv(features + k * growth, growth) }
        dense += conv(features + 4 * growth, features)
        perPixel += Double(blocks * 3) * dense
        var total = perPixel * low
        var pixels = low
        for _ in 0..<upsamplings {
            pixels *= 4
            total += conv(features, features) * pixels
        }
        return total + (conv(features, features) + conv(features, imageChannels)) * pixels  // conv_hr, conv_last
    }
}

/// The two ways RRDBNet checkpoints name their tensors: the one table from module to key.
///
/// | module                  | `realESRGAN` (basicsr)        | `esrgan` (the original `nn.Sequential`)      |
/// |-------------------------|-------------------------------|----------------------------------------------|
/// | first convolution       | `conv_first`                  | `model.0`                                    |
/// | block i, dense j, conv k | `body.i.rdbj.convk`          | `model.1.sub.i.RDBj.convk.0`                 |
/// | trunk convolution       | `conv_body`                   | `model.1.sub.<blocks>`                       |
/// | upsampling n (1-based)  | `conv_upn`                    | `model.<3n>` (after `Upsample`; `LeakyReLU` follows) |
/// | high-resolution conv    | `conv_hr`                     | `model.<3u + 2>` (u upsamplings)             |
/// | last convolution        | `conv_last`                   | `model.<3u + 4>`                             |
///
/// The old layout is xinntao's original ESRGAN (A1111's `esrgan_model_arch`; community files such as
/// 4x-UltraSharp): one `nn.Sequential` whose dense convolutions sit in `Sequential(conv, LeakyReLU)`
/// (hence `.0`; the fifth has no activation but keeps the index).
public enum RRDBNetLayout: String, Sendable, CaseIterable {
    case realESRGAN = "Real-ESRGAN"
    case esrgan = "ESRGAN"

    /// The first convolution's scope (its `weight` is what detection looks for).
    var firstConv: String { self == .realESRGAN ? "conv_first" : "model.0" }

    /// Dense convolution `conv` (1…5) of dense block `dense` (1…3) of block `block` (0-based).
    func denseConv(block: Int, dense: Int, conv: Int) -> String {
        switch self {
        case .realESRGAN: return "body.\(block).rdb\(dense).conv\(conv)"
        case .esrgan: return "model.1.sub.\(block).RDB\(dense).conv\(conv).0"
        }
    }

    func bodyConv(blocks: Int) -> String { self == .realESRGAN ? "conv_body" : "model.1.sub.\(blocks)" }

    /// Upsampling convolution `n`, 1-based.
    func upConv(_ n: Int) -> String { self == .realESRGAN ? "conv_up\(n)" : "model.\(3 * n)" }

    func hrConv(upsamplings: Int) -> String { self == .realESRGAN ? "conv_hr" : "model.\(3 * upsamplings + 2)" }

    func lastConv(upsamplings: Int) -> String { self == .realESRGAN ? "conv_last" : "model.\(3 * upsamplings + 4)" }
}

extension RRDBNetConfig {
    /// Reads the layout, the key prefix and every size from the tensors of `source`.
    ///
    /// The prefix is what stands before the first convolution's key: empty for a bare state dict,
    /// `params_ema.` for Real-ESRGAN's training checkpoints as a pickle reader flattens them (the EMA
    /// weights are preferred, as RealESRGANer does, when `params.` is there too).
    /// - Throws: `UpscalerError.notRRDBNet` naming the key that shows what the file is instead.
    public static func detect(in source: TensorSource) throws -> (config: RRDBNetConfig, layout: RRDBNetLayout, prefix: String) {
        let keys = source.keys
        let path = source.sourceDescription
        var candidates: [(layout: RRDBNetLayout, prefix: String)] = []
        for key in keys {
            for layout in RRDBNetLayout.allCases where key.hasSuffix(layout.firstConv + ".weight") {
                let prefix = String(key.dropLast(layout.firstConv.count + ".weight".count))
                if prefix.isEmpty || prefix.hasSuffix(".") { candidates.append((layout, prefix)) }
            }
        }
        guard let (layout, prefix) = candidates.min(by: { preference($0.prefix) < preference($1.prefix) }) else {
            throw UpscalerError.notRRDBNet(path: path, reason: whatItIs(keys))
        }
        func shape(_ scope: String) -> [Int]? { source.shape(of: prefix + scope + ".weight") }
        func conv(_ scope: String) throws -> (out: Int, in: Int) {
            guard let s = shape(scope) else {
                throw UpscalerError.notRRDBNet(path: path, reason: "it has '\(prefix + layout.firstConv).weight' but no '\(prefix + scope).weight'")
            }
            guard s.count == 4, s[2] == 3, s[3] == 3 else {
                throw UpscalerError.notRRDBNet(path: path, reason: "'\(prefix + scope).weight' has shape \(s), not a 3×3 convolution's")
            }
            return (s[0], s[1])
        }
        var config = RRDBNetConfig()
        let first = try conv(layout.firstConv)
        config.features = first.out
        var blocks = 0
        while shape(layout.denseConv(block: blocks, dense: 1, conv: 1)) != nil { blocks += 1 }
        guard blocks > 0 else {
            throw UpscalerError.notRRDBNet(path: path, reason: "it has no '\(prefix + layout.denseConv(block: 0, dense: 1, conv: 1)).weight' (no residual dense blocks)")
        }
        config.blocks = blocks
        config.growth = try conv(layout.denseConv(block: 0, dense: 1, conv: 1)).out
        var upsamplings = 0
        while shape(layout.upConv(upsamplings + 1)) != nil { upsamplings += 1 }
        config.upsamplings = upsamplings
        let last = layout.lastConv(upsamplings: upsamplings)
        config.imageChannels = try conv(last).out
        guard config.imageChannels == 3 else {
            throw UpscalerError.notRRDBNet(path: path, reason: "'\(prefix + last).weight' gives \(config.imageChannels) output channels; sdrepl upscales RGB (3)")
        }
        switch first.in {
        case 3: config.unshuffle = 1
        case 12: config.unshuffle = 2
        case 48: config.unshuffle = 4
        default:
            throw UpscalerError.notRRDBNet(path: path, reason: "'\(prefix + layout.firstConv).weight' takes \(first.in) input channels; an RGB RRDBNet takes 3 (or 12, 48 pixel-unshuffled)")
        }
        guard (1 << upsamplings) >= config.unshuffle else {
            throw UpscalerError.notRRDBNet(path: path, reason: "it unshuffles its input by \(config.unshuffle) but upsamples only \(upsamplings) times: it would shrink the image")
        }
        return (config, layout, prefix)
    }

    /// Lower is preferred: a bare state dict, then the EMA weights, then anything else.
    private static func preference(_ prefix: String) -> Int {
        switch prefix {
        case "": return 0
        case "params_ema.": return 1
        default: return 2
        }
    }

    /// Why a file without an RRDBNet's first convolution is not one, naming the key that tells.
    private static func whatItIs(_ keys: [String]) -> String {
        if let key = keys.first(where: { $0.contains("patch_embed") || $0.contains("residual_group") }) {
            return "'\(key)' is a SwinIR-style transformer's tensor, not RRDBNet's"
        }
        if let key = keys.first(where: { $0.hasPrefix("body.") && !$0.contains(".rdb") }) {
            return "'\(key)' belongs to a compact SRVGG network (Real-ESRGAN's realesr-*-general/animevideo), not RRDBNet"
        }
        if let key = keys.sorted().first {
            return "it has no 'conv_first.weight' or 'model.0.weight'; its first tensor '\(key)' is not an RRDBNet's"
        }
        return "it holds no tensors"
    }
}
