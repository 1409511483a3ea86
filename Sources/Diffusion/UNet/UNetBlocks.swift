/// The three kinds of level of SD1.x's UNet. Each diffusers pair (`CrossAttnDownBlock2D` /
/// `DownBlock2D`, `CrossAttnUpBlock2D` / `UpBlock2D`) is one type here whose `attentions` are empty
/// for the plain variant: the forward passes differ only in that.

/// One level of the contracting path: resnets (each followed by a spatial transformer in the
/// cross-attention variant) and, except at the last level, a downsampler.
struct UNetDownBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2D]
    let downsampler: Downsample2D?

    init(_ weights: Weights, config: UNetConfig, level: Int, inChannels: Int, crossAttention: Bool, isLast: Bool) throws {
        let channels = config.blockOutChannels[level]
        let heads = config.headsPerLevel[level]
        resnets = try (0..<config.resnetsPerLevel[level]).map { index in
            try ResnetBlock2D(weights.scoped("resnets.\(index)"), inChannels: index == 0 ? inChannels : channels,
                              outChannels: channels, timeEmbeddingChannels: config.timeEmbeddingChannels,
                              groups: config.normGroups, eps: config.normEps)
        }
        attentions = !crossAttention ? [] : try (0..<resnets.count).map { index in
            try Transformer2D(weights.scoped("attentions.\(index)"), channels: channels, heads: heads,
                              headDim: channels / heads, contextDim: config.contextDim, groups: config.normGroups,
                              layers: config.transformerLayersPerLevel[level])
        }
        downsampler = isLast ? nil : try Downsample2D(weights.scoped("downsamplers.0"), channels: channels)
    }

    /// How many skip connections the block leaves: one per resnet, and the downsampler's.
    var skipCount: Int { resnets.count + (downsampler == nil ? 0 : 1) }

    /// - Returns: the block's output and the skip connections it leaves for the up path, in order
    ///   (each resnet's or transformer's output, then the downsampler's).
    func callAsFunction(_ x: Tensor, timeEmbedding: Tensor, context: Tensor) -> (Tensor, skips: [Tensor]) {
        var h = x
        var skips: [Tensor] = []
        for (index, resnet) in resnets.enumerated() {
            h = resnet(h, timeEmbedding: timeEmbedding)
            if !attentions.isEmpty {
                h = attentions[index](h, context: context)
            }
            skips.append(h)
        }
        if let downsampler {
            h = downsampler(h)  // [B, C, ⌈H/2⌉, ⌈W/2⌉]
            skips.append(h)
        }
        return (h, skips)
    }
}

/// The bottom of the UNet (diffusers `UNetMidBlock2DCrossAttn`): resnet, transformer, resnet.
struct UNetMidBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2D]

    init(_ weights: Weights, config: UNetConfig) throws {
        let level = config.levelCount - 1
        let channels = config.blockOutChannels[level]
        let heads = config.headsPerLevel[level]
        resnets = try (0..<2).map {
            try ResnetBlock2D(weights.scoped("resnets.\($0)"), inChannels: channels, outChannels: channels,
                              timeEmbeddingChannels: config.timeEmbeddingChannels, groups: config.normGroups,
                              eps: config.normEps, outputScaleFactor: config.midBlockScaleFactor)
        }
        // diffusers builds the mid block's transformer with transformer_layers_per_block[-1].
        attentions = [try Transformer2D(weights.scoped("attentions.0"), channels: channels, heads: heads,
                                        headDim: channels / heads, contextDim: config.contextDim,
                                        groups: config.normGroups, layers: config.transformerLayersPerLevel[level])]
    }

    func callAsFunction(_ x: Tensor, timeEmbedding: Tensor, context: Tensor) -> Tensor {
        var h = resnets[0](x, timeEmbedding: timeEmbedding)
        h = attentions[0](h, context: context)
        return resnets[1](h, timeEmbedding: timeEmbedding)
    }
}

/// One level of the expanding path: resnets that each take the skip connection of the mirrored
/// down level concatenated to their input (each followed by a spatial transformer in the
/// cross-attention variant) and, except at the last level, an upsampler.
struct UNetUpBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2D]
    let upsampler: Upsample2D?

    /// - Parameters:
    ///   - level: index in the up path (0 = lowest resolution).
    ///   - inChannels: channels of the down level below the mirrored one (diffusers'
    ///     `input_channel`), which the last resnet's skip connection has.
    ///   - previousChannels: channels of the incoming feature map.
    init(_ weights: Weights, config: UNetConfig, level: Int, inChannels: Int, previousChannels: Int,
         crossAttention: Bool, isLast: Bool) throws {
        let mirrored = config.levelCount - 1 - level
        let channels = config.blockOutChannels[mirrored]
        let heads = config.headsPerLevel[mirrored]
        let count = config.resnetsPerLevel[mirrored] + 1
        resnets = try (0..<count).map { index in
            let skipChannels = index == count - 1 ? inChannels : channels
            let inputChannels = index == 0 ? previousChannels : channels
            return try ResnetBlock2D(weights.scoped("resnets.\(index)"), inChannels: inputChannels + skipChannels,
                                     outChannels: channels, timeEmbeddingChannels: config.timeEmbeddingChannels,
                                     groups: config.normGroups, eps: config.normEps)
        }
        attentions = !crossAttention ? [] : try (0..<count).map { index in
            try Transformer2D(weights.scoped("attentions.\(index)"), channels: channels, heads: heads,
                              headDim: channels / heads, contextDim: config.contextDim, groups: config.normGroups,
                              layers: config.transformerLayersPerLevel[mirrored])
        }
        upsampler = isLast ? nil : try Upsample2D(weights.scoped("upsamplers.0"), channels: channels)
    }

    /// - Parameters:
    ///   - skips: this level's skip connections in the order the down path made them; they are
    ///     consumed last first.
    ///   - upsampleTo: the size of the next level's skip connections; nil at the last level.
    func callAsFunction(_ x: Tensor, skips: [Tensor], timeEmbedding: Tensor, context: Tensor,
                        upsampleTo size: (height: Int, width: Int)?) -> Tensor {
        precondition(skips.count == resnets.count, "\(skips.count) skip connections for \(resnets.count) resnets")
        let h = layers(resnets.indices, x, consuming: skips.reversed(), timeEmbedding: timeEmbedding, context: context)
        return upsampler.map { $0(h, size: size) } ?? h
    }

    /// The resnets in `range` (each with its transformer), without the upsampler: part of the level,
    /// so that DeepCache can keep the feature between two resnets.
    /// - Parameter skips: the skip connection of each resnet in `range`, in the order they are
    ///   consumed (the reverse of the down path's).
    func layers(_ range: Range<Int>, _ x: Tensor, consuming skips: [Tensor], timeEmbedding: Tensor, context: Tensor) -> Tensor {
        precondition(skips.count == range.count, "\(skips.count) skip connections for resnets \(range)")
        var h = x
        for (index, skip) in zip(range, skips) {
            h = resnets[index](Tensor.concatChannels(h, skip), timeEmbedding: timeEmbedding)  // [B, C + Cskip, H, W] -> [B, C', H, W]
            if !attentions.isEmpty {
                h = attentions[index](h, context: context)
            }
        }
        return h
    }
}
