/// Stable Diffusion 1.x's noise predictor (diffusers `UNet2DConditionModel`).
///
/// Time embedding → `conv_in` → down levels (leaving skip connections) → mid block → up levels
/// (consuming them) → GroupNorm, SiLU, `conv_out`. Any latent size works, odd ones included: each
/// upsampler restores the size of the skip connection it meets next.
public struct UNet2DConditionModel: Sendable {
    public let config: UNetConfig
    let timeLinear1: Linear
    let timeLinear2: Linear
    let convIn: Conv2d
    let downBlocks: [UNetDownBlock]
    let midBlock: UNetMidBlock
    let upBlocks: [UNetUpBlock]
    let normOut: GroupNorm
    let convOut: Conv2d

    /// Builds the UNet over a checkpoint's weights, checking every tensor's presence and shape.
    /// - Parameters:
    ///   - config: the hyperparameters; SD1.5's by default.
    ///   - weights: the checkpoint scoped at the UNet (keys such as `conv_in.weight`,
    ///     `down_blocks.0.resnets.0.conv1.weight`), in diffusers module names.
    /// - Throws: `ModelConfigError` for a config that is not SD1.x or does not fit together;
    ///   `WeightsError.missingTensor` / `.shapeMismatch` naming the first tensor that is absent
    ///   or shaped differently from what the config implies.
    public init(config: UNetConfig = UNetConfig(), weights: Weights) throws {
        try config.validate()
        self.config = config
        let channels = config.blockOutChannels
        let first = channels[0], last = config.levelCount - 1

        timeLinear1 = try Linear(weights.scoped("time_embedding.linear_1"), inputs: first, outputs: config.timeEmbeddingChannels)
        timeLinear2 = try Linear(weights.scoped("time_embedding.linear_2"), inputs: config.timeEmbeddingChannels, outputs: config.timeEmbeddingChannels)
        convIn = try Conv2d(weights.scoped("conv_in"), inChannels: config.inChannels, outChannels: first, kernel: 3)

        downBlocks = try config.downBlockTypes.enumerated().map { level, type in
            try UNetDownBlock(weights.scoped("down_blocks.\(level)"), config: config, level: level,
                              inChannels: level == 0 ? first : channels[level - 1],
                              crossAttention: type == "CrossAttnDownBlock2D", isLast: level == last)
        }
        midBlock = try UNetMidBlock(weights.scoped("mid_block"), config: config)
        upBlocks = try config.upBlockTypes.enumerated().map { level, type in
            let mirrored = last - level
            return try UNetUpBlock(weights.scoped("up_blocks.\(level)"), config: config, level: level,
                                   inChannels: channels[max(mirrored - 1, 0)],
                                   previousChannels: channels[min(mirrored + 1, last)],
                                   crossAttention: type == "CrossAttnUpBlock2D", isLast: level == last)
        }
        normOut = try GroupNorm(weights.scoped("conv_norm_out"), groups: config.normGroups, channels: first, eps: config.normEps)
        convOut = try Conv2d(weights.scoped("conv_out"), inChannels: first, outChannels: config.outChannels, kernel: 3)
    }

    /// Predicts the noise in `latents` at `timestep`, conditioned on a text embedding.
    /// - Parameters:
    ///   - latents: `[B, inChannels, h, w]`, any `h, w ≥ 1` (an image of H×W pixels has `h = H/8`).
    ///   - timestep: the diffusion timestep, the same for the whole batch (0...999 for SD1.x).
    ///   - context: `[B, T, crossAttentionDim]`, the text encoder's hidden states (`T` is 77, or a
    ///     multiple of it for long prompts); classifier-free guidance stacks the unconditional and
    ///     conditional halves along `B` in both inputs.
    /// - Returns: `[B, outChannels, h, w]`.
    /// - Precondition: the shapes agree with the config (a programmer error otherwise).
    public func callAsFunction(_ latents: Tensor, timestep: Float, context: Tensor) -> Tensor {
        forward(latents, timestep: timestep, context: context, residuals: nil, checkpoint: {}).output
    }

    /// The same, checking `cancellation` between blocks, so a cancel takes effect within about a
    /// twelfth of a step rather than at its end (a 512×512 step takes many seconds on a CPU).
    /// - Throws: `PipelineError.cancelled`.
    public func callAsFunction(_ latents: Tensor, timestep: Float, context: Tensor, cancellation: CancellationToken?) throws -> Tensor {
        try CancellationToken.guarding(cancellation) {
            try forward(latents, timestep: timestep, context: context, residuals: nil, checkpoint: { try cancellation?.check() }).output
        }
    }

    /// The same, with `residuals` added to the skip connections and the mid block's output, as
    /// diffusers' `down_block_additional_residuals` / `mid_block_additional_residual` (what a
    /// ControlNet produces).
    /// - Precondition: `residuals.down` has `skipCount` tensors shaped like the skip connections and
    ///   `mid` is shaped like the mid block's output (a programmer error otherwise).
    /// - Throws: `PipelineError.cancelled`.
    public func callAsFunction(_ latents: Tensor, timestep: Float, context: Tensor, residuals: UNetResiduals?,
                               cancellation: CancellationToken?) throws -> Tensor {
        try CancellationToken.guarding(cancellation) {
            try forward(latents, timestep: timestep, context: context, residuals: residuals, checkpoint: { try cancellation?.check() }).output
        }
    }

