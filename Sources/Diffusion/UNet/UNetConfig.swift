import Foundation

/// The hyperparameters of an SD1.x `UNet2DConditionModel`, read from diffusers' `unet/config.json`.
///
/// Defaults are Stable Diffusion 1.5's, so `UNetConfig()` describes SD1.5 and a config.json need
/// only list what differs. Unknown keys are ignored; settings that change the architecture away
/// from SD1.x are decoded so that `validate()` can refuse them by name.
public struct UNetConfig: ModelConfigFile, Equatable, Sendable {
    /// Channels of the latent input (`in_channels`).
    public var inChannels = 4
    /// Channels of the predicted noise (`out_channels`).
    public var outChannels = 4
    /// Channels of each resolution level, highest resolution first (`block_out_channels`).
    public var blockOutChannels = [320, 640, 1280, 1280]
    /// Resnets per down block; up blocks have one more (`layers_per_block`).
    public var layersPerBlock: PerBlock = .all(2)
    /// For SD1.x this is the number of attention heads, not their size: diffusers'
    /// `UNet2DConditionModel` uses `attention_head_dim` as `num_attention_heads` (a naming mistake
    /// it keeps for compatibility). SD1.5 has 8 heads at every level.
    public var attentionHeadDim: PerBlock = .all(8)
    /// Width of the text embedding the cross-attention reads (`cross_attention_dim`).
    public var crossAttentionDim: PerBlock = .all(768)
    /// Transformer blocks in each spatial transformer (`transformer_layers_per_block`).
    public var transformerLayersPerBlock: PerBlock = .all(1)
    /// Groups of every GroupNorm (`norm_num_groups`).
    public var normGroups = 32
    /// Epsilon of the resnets' and the output GroupNorms (`norm_eps`).
    public var normEps: Float = 1e-5
    /// `down_block_types`: `CrossAttnDownBlock2D` or `DownBlock2D` per level.
    public var downBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
    /// `up_block_types`: `UpBlock2D` or `CrossAttnUpBlock2D` per level, lowest resolution first.
    public var upBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    /// `mid_block_type`; nil means `UNetMidBlock2DCrossAttn`.
    public var midBlockType: String? = "UNetMidBlock2DCrossAttn"
    /// Latent side the model was trained at (`sample_size`): 64 for 512 px. Informational.
    public var sampleSize = 64
    /// Order of the sinusoidal time features: cos first when true (`flip_sin_to_cos`).
    public var flipSinToCos = true
    /// Shift of the frequency denominator of the time features (`freq_shift`).
    public var freqShift: Float = 0
    /// Divisor of the mid block's resnet outputs (`mid_block_scale_factor`).
    public var midBlockScaleFactor: Float = 1
    /// Padding of the downsampling convolutions (`downsample_padding`).
    public var downsamplePadding = 1
    /// Activation of resnets and the output (`act_fn`).
    public var activation = "silu"
    /// Softmax in Float32 for Float16 models (`upcast_attention`). Every op here already computes in
    /// Float32, so both values give the same result and both are accepted.
    public var upcastAttention = false

    // Settings of non-SD1.x UNets, kept only to refuse them by name.
    public var useLinearProjection = false
    public var onlyCrossAttention = false
    public var dualCrossAttention = false
    public var centerInputSample = false
    public var numAttentionHeads: PerBlock?
    public var classEmbedType: String?
    public var numClassEmbeds: Int?
    public var additionEmbedType: String?
    public var encoderHidDim: Int?
    public var timeCondProjDim: Int?
    public var timeEmbeddingType = "positional"
    public var timeEmbeddingDim: Int?
    public var resnetTimeScaleShift = "default"
    public var attentionType = "default"
    public var convInKernel = 3
    public var convOutKernel = 3
    public var resnetSkipTimeActivation = false
    public var resnetOutScaleFactor: Float = 1
    public var timeEmbeddingActivation: String?
    public var timestepPostActivation: String?
    public var crossAttentionNorm: String?
    public var additionTimeEmbedDim: Int?
    public var projectionClassEmbeddingsInputDim: Int?

    public static let modelName = "UNet"
    public static let renamedSettings = [
        "norm_num_groups": "normGroups",
        "act_fn": "activation",
        "resnet_skip_time_act": "resnetSkipTimeActivation",
        "time_embedding_act_fn": "timeEmbeddingActivation",
        "timestep_post_act": "timestepPostActivation",
    ]

