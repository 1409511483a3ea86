import Foundation

/// The hyperparameters of SD1.x's `AutoencoderKL`, read from diffusers' `vae/config.json`.
/// Defaults are Stable Diffusion 1.5's; unknown keys are ignored.
public struct VAEConfig: ModelConfigFile, Equatable, Sendable {
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

    public static let modelName = "VAE"
    public static let renamedSettings = [
        "norm_num_groups": "normGroups",
        "act_fn": "activation",
    ]

    /// SD1.5's VAE.
    public init() {}

    /// Checks that this is an SD1.x autoencoder whose sizes fit together.
    /// - Throws: `ModelConfigError` naming the first setting that is not.
    public func validate() throws {
        func unsupported(_ setting: String, _ value: Any, _ reason: String) -> ModelConfigError {
            .unsupported(model: Self.modelName, setting: setting, value: "\(value)", reason: reason)
        }
        func invalid(_ setting: String, _ value: Any, _ reason: String) -> ModelConfigError {
            .invalid(model: Self.modelName, setting: setting, value: "\(value)", reason: reason)
        }
        if let shiftFactor, shiftFactor != 0 { throw unsupported("shift_factor", shiftFactor, "latent shifting belongs to SD3/Flux autoencoders") }
        if latentsMean != nil || latentsStd != nil { throw unsupported("latents_mean", latentsMean ?? latentsStd ?? [], "per-channel latent statistics are not SD1.x") }
        if activation != "silu" { throw unsupported("act_fn", activation, "SD1.x uses SiLU") }
        for type in upBlockTypes where type != "UpDecoderBlock2D" {
            throw unsupported("up_block_types", type, "SD1.x's decoder uses UpDecoderBlock2D")
        }
        if blockOutChannels.isEmpty { throw invalid("block_out_channels", blockOutChannels, "at least one level is needed") }
        if upBlockTypes.count != blockOutChannels.count { throw invalid("up_block_types", upBlockTypes, "one per entry of block_out_channels (\(blockOutChannels.count))") }
        if !(1...ModelConfigLimits.layers).contains(layersPerBlock) { throw invalid("layers_per_block", layersPerBlock, "must be from 1 to \(ModelConfigLimits.layers)") }
        if normGroups <= 0 { throw invalid("norm_num_groups", normGroups, "must be positive") }
        for channels in blockOutChannels where channels > ModelConfigLimits.width {
            throw invalid("block_out_channels", blockOutChannels, "\(channels) channels is more than \(ModelConfigLimits.width)")
        }
        for channels in blockOutChannels where channels <= 0 || channels % normGroups != 0 {
            throw invalid("block_out_channels", blockOutChannels, "\(channels) channels do not split into \(normGroups) groups")
        }
        if !(1...ModelConfigLimits.width).contains(inChannels) { throw invalid("in_channels", inChannels, "must be from 1 to \(ModelConfigLimits.width)") }
        if !(1...ModelConfigLimits.width).contains(latentChannels) { throw invalid("latent_channels", latentChannels, "must be from 1 to \(ModelConfigLimits.width)") }
        if !(1...ModelConfigLimits.width).contains(outChannels) { throw invalid("out_channels", outChannels, "must be from 1 to \(ModelConfigLimits.width)") }
        if !(scalingFactor > 0) { throw invalid("scaling_factor", scalingFactor, "must be positive") }
    }
}
