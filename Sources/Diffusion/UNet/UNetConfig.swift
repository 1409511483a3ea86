import Foundation

/// The hyperparameters of an SD1.x `UNet2DConditionModel`, read from diffusers' `unet/config.json`.
///
/// Defaults are Stable Diffusion 1.5's, so `UNetConfig()` describes SD1.5 and a config.json need
/// only list what differs. Unknown keys are ignored; settings that change the architecture away
/// from SD1.x are decoded so that `validate()` can refuse them by name.
public struct UNetConfig: Codable, Equatable, Sendable {
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

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels"
        case outChannels = "out_channels"
        case blockOutChannels = "block_out_channels"
        case layersPerBlock = "layers_per_block"
        case attentionHeadDim = "attention_head_dim"
        case crossAttentionDim = "cross_attention_dim"
        case transformerLayersPerBlock = "transformer_layers_per_block"
        case normGroups = "norm_num_groups"
        case normEps = "norm_eps"
        case downBlockTypes = "down_block_types"
        case upBlockTypes = "up_block_types"
        case midBlockType = "mid_block_type"
        case sampleSize = "sample_size"
        case flipSinToCos = "flip_sin_to_cos"
        case freqShift = "freq_shift"
        case midBlockScaleFactor = "mid_block_scale_factor"
        case downsamplePadding = "downsample_padding"
        case activation = "act_fn"
        case upcastAttention = "upcast_attention"
        case useLinearProjection = "use_linear_projection"
        case onlyCrossAttention = "only_cross_attention"
        case dualCrossAttention = "dual_cross_attention"
        case centerInputSample = "center_input_sample"
        case numAttentionHeads = "num_attention_heads"
        case classEmbedType = "class_embed_type"
        case numClassEmbeds = "num_class_embeds"
        case additionEmbedType = "addition_embed_type"
        case encoderHidDim = "encoder_hid_dim"
        case timeCondProjDim = "time_cond_proj_dim"
        case timeEmbeddingType = "time_embedding_type"
        case timeEmbeddingDim = "time_embedding_dim"
        case resnetTimeScaleShift = "resnet_time_scale_shift"
        case attentionType = "attention_type"
        case convInKernel = "conv_in_kernel"
        case convOutKernel = "conv_out_kernel"
        case resnetSkipTimeActivation = "resnet_skip_time_act"
        case resnetOutScaleFactor = "resnet_out_scale_factor"
        case timeEmbeddingActivation = "time_embedding_act_fn"
        case timestepPostActivation = "timestep_post_act"
        case crossAttentionNorm = "cross_attention_norm"
        case additionTimeEmbedDim = "addition_time_embed_dim"
        case projectionClassEmbeddingsInputDim = "projection_class_embeddings_input_dim"
    }

    /// SD1.5's UNet.
    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = UNetConfig()
        inChannels = try c.decodeSetting(.inChannels, default: d.inChannels)
        outChannels = try c.decodeSetting(.outChannels, default: d.outChannels)
        blockOutChannels = try c.decodeSetting(.blockOutChannels, default: d.blockOutChannels)
        layersPerBlock = try c.decodeSetting(.layersPerBlock, default: d.layersPerBlock)
        attentionHeadDim = try c.decodeSetting(.attentionHeadDim, default: d.attentionHeadDim)
        crossAttentionDim = try c.decodeSetting(.crossAttentionDim, default: d.crossAttentionDim)
        transformerLayersPerBlock = try c.decodeSetting(.transformerLayersPerBlock, default: d.transformerLayersPerBlock)
        normGroups = try c.decodeSetting(.normGroups, default: d.normGroups)
        normEps = try c.decodeSetting(.normEps, default: d.normEps)
        downBlockTypes = try c.decodeSetting(.downBlockTypes, default: d.downBlockTypes)
        upBlockTypes = try c.decodeSetting(.upBlockTypes, default: d.upBlockTypes)
        midBlockType = try c.decodeSetting(.midBlockType, default: d.midBlockType)
        sampleSize = try c.decodeSetting(.sampleSize, default: d.sampleSize)
        flipSinToCos = try c.decodeSetting(.flipSinToCos, default: d.flipSinToCos)
        freqShift = try c.decodeSetting(.freqShift, default: d.freqShift)
        midBlockScaleFactor = try c.decodeSetting(.midBlockScaleFactor, default: d.midBlockScaleFactor)
        downsamplePadding = try c.decodeSetting(.downsamplePadding, default: d.downsamplePadding)
        activation = try c.decodeSetting(.activation, default: d.activation)
        upcastAttention = try c.decodeSetting(.upcastAttention, default: d.upcastAttention)
        useLinearProjection = try c.decodeSetting(.useLinearProjection, default: d.useLinearProjection)
        // diffusers accepts a bool or a per-block list of bools here; any true is refused.
        if let flags = try? c.decodeIfPresent([Bool].self, forKey: .onlyCrossAttention) {
            onlyCrossAttention = flags.contains(true)
        } else {
            onlyCrossAttention = try c.decodeSetting(.onlyCrossAttention, default: d.onlyCrossAttention)
        }
        dualCrossAttention = try c.decodeSetting(.dualCrossAttention, default: d.dualCrossAttention)
        centerInputSample = try c.decodeSetting(.centerInputSample, default: d.centerInputSample)
        numAttentionHeads = try c.decodeIfPresent(PerBlock.self, forKey: .numAttentionHeads)
        classEmbedType = try c.decodeIfPresent(String.self, forKey: .classEmbedType)
        numClassEmbeds = try c.decodeIfPresent(Int.self, forKey: .numClassEmbeds)
        additionEmbedType = try c.decodeIfPresent(String.self, forKey: .additionEmbedType)
        encoderHidDim = try c.decodeIfPresent(Int.self, forKey: .encoderHidDim)
        timeCondProjDim = try c.decodeIfPresent(Int.self, forKey: .timeCondProjDim)
        timeEmbeddingType = try c.decodeSetting(.timeEmbeddingType, default: d.timeEmbeddingType)
        timeEmbeddingDim = try c.decodeIfPresent(Int.self, forKey: .timeEmbeddingDim)
        resnetTimeScaleShift = try c.decodeSetting(.resnetTimeScaleShift, default: d.resnetTimeScaleShift)
        attentionType = try c.decodeSetting(.attentionType, default: d.attentionType)
        convInKernel = try c.decodeSetting(.convInKernel, default: d.convInKernel)
        convOutKernel = try c.decodeSetting(.convOutKernel, default: d.convOutKernel)
        resnetSkipTimeActivation = try c.decodeSetting(.resnetSkipTimeActivation, default: d.resnetSkipTimeActivation)
        resnetOutScaleFactor = try c.decodeSetting(.resnetOutScaleFactor, default: d.resnetOutScaleFactor)
        timeEmbeddingActivation = try c.decodeIfPresent(String.self, forKey: .timeEmbeddingActivation)
        timestepPostActivation = try c.decodeIfPresent(String.self, forKey: .timestepPostActivation)
        crossAttentionNorm = try c.decodeIfPresent(String.self, forKey: .crossAttentionNorm)
        additionTimeEmbedDim = try c.decodeIfPresent(Int.self, forKey: .additionTimeEmbedDim)
        projectionClassEmbeddingsInputDim = try c.decodeIfPresent(Int.self, forKey: .projectionClassEmbeddingsInputDim)
    }

    /// Reads a diffusers `unet/config.json`.
    /// - Throws: `ModelConfigError.malformed` when the JSON is malformed or a known setting has the
    ///   wrong type, naming the setting.
    public init(json: Data) throws {
        self = try ModelConfigError.decode(UNetConfig.self, model: "UNet", from: json)
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
        func unsupported(_ setting: CodingKeys, _ value: Any, _ reason: String) -> ModelConfigError {
            .unsupported(model: "UNet", setting: setting.rawValue, value: "\(value)", reason: reason)
        }
        func invalid(_ setting: CodingKeys, _ value: Any, _ reason: String) -> ModelConfigError {
            .invalid(model: "UNet", setting: setting.rawValue, value: "\(value)", reason: reason)
        }
        if useLinearProjection { throw unsupported(.useLinearProjection, true, "linear projections in the spatial transformers are an SD2.x/SDXL design") }
        if onlyCrossAttention { throw unsupported(.onlyCrossAttention, true, "SD1.x transformers use self- and cross-attention") }
        if dualCrossAttention { throw unsupported(.dualCrossAttention, true, "not an SD1.x design") }
        if centerInputSample { throw unsupported(.centerInputSample, true, "not an SD1.x design") }
        if let numAttentionHeads { throw unsupported(.numAttentionHeads, numAttentionHeads, "diffusers itself rejects it for UNet2DConditionModel; SD1.x sets attention_head_dim") }
        if let classEmbedType { throw unsupported(.classEmbedType, classEmbedType, "class-conditioned UNets (e.g. upscalers) are not SD1.x") }
        if let numClassEmbeds { throw unsupported(.numClassEmbeds, numClassEmbeds, "class-conditioned UNets are not SD1.x") }
        if let additionEmbedType { throw unsupported(.additionEmbedType, additionEmbedType, "added text/time conditioning is an SDXL design") }
        if let encoderHidDim { throw unsupported(.encoderHidDim, encoderHidDim, "not an SD1.x design") }
        if let timeCondProjDim { throw unsupported(.timeCondProjDim, timeCondProjDim, "guidance-distilled (LCM) UNets are not SD1.x") }
        if timeEmbeddingType != "positional" { throw unsupported(.timeEmbeddingType, timeEmbeddingType, "SD1.x uses sinusoidal time features") }
        if let timeEmbeddingDim { throw unsupported(.timeEmbeddingDim, timeEmbeddingDim, "SD1.x's time embedding is 4 × block_out_channels[0]") }
        if resnetTimeScaleShift != "default" { throw unsupported(.resnetTimeScaleShift, resnetTimeScaleShift, "SD1.x adds the time embedding") }
        if attentionType != "default" { throw unsupported(.attentionType, attentionType, "gated (GLIGEN) attention is not SD1.x") }
        if activation != "silu" { throw unsupported(.activation, activation, "SD1.x uses SiLU") }
        if convInKernel != 3 { throw unsupported(.convInKernel, convInKernel, "SD1.x uses 3×3") }
        if convOutKernel != 3 { throw unsupported(.convOutKernel, convOutKernel, "SD1.x uses 3×3") }
        if downsamplePadding != 1 { throw unsupported(.downsamplePadding, downsamplePadding, "SD1.x pads its downsampling by 1") }
        if resnetSkipTimeActivation { throw unsupported(.resnetSkipTimeActivation, true, "SD1.x's resnets apply SiLU to the time embedding") }
        if resnetOutScaleFactor != 1 { throw unsupported(.resnetOutScaleFactor, resnetOutScaleFactor, "SD1.x's resnets are not rescaled") }
        if let timeEmbeddingActivation { throw unsupported(.timeEmbeddingActivation, timeEmbeddingActivation, "not an SD1.x design") }
        if let timestepPostActivation { throw unsupported(.timestepPostActivation, timestepPostActivation, "not an SD1.x design") }
        if let crossAttentionNorm { throw unsupported(.crossAttentionNorm, crossAttentionNorm, "SD1.x does not normalise the text before cross-attention") }
        if let additionTimeEmbedDim { throw unsupported(.additionTimeEmbedDim, additionTimeEmbedDim, "added time conditioning is an SDXL design") }
        if let projectionClassEmbeddingsInputDim { throw unsupported(.projectionClassEmbeddingsInputDim, projectionClassEmbeddingsInputDim, "added conditioning is an SDXL design") }
        if let midBlockType, midBlockType != "UNetMidBlock2DCrossAttn" { throw unsupported(.midBlockType, midBlockType, "SD1.x's mid block is UNetMidBlock2DCrossAttn") }
        if case .each = crossAttentionDim { throw unsupported(.crossAttentionDim, crossAttentionDim, "SD1.x has one text width for every block") }

        let levels = blockOutChannels.count
        if levels == 0 { throw invalid(.blockOutChannels, blockOutChannels, "at least one level is needed") }
        if downBlockTypes.count != levels { throw invalid(.downBlockTypes, downBlockTypes, "one per entry of block_out_channels (\(levels))") }
        if upBlockTypes.count != levels { throw invalid(.upBlockTypes, upBlockTypes, "one per entry of block_out_channels (\(levels))") }
        for type in downBlockTypes where !["CrossAttnDownBlock2D", "DownBlock2D"].contains(type) {
            throw unsupported(.downBlockTypes, type, "SD1.x uses CrossAttnDownBlock2D and DownBlock2D")
        }
        for type in upBlockTypes where !["CrossAttnUpBlock2D", "UpBlock2D"].contains(type) {
            throw unsupported(.upBlockTypes, type, "SD1.x uses CrossAttnUpBlock2D and UpBlock2D")
        }
        guard let layers = layersPerBlock.values(count: levels), layers.allSatisfy({ $0 > 0 }) else {
            throw invalid(.layersPerBlock, layersPerBlock, "one positive count per level")
        }
        guard let heads = attentionHeadDim.values(count: levels), heads.allSatisfy({ $0 > 0 }) else {
            throw invalid(.attentionHeadDim, attentionHeadDim, "one positive head count per level")
        }
        for (channels, count) in zip(blockOutChannels, heads) where channels % count != 0 {
            throw invalid(.attentionHeadDim, attentionHeadDim, "\(channels) channels do not split into \(count) heads")
        }
        guard transformerLayersPerBlock.values(count: levels)?.allSatisfy({ $0 > 0 }) == true else {
            throw invalid(.transformerLayersPerBlock, transformerLayersPerBlock, "one positive count per level")
        }
        if contextDim <= 0 { throw invalid(.crossAttentionDim, crossAttentionDim, "must be positive") }
        if normGroups <= 0 { throw invalid(.normGroups, normGroups, "must be positive") }
        for channels in blockOutChannels where channels <= 0 || channels % normGroups != 0 {
            throw invalid(.blockOutChannels, blockOutChannels, "\(channels) channels do not split into \(normGroups) groups")
        }
        if inChannels <= 0 { throw invalid(.inChannels, inChannels, "must be positive") }
        if outChannels <= 0 { throw invalid(.outChannels, outChannels, "must be positive") }
        if midBlockScaleFactor == 0 { throw invalid(.midBlockScaleFactor, midBlockScaleFactor, "must not be zero") }
    }
}