    /// How many skip connections the down path leaves: `conv_in`'s output, then each resnet's and
    /// each downsampler's (12 for SD1.x). `UNetResiduals.down` has one tensor per skip.
    public var skipCount: Int {
        1 + downBlocks.reduce(0) { $0 + $1.skipCount }
    }

    /// The whole UNet.
    /// - Returns: the prediction, and the input of the last level's last resnet besides `conv_in`'s
    ///   output: the deep feature that DeepCache reuses (`shallowForward`).
    func forward(_ latents: Tensor, timestep: Float, context: Tensor, residuals: UNetResiduals?,
                 checkpoint: () throws -> Void) rethrows -> (output: Tensor, deepFeature: Tensor) {
        let timeEmbedding = timeEmbedding(for: latents, timestep: timestep, context: context)

        // down path, keeping every intermediate output for the skip connections
        var h = convIn(latents)  // [B, C0, h, w]
        var skips = [h]
        for block in downBlocks {
            try checkpoint()
            let (out, blockSkips) = block(h, timeEmbedding: timeEmbedding, context: context)
            h = out
            skips += blockSkips
        }

        if let residuals {
            precondition(residuals.down.count == skips.count,
                         "\(residuals.down.count) down-block residuals for a UNet with \(skips.count) skip connections")
            for (index, residual) in residuals.down.enumerated() {
                precondition(residual.shape == skips[index].shape,
                             "down-block residual \(index) is \(residual.shape), the skip connection \(skips[index].shape)")
                skips[index] = skips[index] + residual
            }
        }

        try checkpoint()
        h = midBlock(h, timeEmbedding: timeEmbedding, context: context)
        if let mid = residuals?.mid {
            precondition(mid.shape == h.shape, "the mid-block residual is \(mid.shape), the mid block's output \(h.shape)")
            h = h + mid
        }

        // up path: each level takes back as many skips as it has resnets
        for block in upBlocks.dropLast() {
            try checkpoint()
            let blockSkips = Array(skips.suffix(block.resnets.count))
            skips.removeLast(block.resnets.count)
            let next = skips.last.map { (height: $0.shape[2], width: $0.shape[3]) }
            h = block(h, skips: blockSkips, timeEmbedding: timeEmbedding, context: context, upsampleTo: next)
        }

        // the last level (no upsampler), all but its last resnet: that one takes conv_in's output,
        // the only skip left
        try checkpoint()
        let last = upBlocks[upBlocks.count - 1]
        precondition(skips.count == last.resnets.count && last.upsampler == nil, "the last up level must take the remaining skips")
        let deepFeature = last.layers(0..<last.resnets.count - 1, h, consuming: Array(skips.dropFirst().reversed()),
                                      timeEmbedding: timeEmbedding, context: context)
        let output = shallowTail(deepFeature, convInOutput: skips[0], timeEmbedding: timeEmbedding, context: context)
        return (output, deepFeature)
    }

    /// The time embedding of `timestep` for each batch element, after checking the inputs' shapes:
    /// sinusoidal features -> linear -> SiLU -> linear, `[B, 4·C0]`.
    func timeEmbedding(for latents: Tensor, timestep: Float, context: Tensor) -> Tensor {
        precondition(latents.rank == 4 && latents.shape[1] == config.inChannels, "UNet input must be [B, \(config.inChannels), h, w], got \(latents.shape)")
        precondition(context.rank == 3 && context.shape[0] == latents.shape[0] && context.shape[2] == config.contextDim,
                     "UNet context must be [\(latents.shape[0]), T, \(config.contextDim)], got \(context.shape)")
        let features = Tensor.timestepEmbedding(Array(repeating: timestep, count: latents.shape[0]), dim: config.blockOutChannels[0],
                                                flipSinToCos: config.flipSinToCos, downscaleFreqShift: config.freqShift)  // [B, C0]
        return timeLinear2(timeLinear1(features).silu())
    }

    /// The last level's last resnet (and its transformer) on the deep feature and `conv_in`'s output,
    /// then GroupNorm, SiLU, `conv_out`: what every step runs, cached or not.
    func shallowTail(_ deepFeature: Tensor, convInOutput: Tensor, timeEmbedding: Tensor, context: Tensor) -> Tensor {
        let last = upBlocks[upBlocks.count - 1]
        let index = last.resnets.count - 1
        let h = last.layers(index..<index + 1, deepFeature, consuming: [convInOutput], timeEmbedding: timeEmbedding, context: context)
        return convOut(normOut(h, silu: true))  // [B, outChannels, h, w]
    }
}

/// Extra features added inside the UNet (diffusers' `down_block_additional_residuals` and
/// `mid_block_additional_residual`): one tensor per skip connection, shaped like it, and one for
/// the mid block's output. A ControlNet computes them each step from a control image.
public struct UNetResiduals {
    public var down: [Tensor]
    public var mid: Tensor?

    public init(down: [Tensor], mid: Tensor?) {
        self.down = down
        self.mid = mid
    }
}
