import Foundation

/// The hyperparameters of SD1.x's `AutoencoderKL`, read from diffusers' `vae/config.json`.
/// Defaults are Stable Diffusion 1.5's; unknown keys are ignored.
public struct VAEConfig: Codable, Equatable, Sendable {
    /// Channels of the latent space (`latent_channels`).
    public var latentChannels = 4
    /// Channels of the encoded image (`in_channels`).
    public var inChannels = 3
    /// Channels of the decoded image (`out_channels`).
    public var outChannels = 3
    /// Channels of each level, highest resolution first (`block_out_channels`); the decoder walks
    /// them in reverse.
    public var blockOutChannels = [128, 256, 512, 512]
    /// Resnets per encoder level; decoder levels have one more (`layers_per_block`).
    public var layersPerBlock = 2
    /// Groups of every GroupNorm (`norm_num_groups`).
    public var normGroups = 32
    /// `up_block_types`, one `UpDecoderBlock2D` per level.
    public var upBlockTypes = ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
    /// Latents are divided by this before decoding (`scaling_factor`, 0.18215 for SD1.x).
    public var scalingFactor: Float = 0.18215
    /// Pixel side the model was trained at (`sample_size`). Informational.
    public var sampleSize = 512
    /// Activation of the resnets and the output (`act_fn`).
    public var activation = "silu"
    /// Whether the mid block has its attention layer (`mid_block_add_attention`).
    public var midBlockAddAttention = true
    /// Whether a 1×1 `post_quant_conv` precedes the decoder (`use_post_quant_conv`).
    public var usePostQuantConv = true
    /// Whether a 1×1 `quant_conv` follows the encoder (`use_quant_conv`).
    public var useQuantConv = true

    // Settings of non-SD1.x autoencoders, kept only to refuse them by name.
    public var shiftFactor: Float?
    public var latentsMean: [Float]?
    public var latentsStd: [Float]?

    enum CodingKeys: String, CodingKey {
        case latentChannels = "latent_channels"
        case inChannels = "in_channels"
        case outChannels = "out_channels"
        case blockOutChannels = "block_out_channels"
        case layersPerBlock = "layers_per_block"
        case normGroups = "norm_num_groups"
        case upBlockTypes = "up_block_types"
        case scalingFactor = "scaling_factor"
        case sampleSize = "sample_size"
        case activation = "act_fn"
        case midBlockAddAttention = "mid_block_add_attention"
        case usePostQuantConv = "use_post_quant_conv"
        case useQuantConv = "use_quant_conv"
        case shiftFactor = "shift_factor"
        case latentsMean = "latents_mean"
        case latentsStd = "latents_std"
    }

    /// SD1.5's VAE.
    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = VAEConfig()
        latentChannels = try c.decodeSetting(.latentChannels, default: d.latentChannels)
        inChannels = try c.decodeSetting(.inChannels, default: d.inChannels)
        outChannels = try c.decodeSetting(.outChannels, default: d.outChannels)
        blockOutChannels = try c.decodeSetting(.blockOutChannels, default: d.blockOutChannels)
        layersPerBlock = try c.decodeSetting(.layersPerBlock, default: d.layersPerBlock)
        normGroups = try c.decodeSetting(.normGroups, default: d.normGroups)
        upBlockTypes = try c.decodeSetting(.upBlockTypes, default: d.upBlockTypes)
        scalingFactor = try c.decodeSetting(.scalingFactor, default: d.scalingFactor)
        sampleSize = try c.decodeSetting(.sampleSize, default: d.sampleSize)
        activation = try c.decodeSetting(.activation, default: d.activation)
        midBlockAddAttention = try c.decodeSetting(.midBlockAddAttention, default: d.midBlockAddAttention)
        usePostQuantConv = try c.decodeSetting(.usePostQuantConv, default: d.usePostQuantConv)
        useQuantConv = try c.decodeSetting(.useQuantConv, default: d.useQuantConv)
        shiftFactor = try c.decodeIfPresent(Float.self, forKey: .shiftFactor)
        latentsMean = try c.decodeIfPresent([Float].self, forKey: .latentsMean)
        latentsStd = try c.decodeIfPresent([Float].self, forKey: .latentsStd)
    }

    /// Reads a diffusers `vae/config.json`.
    /// - Throws: `ModelConfigError.malformed` when the JSON is malformed or a known setting has the
    ///   wrong type, naming the setting.
    public init(json: Data) throws {
        self = try ModelConfigError.decode(VAEConfig.self, model: "VAE", from: json)
    }

    /// Checks that this is an SD1.x autoencoder whose sizes fit together.
    /// - Throws: `ModelConfigError` naming the first setting that is not.
    public func validate() throws {
        func unsupported(_ setting: CodingKeys, _ value: Any, _ reason: String) -> ModelConfigError {
            .unsupported(model: "VAE", setting: setting.rawValue, value: "\(value)", reason: reason)
        }
        func invalid(_ setting: CodingKeys, _ value: Any, _ reason: String) -> ModelConfigError {
            .invalid(model: "VAE", setting: setting.rawValue, value: "\(value)", reason: reason)
        }
        if let shiftFactor, shiftFactor != 0 { throw unsupported(.shiftFactor, shiftFactor, "latent shifting belongs to SD3/Flux autoencoders") }
        if latentsMean != nil || latentsStd != nil { throw unsupported(.latentsMean, latentsMean ?? latentsStd ?? [], "per-channel latent statistics are not SD1.x") }
        if activation != "silu" { throw unsupported(.activation, activation, "SD1.x uses SiLU") }
        for type in upBlockTypes where type != "UpDecoderBlock2D" {
            throw unsupported(.upBlockTypes, type, "SD1.x's decoder uses UpDecoderBlock2D")
        }
        if blockOutChannels.isEmpty { throw invalid(.blockOutChannels, blockOutChannels, "at least one level is needed") }
        if upBlockTypes.count != blockOutChannels.count { throw invalid(.upBlockTypes, upBlockTypes, "one per entry of block_out_channels (\(blockOutChannels.count))") }
        if layersPerBlock <= 0 { throw invalid(.layersPerBlock, layersPerBlock, "must be positive") }
        if normGroups <= 0 { throw invalid(.normGroups, normGroups, "must be positive") }
        for channels in blockOutChannels where channels <= 0 || channels % normGroups != 0 {
            throw invalid(.blockOutChannels, blockOutChannels, "\(channels) channels do not split into \(normGroups) groups")
        }
        if latentChannels <= 0 { throw invalid(.latentChannels, latentChannels, "must be positive") }
        if outChannels <= 0 { throw invalid(.outChannels, outChannels, "must be positive") }
        if !(scalingFactor > 0) { throw invalid(.scalingFactor, scalingFactor, "must be positive") }
    }
}
