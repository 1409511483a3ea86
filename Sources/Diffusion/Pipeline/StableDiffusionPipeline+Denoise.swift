import Foundation

/// Called before each UNet evaluation with the step index, the timestep, the model input and its
/// context; returns residuals to add inside the UNet (a ControlNet), or nil.
public typealias UNetResidualsHook = (_ stepIndex: Int, _ timestep: Float, _ input: Tensor, _ context: Tensor) throws -> UNetResiduals?

extension StableDiffusionPipeline {
    /// Stage 2: the latents sampling starts from, `[1, 4, h/8, w/8]`: standard normal noise from the
    /// request's generator times `initNoiseSigma`, as diffusers' `prepare_latents`.
    public func initialLatents(for request: GenerationRequest, scheduler: any Scheduler,
                               generator: inout TorchGenerator) -> Tensor {
        let shape = [1, latentChannels, request.height / 8, request.width / 8]
        return generator.randn(shape) * scheduler.initNoiseSigma
    }

    /// Stage 2 for image-to-image: clean latents noised to the level where sampling starts for
    /// `strength` (`Scheduler.firstStepIndex`), drawing the noise from `generator` after whatever the
    /// encoder drew, in diffusers' order.
    /// - Returns: the noised latents and the step index to start `denoise` at.
    public func initialLatents(from clean: Tensor, strength: Double, steps: Int, scheduler: any Scheduler,
                               generator: inout TorchGenerator) -> (latents: Tensor, firstStep: Int) {
        let first = scheduler.firstStepIndex(strength: strength, steps: steps)
        guard first < scheduler.timesteps.count else { return (clean, first) }
        let noise = generator.randn(clean.shape)
        return (scheduler.addNoise(to: clean, noise: noise, stepIndex: first), first)
    }

    /// The latent channels the sampler works in: the UNet's output (its input has more for
    /// inpainting checkpoints, where the mask and the masked image's latents are concatenated).
    public var latentChannels: Int { unet.config.outChannels }

    /// Stage 3: the sampler loop from `firstStep` to the end of the scheduler's timesteps.
    ///
    /// With guidance the UNet runs once per step on [negative, part 1, …, part k] and the outputs
    /// combine as A1111's `combine_denoised`: `uncond + Σᵢ (condᵢ − uncond) · weightᵢ · scale`, which
    /// for one part of weight 1 is diffusers' `uncond + (cond − uncond) · scale`.
    /// - Parameters:
    ///   - extraInput: channels concatenated to each model input (an inpainting UNet's mask and
    ///     masked-image latents), or nil.
    ///   - residuals: a hook adding residuals inside the UNet, or nil.
    ///   - deepCache: DeepCache's interval (`DeepCache`), or nil for the whole UNet at every step.
    ///   - contextOffset: subtracted from the step index to pick the prompt schedule's context
    ///     (a second pass counts its own steps).
    ///   - afterStep: given the step index and the scheduler's new latents, returns the latents to
    ///     go on with (inpainting's latent blend), or nil.
    ///   - stepDone: called after each step with the 1-based step count and the new latents.
    /// - Throws: `PipelineError.cancelled` (checked before every step and between UNet blocks).
    public func denoise(_ latents: Tensor, conditioning: TextConditioning, guidanceScale: Float,
                        scheduler: inout any Scheduler, generator: inout TorchGenerator, firstStep: Int = 0,
                        extraInput: Tensor? = nil, residuals: UNetResidualsHook? = nil, deepCache interval: Int? = nil,
                        contextOffset: Int = 0, afterStep: ((Int, Tensor) -> Tensor)? = nil, cancellation: CancellationToken?, stepDone: (Int, Tensor) -> Void = { _, _ in }) throws -> Tensor {
        var latents = latents
        let timesteps = scheduler.timesteps
        var deepCache = interval.map(DeepCache.init(interval:))
        for i in timesteps.indices.dropFirst(firstStep) {
            let t = timesteps[i]
            try cancellation?.check()
            var input = scheduler.scaleModelInput(latents, stepIndex: i)
            if let extraInput { input = Tensor.concatChannels(input, extraInput) }
            let context = conditioning.context(forEvaluation: i - contextOffset)
            let batch = conditioning.guidance ? 1 + conditioning.weights.count : 1
            let batched = batch == 1 ? input : Tensor.concatBatch(Array(repeating: input, count: batch))
            let extra = try residuals?(i, t, batched, context)
            let out = try deepCache?.evaluate(unet, batched, stepIndex: i, timesteps: timesteps, context: context,
                                              residuals: extra, cancellation: cancellation)
                ?? unet(batched, timestep: t, context: context, residuals: extra, cancellation: cancellation)
            let step = i + 1 - firstStep, steps = timesteps.count - firstStep
            try finite(out, .unet(step: step, of: steps))
            var noise = out
            if conditioning.guidance {
                let uncond = out.slice(batch: 0)
                noise = uncond
                for (k, weight) in conditioning.weights.enumerated() {
                    noise = noise + (out.slice(batch: k + 1) - uncond) * Float(weight * Double(guidanceScale))
                }
            }
            latents = try finite(scheduler.step(modelOutput: noise, stepIndex: i, sample: latents, generator: &generator),
                                 .sampler(step: step, of: steps))
            if let afterStep { latents = afterStep(i, latents) }
            stepDone(step, latents)
        }
        return latents
    }
}