    /// SD1.5's UNet.
    public init() {}

    /// diffusers accepts a bool or a per-block list of bools for `only_cross_attention`; any true is
    /// refused by `validate()`.
    public static func normalise(_ settings: inout [String: Any]) {
        if let flags = settings["onlyCrossAttention"] as? [Bool] { settings["onlyCrossAttention"] = flags.contains(true) }
    }

    /// Time-embedding width: four times the first level's channels, as in diffusers.
    public var timeEmbeddingChannels: Int { blockOutChannels[0] * 4 }

    // Per-level values of a validated config (validate() guarantees the lists have one per level).
    var levelCount: Int { blockOutChannels.count }
    var resnetsPerLevel: [Int] { layersPerBlock.values(count: levelCount) ?? [] }
    var headsPerLevel: [Int] { attentionHeadDim.values(count: levelCount) ?? [] }
    var transformerLayersPerLevel: [Int] { transformerLayersPerBlock.values(count: levelCount) ?? [] }
    /// The single text width of an SD1.x UNet.
    var contextDim: Int { crossAttentionDim.values(count: 1)?.first ?? 0 }

    /// Checks that this is an SD1.x UNet whose sizes fit together.
    /// - Throws: `ModelConfigError.unsupported` naming the first setting outside SD1.x, or
    ///   `.invalid` for sizes that cannot work (e.g. channels not divisible by the group count).
    public func validate() throws {
        func unsupported(_ setting: String, _ value: Any, _ reason: String) -> ModelConfigError {
            .unsupported(model: Self.modelName, setting: setting, value: "\(value)", reason: reason)
        }
        func invalid(_ setting: String, _ value: Any, _ reason: String) -> ModelConfigError {
            .invalid(model: Self.modelName, setting: setting, value: "\(value)", reason: reason)
        }
        if useLinearProjection { throw unsupported("use_linear_projection", true, "linear projections in the spatial transformers are an SD2.x/SDXL design") }
        if onlyCrossAttention { throw unsupported("only_cross_attention", true, "SD1.x transformers use self- and cross-attention") }
        if dualCrossAttention { throw unsupported("dual_cross_attention", true, "not an SD1.x design") }
        if centerInputSample { throw unsupported("center_input_sample", true, "not an SD1.x design") }
        if let numAttentionHeads { throw unsupported("num_attention_heads", numAttentionHeads, "diffusers itself rejects it for UNet2DConditionModel; SD1.x sets attention_head_dim") }
        if let classEmbedType { throw unsupported("class_embed_type", classEmbedType, "class-conditioned UNets (e.g. upscalers) are not SD1.x") }
        if let numClassEmbeds { throw unsupported("num_class_embeds", numClassEmbeds, "class-conditioned UNets are not SD1.x") }
        if let additionEmbedType { throw unsupported("addition_embed_type", additionEmbedType, "added text/time conditioning is an SDXL design") }
        if let encoderHidDim { throw unsupported("encoder_hid_dim", encoderHidDim, "not an SD1.x design") }
        if let timeCondProjDim { throw unsupported("time_cond_proj_dim", timeCondProjDim, "guidance-distilled (LCM) UNets are not SD1.x") }
        if timeEmbeddingType != "positional" { throw unsupported("time_embedding_type", timeEmbeddingType, "SD1.x uses sinusoidal time features") }
        if let timeEmbeddingDim { throw unsupported("time_embedding_dim", timeEmbeddingDim, "SD1.x's time embedding is 4 × block_out_channels[0]") }
        if resnetTimeScaleShift != "default" { throw unsupported("resnet_time_scale_shift", resnetTimeScaleShift, "SD1.x adds the time embedding") }
        if attentionType != "default" { throw unsupported("attention_type", attentionType, "gated (GLIGEN) attention is not SD1.x") }
        if activation != "silu" { throw unsupported("act_fn", activation, "SD1.x uses SiLU") }
        if convInKernel != 3 { throw unsupported("conv_in_kernel", convInKernel, "SD1.x uses 3×3") }
        if convOutKernel != 3 { throw unsupported("conv_out_kernel", convOutKernel, "SD1.x uses 3×3") }
        if downsamplePadding != 1 { throw unsupported("downsample_padding", downsamplePadding, "SD1.x pads its downsampling by 1") }
        if resnetSkipTimeActivation { throw unsupported("resnet_skip_time_act", true, "SD1.x's resnets apply SiLU to the time embedding") }
        if resnetOutScaleFactor != 1 { throw unsupported("resnet_out_scale_factor", resnetOutScaleFactor, "SD1.x's resnets are not rescaled") }
        if let timeEmbeddingActivation { throw unsupported("time_embedding_act_fn", timeEmbeddingActivation, "not an SD1.x design") }
        if let timestepPostActivation { throw unsupported("timestep_post_act", timestepPostActivation, "not an SD1.x design") }
        if let crossAttentionNorm { throw unsupported("cross_attention_norm", crossAttentionNorm, "SD1.x does not normalise the text before cross-attention") }
        if let additionTimeEmbedDim { throw unsupported("addition_time_embed_dim", additionTimeEmbedDim, "added time conditioning is an SDXL design") }
        if let projectionClassEmbeddingsInputDim { throw unsupported("projection_class_embeddings_input_dim", projectionClassEmbeddingsInputDim, "added conditioning is an SDXL design") }
        if let midBlockType, midBlockType != "UNetMidBlock2DCrossAttn" { throw unsupported("mid_block_type", midBlockType, "SD1.x's mid block is UNetMidBlock2DCrossAttn") }
        if case .each = crossAttentionDim { throw unsupported("cross_attention_dim", crossAttentionDim, "SD1.x has one text width for every block") }

        let levels = blockOutChannels.count
        if levels == 0 { throw invalid("block_out_channels", blockOutChannels, "at least one level is needed") }
        if downBlockTypes.count != levels { throw invalid("down_block_types", downBlockTypes, "one per entry of block_out_channels (\(levels))") }
        if upBlockTypes.count != levels { throw invalid("up_block_types", upBlockTypes, "one per entry of block_out_channels (\(levels))") }
        for type in downBlockTypes where !["CrossAttnDownBlock2D", "DownBlock2D"].contains(type) {
            throw unsupported("down_block_types", type, "SD1.x uses CrossAttnDownBlock2D and DownBlock2D")
        }
        for type in upBlockTypes where !["CrossAttnUpBlock2D", "UpBlock2D"].contains(type) {
            throw unsupported("up_block_types", type, "SD1.x uses CrossAttnUpBlock2D and UpBlock2D")
        }
        let maxLayers = ModelConfigLimits.layers, maxWidth = ModelConfigLimits.width
        guard let layers = layersPerBlock.values(count: levels), layers.allSatisfy({ (1...maxLayers).contains($0) }) else {
            throw invalid("layers_per_block", layersPerBlock, "one count from 1 to \(maxLayers) per level")
        }
        guard let heads = attentionHeadDim.values(count: levels), heads.allSatisfy({ $0 > 0 }) else {
            throw invalid("attention_head_dim", attentionHeadDim, "one positive head count per level")
        }
        for (channels, count) in zip(blockOutChannels, heads) where channels % count != 0 {
            throw invalid("attention_head_dim", attentionHeadDim, "\(channels) channels do not split into \(count) heads")
        }
        guard transformerLayersPerBlock.values(count: levels)?.allSatisfy({ (1...maxLayers).contains($0) }) == true else {
            throw invalid("transformer_layers_per_block", transformerLayersPerBlock, "one count from 1 to \(maxLayers) per level")
        }
        if !(1...maxWidth).contains(contextDim) { throw invalid("cross_attention_dim", crossAttentionDim, "must be from 1 to \(maxWidth)") }
        if normGroups <= 0 { throw invalid("norm_num_groups", normGroups, "must be positive") }
        for channels in blockOutChannels where channels > maxWidth {
            throw invalid("block_out_channels", blockOutChannels, "\(channels) channels is more than \(maxWidth)")
        }
        for channels in blockOutChannels where channels <= 0 || channels % normGroups != 0 {
            throw invalid("block_out_channels", blockOutChannels, "\(channels) channels do not split into \(normGroups) groups")
        }
        if !(1...maxWidth).contains(inChannels) { throw invalid("in_channels", inChannels, "must be from 1 to \(maxWidth)") }
        if !(1...maxWidth).contains(outChannels) { throw invalid("out_channels", outChannels, "must be from 1 to \(maxWidth)") }
        if midBlockScaleFactor == 0 { throw invalid("mid_block_scale_factor", midBlockScaleFactor, "must not be zero") }
    }
}
