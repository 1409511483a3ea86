import Foundation

/// What inpainting adds to one image's sampling: its starting latents and, by UNet kind, the extra
/// input of a 9-channel UNet or the latent blend of a 4-channel one; and the overlay to paste after
/// decoding.
public struct InpaintingInputs {
    /// The latents sampling starts from and the step it starts at.
    public var latents: Tensor
    public var firstStep: Int
    /// A 9-channel UNet's extra input, `[1, 5, h, w]`: the latent mask, then the masked image's latents.
    public var extraInput: Tensor?
    /// A 4-channel UNet's blend after every step: the clean image latents, the initial noise and
    /// the latent mask.
    var blend: (imageLatents: Tensor, noise: Tensor, mask: Tensor)?
    /// The picture and the blurred mask to paste it back with, when the request asks for it.
    var overlay: (original: PixelImage, mask: InpaintMask)?
}

extension StableDiffusionPipeline {
    /// Whether this checkpoint's UNet is an inpainting one: it takes the mask and the masked image's
    /// latents beside the latents (9 channels for SD1.5).
    public var isInpaintingModel: Bool { unet.config.inChannels == 2 * latentChannels + 1 }

    /// Whether `request` runs as inpainting: it has a mask, or the checkpoint is an inpainting one.
    public func inpaints(_ request: GenerationRequest) -> Bool { request.mask != nil || isInpaintingModel }

    /// Stage 2 for inpainting, as diffusers' `StableDiffusionInpaintPipeline` (`prepare_latents`,
    /// then `prepare_mask_latents`), drawing from `generator` in its order: the image's posterior
    /// (skipped by a 9-channel UNet at strength 1), the noise, the masked image's posterior.
    ///
    /// The mask is blurred (`maskBlur`) and then binarised at 0.5; the masked image is
    /// `image · (mask < 0.5)`; the latent mask is the nearest resize to the latent size. Without an
    /// init image (an inpainting checkpoint used for text to image) the mask is full and the masked
    /// image black, as diffusers' with a white mask.
    /// - Throws: `PipelineError.invalidRequest` when the checkpoint has no VAE encoder or its UNet takes
    ///   neither 4 nor 9 channels; `.cancelled`.
    public func inpaintingInputs(for request: GenerationRequest, scheduler: any Scheduler, generator: inout TorchGenerator,
                                 cancellation: CancellationToken? = nil) throws -> InpaintingInputs {
        guard let encoder else {
            throw PipelineError.invalidRequest("this checkpoint has no VAE encoder (vae.encoder.*), so it cannot inpaint")
        }
        let nineChannel = isInpaintingModel
        guard nineChannel || unet.config.inChannels == latentChannels else {
            throw PipelineError.invalidRequest("this checkpoint's UNet takes \(unet.config.inChannels) input channels; inpainting needs \(latentChannels) or \(2 * latentChannels + 1)")
        }
        let width = request.width, height = request.height
        let strength = request.initImage == nil ? 1 : request.strength
        let fromNoise = strength == 1
        let mask = request.mask.map { $0.blurred(radius: request.maskBlur) } ?? .full(width: width, height: height)
        let pixels = request.initImage?.signedTensor ?? Tensor(shape: [1, 3, height, width])
        let imageLatents = nineChannel && fromNoise ? nil : try encoder.encode(pixels, generator: &generator, tiled: request.vaeTiling, cancellation: cancellation)
        let noise = generator.randn([1, latentChannels, height / 8, width / 8])
        var latents = noise * scheduler.initNoiseSigma
        var firstStep = 0
        if !fromNoise, let imageLatents {
            firstStep = scheduler.firstStepIndex(strength: strength, steps: request.steps)
            latents = firstStep < scheduler.timesteps.count
                ? scheduler.addNoise(to: imageLatents, noise: noise, stepIndex: firstStep) : imageLatents
        }
        let maskedLatents = try encoder.encode(mask.masking(pixels), generator: &generator, tiled: request.vaeTiling, cancellation: cancellation)
        let latentMask = mask.latentMask()
        var inputs = InpaintingInputs(latents: latents, firstStep: firstStep)
        if nineChannel {
            inputs.extraInput = Tensor.concatChannels(latentMask, maskedLatents)
        } else if let imageLatents {
            inputs.blend = (imageLatents, noise, latentMask)
        }
        if request.inpaintPaste, request.mask != nil, let original = request.initImage {
            inputs.overlay = (original, mask)
        }
        return inputs
    }

    /// diffusers' latent blending for a 4-channel UNet after step `stepIndex`: the image latents
    /// noised to the next timestep (clean after the last) where the mask keeps, the sampled latents
    /// where it repaints.
    func blended(_ latents: Tensor, stepIndex: Int, blend: (imageLatents: Tensor, noise: Tensor, mask: Tensor),
                 scheduler: any Scheduler) -> Tensor {
        let next = stepIndex + 1
        let proper = next < scheduler.timesteps.count
            ? scheduler.addNoise(to: blend.imageLatents, noise: blend.noise, stepIndex: next) : blend.imageLatents
        var out = latents
        let plane = blend.mask.count
        out.data.withUnsafeMutableBufferPointer { dst in
            proper.data.withUnsafeBufferPointer { keep in
                blend.mask.data.withUnsafeBufferPointer { m in
                    for i in 0..<dst.count {
                        let w = m[i % plane]
                        dst[i] = (1 - w) * keep[i] + w * dst[i]
                    }
                }
            }
        }
        return out
    }
}
