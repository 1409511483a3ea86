/// DeepCache (Ma et al., "DeepCache: Accelerating Diffusion Models for Free", CVPR 2024) as its
/// reference code's `DeepCacheSDHelper` with `cache_branch_id=0` (its SD1.5 default: `cache_layer_id`
/// 0, `cache_block_id` 0) and `skip_mode='uniform'`.
///
/// Branch 0 is the skip connection from `conv_in` to the last resnet of the last up level. A full
/// step runs the whole UNet and keeps that resnet's other input, the deep feature; the steps between
/// run only `conv_in`, that resnet with its transformer, and the output head, on the kept feature.
///
/// Which steps are full follows the helper exactly: for each UNet call it takes the first position
/// of the call's timestep in the scheduler's timesteps (`list(timesteps).index(t)`), and the call is
/// full when that position minus the first call's is a multiple of `interval`. So it counts
/// timesteps, not calls: PLMS's repeated second timestep (positions 0, 1, 1, 3, 4, …) gives two
/// cached calls at position 1, and image-to-image counts from the step it starts at. Guidance does
/// not change the count: the unconditional and conditional halves are one batched call, and the
/// kept feature holds the whole batch. One `DeepCache` serves one sampling loop (the helper's state
/// carries over between pipeline calls; here a hires fix's second pass starts afresh, with a full
/// step at its own size).
public struct DeepCache {
    /// Every how many timestep positions the whole UNet runs (2 or more to save anything).
    public let interval: Int
    /// The position of the first call's timestep (the helper's `start_timestep`).
    private var start: Int?
    private var deepFeature: Tensor?

    public init(interval: Int) {
        precondition(interval >= 1, "DeepCache needs an interval of at least 1, got \(interval)")
        self.interval = interval
    }

    /// Whether the call at `stepIndex` of `timesteps` runs the whole UNet; the first call fixes the
    /// start. Takes the first position of the step's timestep, as the helper does.
    public mutating func isFullStep(stepIndex: Int, of timesteps: [Float]) -> Bool {
        let position = timesteps.firstIndex(of: timesteps[stepIndex]) ?? stepIndex
        let start = self.start ?? position
        self.start = start
        return (position - start) % interval == 0
    }

    /// One UNet evaluation at `timesteps[stepIndex]`: the whole UNet on full steps (keeping the deep
    /// feature), the shallow part on the others.
    /// - Parameters:
    ///   - residuals: a ControlNet's residuals; on a cached step only the one for `conv_in`'s output
    ///     is used, as the helper leaves diffusers adding them to the skip connections it did not cache.
    /// - Throws: `PipelineError.cancelled`.
    public mutating func evaluate(_ unet: UNet2DConditionModel, _ latents: Tensor, stepIndex: Int, timesteps: [Float],
                                  context: Tensor, residuals: UNetResiduals?, cancellation: CancellationToken?) throws -> Tensor {
        let timestep = timesteps[stepIndex]
        let check: () throws -> Void = { try cancellation?.check() }
        if !isFullStep(stepIndex: stepIndex, of: timesteps), let deepFeature {
            return try CancellationToken.guarding(cancellation) {
                try unet.shallowForward(latents, timestep: timestep, context: context, deepFeature: deepFeature,
                                        convInResidual: residuals?.down.first, checkpoint: check)
            }
        }
        let (output, feature) = try CancellationToken.guarding(cancellation) {
            try unet.forward(latents, timestep: timestep, context: context, residuals: residuals, checkpoint: check)
        }
        deepFeature = feature
        return output
    }
}

extension UNet2DConditionModel {
    /// A DeepCache step between full ones: `conv_in`, then the last up level's last resnet and
    /// transformer on `deepFeature` (kept from the last full step) and `conv_in`'s output, then the
    /// output head. Everything deeper is skipped.
    /// - Parameters:
    ///   - deepFeature: the second result of a full `forward` on a batch of the same shape.
    ///   - convInResidual: added to `conv_in`'s output, as a ControlNet's first residual is.
    /// - Returns: `[B, outChannels, h, w]`.
    func shallowForward(_ latents: Tensor, timestep: Float, context: Tensor, deepFeature: Tensor, convInResidual: Tensor?,
                        checkpoint: () throws -> Void) rethrows -> Tensor {
        let timeEmbedding = timeEmbedding(for: latents, timestep: timestep, context: context)
        var skip = convIn(latents)  // [B, C0, h, w]
        precondition(deepFeature.shape[0] == skip.shape[0] && Array(deepFeature.shape[2...]) == Array(skip.shape[2...]),
                     "the deep feature \(deepFeature.shape) was kept for another batch or size than \(skip.shape)")
        if let convInResidual {
            precondition(convInResidual.shape == skip.shape, "the conv_in residual is \(convInResidual.shape), conv_in's output \(skip.shape)")
            skip = skip + convInResidual
        }
        try checkpoint()
        return shallowTail(deepFeature, convInOutput: skip, timeEmbedding: timeEmbedding, context: context)
    }
}
