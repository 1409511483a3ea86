import Foundation

/// The encoding half of SD1.x's `AutoencoderKL`: pixels to the latent posterior, for image-to-image.
///
/// `encoder.conv_in` → down levels (`layers_per_block` resnets each, then a stride-2 downsampler padded
/// at the bottom and right, in all but the last) → mid block (resnet, attention over all pixels,
/// resnet) → GroupNorm, SiLU, `conv_out` (2 × latent channels) → `quant_conv`. The result is the mean
/// and log-variance of a diagonal Gaussian (diffusers' `DiagonalGaussianDistribution`).
public struct AutoencoderEncoder: Sendable {
    public let config: VAEConfig
    let convIn: Conv2d
    let downBlocks: [VAEDownBlock]
    let midBlock: VAEMidBlock
    let normOut: GroupNorm
    let convOut: Conv2d
    let quantConv: Conv2d?

    /// Builds the encoder over a checkpoint's weights, checking every tensor's presence and shape.
    /// - Parameter weights: the checkpoint scoped at the VAE (`encoder.conv_in.weight`, `quant_conv.weight`, …).
    /// - Throws: `ModelConfigError` for a config that is not SD1.x; `WeightsError` naming the first
    ///   tensor that is absent or shaped differently.
    public init(config: VAEConfig = VAEConfig(), weights: Weights) throws {
        try config.validate()
        self.config = config
        let encoder = weights.scoped("encoder")
        let channels = config.blockOutChannels
        // The encoder's GroupNorms use diffusers' fixed eps of 1e-6, as the decoder's.
        let eps: Float = 1e-6
        convIn = try Conv2d(encoder.scoped("conv_in"), inChannels: config.inChannels, outChannels: channels[0], kernel: 3)
        downBlocks = try channels.indices.map { level in
            try VAEDownBlock(encoder.scoped("down_blocks.\(level)"), inChannels: channels[max(level - 1, 0)],
                             outChannels: channels[level], resnets: config.layersPerBlock, groups: config.normGroups,
                             eps: eps, downsample: level != channels.count - 1)
        }
        let last = channels[channels.count - 1]
        midBlock = try VAEMidBlock(encoder.scoped("mid_block"), channels: last, groups: config.normGroups, eps: eps,
                                   attention: config.midBlockAddAttention)
        normOut = try GroupNorm(encoder.scoped("conv_norm_out"), groups: config.normGroups, channels: last, eps: eps)
        convOut = try Conv2d(encoder.scoped("conv_out"), inChannels: last, outChannels: 2 * config.latentChannels, kernel: 3)
        quantConv = !config.useQuantConv ? nil
            : try Conv2d(weights.scoped("quant_conv"), inChannels: 2 * config.latentChannels,
                         outChannels: 2 * config.latentChannels, kernel: 1)
    }

    /// The posterior of `pixels`.
    /// - Parameter pixels: `[B, inChannels, H, W]` in [-1, 1], `H` and `W` multiples of 8.
    /// - Returns: mean and log-variance, each `[B, latentChannels, H/8, W/8]`, the log-variance
    ///   clamped to [-30, 20] as diffusers does.
    /// - Throws: `PipelineError.cancelled` (checked between levels).
    /// - Parameter tiled: encode an image larger than `sample_size` in overlapping tiles, as
    ///   diffusers' `enable_tiling()` (`VAETiling`).
    public func posterior(_ pixels: Tensor, tiled: Bool = false, cancellation: CancellationToken? = nil) throws -> (mean: Tensor, logvar: Tensor) {
        precondition(pixels.rank == 4 && pixels.shape[1] == config.inChannels,
                     "VAE encoder input must be [B, \(config.inChannels), H, W], got \(pixels.shape)")
        let tiling = config.tiling.encoder
        let h = tiled && tiling.applies(height: pixels.shape[2], width: pixels.shape[3])
            ? try tiling.run(pixels) { try moments($0, cancellation: cancellation) }
            : try moments(pixels, cancellation: cancellation)
        let latent = config.latentChannels
        let (mean, logvar) = h.splitChannels(at: latent)
        return (mean, logvar.clamped(to: -30...20))
    }

    /// The posterior's mean and log-variance side by side, unclamped: `[B, 2L, h, w]`.
    private func moments(_ pixels: Tensor, cancellation: CancellationToken?) throws -> Tensor {
        try CancellationToken.guarding(cancellation) {
            var h = convIn(pixels)  // [B, C0, H, W]
            for block in downBlocks {
                try cancellation?.check()
                h = block(h)
            }
            h = midBlock(h)
            h = convOut(normOut(h, silu: true))  // [B, 2L, h, w]
            if let quantConv { h = quantConv(h) }
            return h
        }
    }

    /// Latents of `pixels` as diffusers' img2img makes them: a posterior sample
    /// `mean + exp(0.5 · logvar) · ε`, ε drawn from `generator` (before any noise the sampler draws),
    /// times the scaling factor.
    public func encode(_ pixels: Tensor, generator: inout TorchGenerator, tiled: Bool = false,
                       cancellation: CancellationToken? = nil) throws -> Tensor {
        let (mean, logvar) = try posterior(pixels, tiled: tiled, cancellation: cancellation)
        let epsilon = generator.randn(mean.shape)
        let scale = config.scalingFactor
        var sample = mean
        sample.data.withUnsafeMutableBufferPointer { out in
            logvar.data.withUnsafeBufferPointer { lv in
                epsilon.data.withUnsafeBufferPointer { e in
                    for i in out.indices {
                        // std = exp(0.5 * logvar), then mean + std * eps, each rounded to Float32 as torch does.
                        let std = Float(exp(Double(0.5 * lv[i])))
                        let spread = std * e[i]
                        out[i] = (out[i] + spread) * scale
                    }
                }
            }
        }
        return sample
    }
}

/// One level of the encoder (diffusers `DownEncoderBlock2D`): resnets, then a halving downsampler
/// except at the last level.
struct VAEDownBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let downsampler: PaddedDownsample2D?

    init(_ weights: Weights, inChannels: Int, outChannels: Int, resnets count: Int, groups: Int, eps: Float,
         downsample: Bool) throws {
        resnets = try (0..<count).map {
            try ResnetBlock2D(weights.scoped("resnets.\($0)"), inChannels: $0 == 0 ? inChannels : outChannels,
                              outChannels: outChannels, timeEmbeddingChannels: nil, groups: groups, eps: eps)
        }
        downsampler = !downsample ? nil : try PaddedDownsample2D(weights.scoped("downsamplers.0"), channels: outChannels)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        for resnet in resnets { h = resnet(h) }
        return downsampler?(h) ?? h  // [B, C, H/2, W/2] unless last
    }
}
