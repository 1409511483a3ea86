/// The decoding half of SD1.x's `AutoencoderKL`: latents to pixels.
///
/// `post_quant_conv` → `decoder.conv_in` → mid block (resnet, attention over all pixels, resnet) →
/// up levels (`layers_per_block + 1` resnets each, doubling the size in all but the last) →
/// GroupNorm, SiLU, `conv_out`. Each level doubles the side, so an `h×w` latent gives an image of
/// `8h×8w` pixels with SD1.x's four levels.
public struct AutoencoderDecoder: Sendable {
    public let config: VAEConfig
    let postQuantConv: Conv2d?
    let convIn: Conv2d
    let midBlock: VAEMidBlock
    let upBlocks: [VAEUpBlock]
    let normOut: GroupNorm
    let convOut: Conv2d

    /// Builds the decoder over a checkpoint's weights, checking every tensor's presence and shape.
    /// - Parameters:
    ///   - config: the hyperparameters; SD1.5's by default.
    ///   - weights: the checkpoint scoped at the VAE (keys such as `post_quant_conv.weight`,
    ///     `decoder.mid_block.attentions.0.to_q.weight`), in diffusers module names. The encoder's
    ///     tensors, if present, are not used.
    /// - Throws: `ModelConfigError` for a config that is not SD1.x; `WeightsError.missingTensor`
    ///   / `.shapeMismatch` naming the first tensor that is absent or shaped differently.
    public init(config: VAEConfig = VAEConfig(), weights: Weights) throws {
        try config.validate()
        self.config = config
        let decoder = weights.scoped("decoder")
        let reversed = Array(config.blockOutChannels.reversed())
        // The decoder's GroupNorms use diffusers' fixed eps of 1e-6 (Decoder passes resnet_eps=1e-6).
        let eps: Float = 1e-6

        postQuantConv = !config.usePostQuantConv ? nil
            : try Conv2d(weights.scoped("post_quant_conv"), inChannels: config.latentChannels, outChannels: config.latentChannels, kernel: 1)
        convIn = try Conv2d(decoder.scoped("conv_in"), inChannels: config.latentChannels, outChannels: reversed[0], kernel: 3)
        midBlock = try VAEMidBlock(decoder.scoped("mid_block"), channels: reversed[0], groups: config.normGroups,
                                   eps: eps, attention: config.midBlockAddAttention)
        upBlocks = try reversed.indices.map { level in
            try VAEUpBlock(decoder.scoped("up_blocks.\(level)"), inChannels: reversed[max(level - 1, 0)],
                           outChannels: reversed[level], resnets: config.layersPerBlock + 1, groups: config.normGroups,
                           eps: eps, upsample: level != reversed.count - 1)
        }
        let outputChannels = config.blockOutChannels[0]
        normOut = try GroupNorm(decoder.scoped("conv_norm_out"), groups: config.normGroups, channels: outputChannels, eps: eps)
        convOut = try Conv2d(decoder.scoped("conv_out"), inChannels: outputChannels, outChannels: config.outChannels, kernel: 3)
    }

    /// Decodes latents as the sampler leaves them.
    /// - Parameter latents: `[B, latentChannels, h, w]`, still multiplied by `scaling_factor`
    ///   (this divides by it first, as diffusers' pipeline does before `vae.decode`).
    /// - Returns: `[B, outChannels, 8h, 8w]` for SD1.x, nominally in [-1, 1] but not clamped; an
    ///   image is `(x / 2 + 0.5)` clamped to [0, 1].
    /// - Precondition: `latents` has `latentChannels` channels (a programmer error otherwise).
    public func decode(_ latents: Tensor) -> Tensor {
        decode(latents, checkpoint: {})
    }

    /// The same, checking `cancellation` between the decoder's levels (a 512×512 decode takes tens of
    /// seconds on a CPU).
    /// - Throws: `PipelineError.cancelled`.
    public func decode(_ latents: Tensor, cancellation: CancellationToken?) throws -> Tensor {
        try CancellationToken.guarding(cancellation) { try decode(latents, checkpoint: { try cancellation?.check() }) }
    }