extension StableDiffusionPipeline {
    /// A1111's hires fix second pass (`sample_hr_pass`) over the first pass's `latents`: resized in
    /// latent space by the upscaler's `F.interpolate` mode, or decoded by the checkpoint's VAE,
    /// enlarged by the upscaler network if there is one, resized with Lanczos and encoded again; then img2img at the new size on A1111's schedule
    /// (`HiresFix.schedule`) with a fresh generator from the request's seed (the encoder's posterior,
    /// then the noise, then the sampler's draws).
    /// - Throws: `PipelineError.invalidRequest` for a pixel upscaler on a checkpoint without a VAE
    ///   encoder; `.cancelled`.
    public func hiresPass(from latents: Tensor, hires: HiresFix, prepared: PreparedRequest, request: GenerationRequest,
                          cancellation: CancellationToken?, stepDone: (Int, Tensor) -> Void = { _, _ in }) throws -> Tensor {
        let (total, firstStep) = hires.schedule(requestSteps: request.steps)
        var scheduler = try request.sampler.makeScheduler(config: schedulerConfig(for: request), steps: total, eta: request.eta)
        var generator = TorchGenerator(seed: request.seed)
        let clean: Tensor
        if let mode = hires.upscaler.latentMode, prepared.hiresNetwork == nil {
            clean = latents.interpolated(height: hires.height / 8, width: hires.width / 8, mode: mode)
        } else {
            guard let encoder else {
                throw PipelineError.invalidRequest("this checkpoint has no VAE encoder (vae.encoder.*): use a latent hires upscaler")
            }
            var image = PixelImage(decoded: try finite(vae.decode(latents, tiled: request.vaeTiling, cancellation: cancellation), .decoder(own: true)))
            if let network = prepared.hiresNetwork {
                image = try network.upscale(image, toCover: (hires.width, hires.height), cancellation: cancellation)
            }
            let resized = image.resized(width: hires.width, height: hires.height)
            clean = try finite(encoder.encode(resized.signedTensor, generator: &generator, tiled: request.vaeTiling, cancellation: cancellation),
                               .vaeEncoder)
        }
        let noise = generator.randn(clean.shape)
        let start = scheduler.addNoise(to: clean, noise: noise, stepIndex: firstStep)
        // An inpainting UNet takes a mask and a masked image beside the latents: for this pass, as for
        // text to image, a full mask over a black image (A1111's img2img_image_conditioning without
        // a mask), its posterior drawn after the noise as the first pass draws it.
        var extraInput: Tensor?
        if isInpaintingModel {
            guard let encoder else { throw PipelineError.invalidRequest("this inpainting checkpoint has no VAE encoder (vae.encoder.*)") }
            let mask = InpaintMask.full(width: hires.width, height: hires.height)
            let black = Tensor(shape: [1, 3, hires.height, hires.width])
            let masked = try finite(encoder.encode(black, generator: &generator, tiled: request.vaeTiling, cancellation: cancellation),
                                    .vaeEncoder)
            extraInput = Tensor.concatChannels(mask.latentMask(), masked)
        }
        return try denoise(start, conditioning: prepared.hiresConditioning ?? prepared.conditioning, guidanceScale: request.guidanceScale,
                           scheduler: &scheduler, generator: &generator, firstStep: firstStep, extraInput: extraInput, deepCache: request.deepCache,
                           contextOffset: prepared.hiresConditioning == nil ? 0 : firstStep,
                           cancellation: cancellation, stepDone: stepDone)
    }
}