    /// The same; with `tiled`, latents larger than `sample_size / 8` are decoded in overlapping
    /// tiles, as diffusers' `enable_tiling()` (`VAETiling`).
    public func decode(_ latents: Tensor, tiled: Bool, cancellation: CancellationToken?) throws -> Tensor {
        let tiling = config.tiling.decoder
        guard tiled, tiling.applies(height: latents.shape[2], width: latents.shape[3]) else {
            return try decode(latents, cancellation: cancellation)
        }
        return try tiling.run(latents) { try decode($0, cancellation: cancellation) }
    }

    private func decode(_ latents: Tensor, checkpoint: () throws -> Void) rethrows -> Tensor {
        precondition(latents.rank == 4 && latents.shape[1] == config.latentChannels,
                     "VAE input must be [B, \(config.latentChannels), h, w], got \(latents.shape)")
        MemoryMode.returnFreedMemory()  // the UNet's freed blocks, before the decoder's larger ones
        var h = latents * (1 / config.scalingFactor)
        if let postQuantConv { h = postQuantConv(h) }
        h = convIn(h)  // [B, C, h, w]
        h = midBlock(h)
        for block in upBlocks {
            try checkpoint()
            h = block(consume h)  // handed over, so each level's input is freed as soon as it is used
        }
        return convOut(normOut.normalizing(consume h, silu: true))  // [B, outChannels, H, W]
    }
}

/// The VAE decoder's bottom (diffusers `UNetMidBlock2D` without time embedding): resnet,
/// self-attention over every pixel, resnet.
struct VAEMidBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attention: VAEAttentionBlock?

    init(_ weights: Weights, channels: Int, groups: Int, eps: Float, attention: Bool) throws {
        resnets = try (0..<2).map {
            try ResnetBlock2D(weights.scoped("resnets.\($0)"), inChannels: channels, outChannels: channels,
                              timeEmbeddingChannels: nil, groups: groups, eps: eps)
        }
        self.attention = !attention ? nil
            : try VAEAttentionBlock(weights.scoped("attentions.0"), channels: channels, groups: groups, eps: eps)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = resnets[0](x)
        if let attention { h = attention(h) }
        return resnets[1](h)
    }
}

/// Single-head self-attention over all pixels with a GroupNorm in front and a residual around it
/// (diffusers `Attention` with `group_norm`, `residual_connection=True`, heads = 1, head size = C).
struct VAEAttentionBlock: Sendable {
    let norm: GroupNorm
    let attention: Attention

    init(_ weights: Weights, channels: Int, groups: Int, eps: Float) throws {
        norm = try GroupNorm(weights.scoped("group_norm"), groups: groups, channels: channels, eps: eps)
        attention = try Attention(weights, queryDim: channels, heads: 1, headDim: channels, projectionBias: true)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let (height, width) = (x.shape[2], x.shape[3])
        let tokens = norm(x).nchwToTokens()  // [B, HW, C]
        return attention(tokens).tokensToNCHW(height: height, width: width) + x  // [B, C, H, W]
    }
}

/// One level of the decoder (diffusers `UpDecoderBlock2D`): resnets, then a doubling upsampler
/// except at the last level.
struct VAEUpBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let upsampler: Upsample2D?

    init(_ weights: Weights, inChannels: Int, outChannels: Int, resnets count: Int, groups: Int, eps: Float, upsample: Bool) throws {
        resnets = try (0..<count).map {
            try ResnetBlock2D(weights.scoped("resnets.\($0)"), inChannels: $0 == 0 ? inChannels : outChannels,
                              outChannels: outChannels, timeEmbeddingChannels: nil, groups: groups, eps: eps)
        }
        upsampler = !upsample ? nil : try Upsample2D(weights.scoped("upsamplers.0"), channels: outChannels)
    }

    /// Freed blocks go back to the system before the upsampler: its upsampled input and its output
    /// are four times the size of the level's maps, so the freed maps cannot hold them and would
    /// otherwise stay resident beside them at the decoder's peak (README "Memory modes"). Not
    /// before each level's resnets: their maps reuse the freed blocks, and trimming those costs
    /// page faults.
    func callAsFunction(_ x: consuming Tensor) -> Tensor {
        var h = consume x
        for resnet in resnets {
            h = resnet(consume h)
        }
        guard let upsampler else { return h }
        MemoryMode.returnFreedMemory()
        return upsampler(consume h)  // [B, C, 2H, 2W]
    }
}
