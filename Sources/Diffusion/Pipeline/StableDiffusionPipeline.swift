import Foundation

/// Text to image with a loaded SD1.x checkpoint, step for step as diffusers' `StableDiffusionPipeline`,
/// in stages that each have a public seam:
///
///     prepare:   <lora:…> tags -> LoRAs applied to the text encoder's and the UNet's weights;
///                A1111's AND parts and prompt editing -> tokens (A1111 weighting, 75-token chunks)
///                -> CLIP hidden states, once for the whole batch          (`prepare`, `conditioning`)
///     latents:   randn(seed) · init_noise_sigma, or an encoded image noised to a strength
///                                                                         (`initialLatents`);
///                inpainting adds the mask and the masked image's latents  (`inpaintingInputs`)
///     denoise:   for each timestep: UNet on [uncond, cond (one per AND part)], guidance,
///                scheduler step; an optional hook adds residuals inside the UNet  (`denoise`)
///     decode:    a `LatentDecoder` (the checkpoint's VAE by default) -> RGB8      (`render`)
///
/// The model parts load once, in `init`, and serve any number of requests. A pipeline runs one request
/// at a time; it is not meant to be shared between threads while generating.
public final class StableDiffusionPipeline: @unchecked Sendable {
    public let checkpoint: Checkpoint
    public let tokenizer: CLIPTokenizer
    /// The text encoder and the UNet, with the LoRAs of the last request applied.
    public internal(set) var textEncoder: CLIPTextModel
    public internal(set) var unet: UNet2DConditionModel
    /// The checkpoint's own VAE decoder.
    public let vae: AutoencoderDecoder
    /// The checkpoint's VAE encoder, for image-to-image; nil when the checkpoint has none (its
    /// weights convert on first use, so text-to-image never pays for it).
    public let vaeEncoder: AutoencoderEncoder?
    /// What turns pixels into latents (image-to-image, inpainting, the hires fix's second pass):
    /// `vaeEncoder` unless a VAE file with an encoder was chosen, which encodes as it decodes (as
    /// A1111 and a diffusers pipeline given `vae=` do).
    public var encoder: AutoencoderEncoder?
    /// What turns latents into pixels: `vae` unless another decoder was chosen.
    public var decoder: any LatentDecoder
    /// The file `decoder` was read from, for messages; nil for the checkpoint's own VAE.
    public var decoderFile: URL?
    /// What draws the live previews (TAESD, when one is found); nil: the latent linear projection.
    public var previewDecoder: (any LatentDecoder)?
    public let schedulerConfig: SchedulerConfig
    /// Tensors of the checkpoint that no model took (EMA copies, buffers and the VAE's encoder
    /// excluded), for a warning.
    public let unexpectedKeys: [String]
    /// Where `<lora:NAME>` tags look for `NAME.safetensors` (sub-folders too), in order.
    public var loraDirectories: [URL] = []
    /// Where textual-inversion embeddings are found (`NAME.safetensors`, sub-folders too): a prompt
    /// that has the word NAME gets its vectors, as in A1111.
    public var embeddingDirectories: [URL] = []
    /// How many times the text encoder has run (one chunk of 77 tokens each), for tests and the
    /// benchmark: a batch encodes its text once.
    public internal(set) var textEncoderEvaluations = 0
    var chunker: PromptChunker
    /// The embedding files the chunker's library was read from.
    private var loadedEmbeddings: [FileStamp]? = nil
    /// What the text encoder and the UNet are built with now: each LoRA file and its two
    /// multipliers, in prompt order.
    private var appliedLoRAs: [AppliedLoRAKey] = []

    /// Opens the checkpoint at `url` (single file, diffusers folder or HF cache entry) and builds the models.
    /// - Throws: `CheckpointError` (unreadable, refused or incomplete checkpoint, wrong shapes) or a config error.
    public convenience init(url: URL, options: LoadOptions = LoadOptions()) throws {
        try self.init(checkpoint: Checkpoint(url: url, options: options))
    }

    /// Builds the models over an open checkpoint. Nothing is converted yet in low-memory mode.
    public convenience init(checkpoint: Checkpoint) throws {
        do {
            try self.init(building: checkpoint)
        } catch let error as WeightsError {
            // A diffusers part without its config.json is read with SD1.5's sizes: when they do not
            // fit, the missing file is the cause to name, not the shape.
            if case let .shapeMismatch(key, _, _, _) = error, checkpoint.layout == .diffusersFolder,
               let part = CheckpointComponent.allCases.first(where: { key.hasPrefix($0.prefix) }), checkpoint.configData(for: part) == nil {
                let config = checkpoint.location.appendingPathComponent(part.rawValue).appendingPathComponent("config.json")
                throw CheckpointError.missingComponent(path: checkpoint.location.path, component: "\(part.rawValue)/config.json", lookedFor: [config.path])
            }
            throw error
        }
    }

    private init(building checkpoint: Checkpoint) throws {
        self.checkpoint = checkpoint
        tokenizer = try checkpoint.tokenizerDirectory.map { try CLIPTokenizer(directory: $0) } ?? CLIPTokenizer.bundled()
        chunker = PromptChunker(tokenizer: tokenizer)
        let textConfig = try checkpoint.configData(for: .textEncoder).map { try CLIPTextConfig(json: $0) } ?? CLIPTextConfig()
        var unetConfig = try checkpoint.configData(for: .unet).map { try UNetConfig(json: $0) } ?? UNetConfig()
        // A single file has no config: an inpainting UNet shows itself by conv_in's input channels.
        if checkpoint.configData(for: .unet) == nil, let convIn = checkpoint.shape(of: "unet.conv_in.weight"), convIn.count == 4 {
            unetConfig.inChannels = convIn[1]
        }
        let vaeConfig = try checkpoint.configData(for: .vae).map { try VAEConfig(json: $0) } ?? VAEConfig()
        // Every id the tokenizer makes needs a row of the token table.
        guard tokenizer.vocabularySize <= textConfig.vocabSize else {
            throw ModelConfigError.invalid(model: CLIPTextConfig.modelName, setting: "vocab_size", value: "\(textConfig.vocabSize)",
                                           reason: "the tokenizer has \(tokenizer.vocabularySize) tokens, so its last ids would have no row in the token table")
        }
        textEncoder = try CLIPTextModel(config: textConfig, weights: checkpoint.weights(for: .textEncoder))
        unet = try UNet2DConditionModel(config: unetConfig, weights: checkpoint.weights(for: .unet))
        vae = try AutoencoderDecoder(config: vaeConfig, weights: checkpoint.weights(for: .vae))
        // Pruned checkpoints may leave the encoder out: image-to-image then says so when asked for.
        let vaeWeights = checkpoint.weights(for: .vae)
        vaeEncoder = vaeWeights.contains("encoder.conv_in.weight") ? try AutoencoderEncoder(config: vaeConfig, weights: vaeWeights) : nil
        decoder = vae
        encoder = vaeEncoder
        schedulerConfig = try checkpoint.schedulerConfigData.map { try SchedulerConfig.decoder.decode(SchedulerConfig.self, from: $0) } ?? .sd15
        try schedulerConfig.validate()
        unexpectedKeys = checkpoint.unexpectedKeys()
    }

    // MARK: - The whole request

    /// Generates `request.batchCount` images with seeds `seed`, `seed + 1`, …: `prepare` once, then
    /// `render` per seed.
    ///
    /// - Parameters:
    ///   - progress: called after every step of every image.
    ///   - previewEvery: when set, progress carries a `LatentPreview` every that many steps (and at the last).
    ///   - cancellation: checked before every step, between the UNet's blocks and between the VAE
    ///     decoder's levels; a cancel throws `PipelineError.cancelled`
    ///     within one step and leaves the pipeline ready for the next request.
    /// - Returns: one result per image, in seed order.
    /// - Throws: `PipelineError.invalidRequest` (checked before any work), `.cancelled`, or a prompt error.
    public func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Void = { _ in },
                         previewEvery: Int? = nil, cancellation: CancellationToken? = nil) throws -> [GenerationResult] {
        let prepared = try prepare(request, cancellation: cancellation)
        return try (0..<request.batchCount).map { index in
            try render(prepared, index: index, progress: progress, previewEvery: previewEvery, cancellation: cancellation)
        }
    }

    /// The LoRA tags the text encoder and the UNet are built with now, for messages.
    var appliedLoRANames: [String] { appliedLoRAs.map(\.lora.name) }

    /// Stage 1: checks the request, applies its LoRAs, reads the embeddings and encodes every text
    /// the sampling will need. Everything that can be wrong with a request fails here, before any
    /// UNet step.
    /// - Throws: `PipelineError.invalidRequest`, `.cancelled`, `LoRAError`, a prompt error, or
    ///   `UpscalerError` for a hires upscaler file that is not one.
    public func prepare(_ request: GenerationRequest, cancellation: CancellationToken? = nil) throws -> PreparedRequest {
        try request.validate(textEncoderLayers: textEncoder.config.layerCount)
        try cancellation?.check()
        if let tag = ExtraNetworks.tags(in: request.negativePrompt).first { throw LoRAError.inNegativePrompt(tag: tag) }
        let loras = try useLoRAs(try ExtraNetworks.parse(request.prompt).loras)
        useEmbeddings()
        let conditioning = try conditioning(for: request)
        for context in conditioning.contexts { try finite(context, .textEncoder) }
        var prepared = PreparedRequest(request: request, conditioning: conditioning, loras: loras)
        if let hires = request.hires, conditioning.contexts.count > 1 {
            var second = request
            second.steps = hires.steps == 0 ? request.steps : hires.steps
            prepared.hiresConditioning = try self.conditioning(for: second)
            for context in prepared.hiresConditioning?.contexts ?? [] { try finite(context, .textEncoder) }
        }
        if let path = request.hires?.upscalerModel {
            prepared.hiresNetwork = try Upscaler.load(URL(fileURLWithPath: path))
        }
        return prepared
    }

    /// Stages 2–4 for image `index` of a prepared batch (seed `request.seed + index`): initial
    /// latents, the sampler loop, the decoder.
    /// - Throws: `PipelineError.cancelled`.
    public func render(_ prepared: PreparedRequest, index: Int, progress: (GenerationProgress) -> Void = { _ in },
                       previewEvery: Int? = nil, cancellation: CancellationToken? = nil) throws -> GenerationResult {
        try BLAS.withPrecision(prepared.request.precision) {
            try renderImage(prepared, index: index, progress: progress, previewEvery: previewEvery, cancellation: cancellation)
        }
    }

    private func renderImage(_ prepared: PreparedRequest, index: Int, progress: (GenerationProgress) -> Void,
                             previewEvery: Int?, cancellation: CancellationToken?) throws -> GenerationResult {
        // The allocator keeps freed blocks for reuse; between images (finished or cancelled) a
        // low-memory session gives them back.
        defer { if checkpoint.memoryMode == .low { MemoryMode.returnFreedMemory() } }
        var single = prepared.request
        single.seed = prepared.request.seed + UInt64(index)
        single.batchCount = 1
        let start = Date()
        var generator = TorchGenerator(seed: single.seed)
        var scheduler = try single.sampler.makeScheduler(config: schedulerConfig(for: single), steps: single.steps, eta: single.eta)
        var latents: Tensor
        var firstStep = 0
        var inpainting: InpaintingInputs?
        if inpaints(single) {
            let inputs = try inpaintingInputs(for: single, scheduler: scheduler, generator: &generator, cancellation: cancellation)
            try finite(inputs.latents, .vaeEncoder)
            if let extra = inputs.extraInput { try finite(extra, .vaeEncoder) }
            (latents, firstStep, inpainting) = (inputs.latents, inputs.firstStep, inputs)
        } else if let initImage = single.initImage {
            guard let encoder else { throw PipelineError.invalidRequest("this checkpoint has no VAE encoder (vae.encoder.*), so it cannot start from an image") }
            // diffusers' order: the posterior sample, then the noise, then the sampler's own draws.
            let clean = try finite(encoder.encode(initImage.signedTensor, generator: &generator, tiled: single.vaeTiling, cancellation: cancellation),
                                   .vaeEncoder)
            (latents, firstStep) = initialLatents(from: clean, strength: single.strength, steps: single.steps,
                                                  scheduler: scheduler, generator: &generator)
        } else {
            latents = initialLatents(for: single, scheduler: scheduler, generator: &generator)
        }
        let firstPass = scheduler.timesteps.count - firstStep
        let hiresSchedule = single.hires.map { $0.schedule(requestSteps: single.steps) }
        let total = firstPass + (hiresSchedule.map { $0.total - $0.firstStep } ?? 0)
        func report(_ step: Int, _ latents: Tensor) {
            let wantsPreview = previewEvery.map { step % max($0, 1) == 0 || step == total } ?? false
            var update = GenerationProgress(image: index, images: prepared.request.batchCount, step: step, total: total,
                                            elapsed: Date().timeIntervalSince(start),
                                            preview: wantsPreview ? preview(of: latents, step: step, total: total) : nil)
            update.previewIsDecoded = wantsPreview && previewDecoder != nil
            progress(update)
        }
        let blendScheduler = scheduler
        let blend = inpainting?.blend.map { blend in
            { (step: Int, latents: Tensor) in self.blended(latents, stepIndex: step, blend: blend, scheduler: blendScheduler) }
        }
        var denoised = try denoise(latents, conditioning: prepared.conditioning, guidanceScale: single.guidanceScale,
                                   scheduler: &scheduler, generator: &generator, firstStep: firstStep,
                                   extraInput: inpainting?.extraInput, deepCache: single.deepCache, afterStep: blend,
                                   cancellation: cancellation, stepDone: report)
        if let hires = single.hires {
            denoised = try hiresPass(from: denoised, hires: hires, prepared: prepared, request: single, cancellation: cancellation) {
                report(firstPass + $0, $1)
            }
        }
        try cancellation?.check()
        // Fast mode keeps an fp16 file's UNet weights in the file's mapping: while the decoder's large
        // maps are alive they wait in the page cache, clean, instead of counting in the resident set
        // (the next step faults them back in from memory).
        if checkpoint.memoryMode == .fast { checkpoint.releasePages(under: "unet.") }
        var image = PixelImage(decoded: try finite(decoder.decode(denoised, tiled: single.vaeTiling, cancellation: cancellation),
                                                   .decoder(own: decoderFile == nil)))
        if let overlay = inpainting?.overlay { image = image.pasting(original: overlay.original, outside: overlay.mask) }
        return GenerationResult(image: image, request: single, model: checkpoint.location, loras: prepared.loras,
                                embeddings: prepared.conditioning.embeddings, decoder: decoder.decoderName,
                                seconds: Date().timeIntervalSince(start))
    }

    /// The model's scheduler config with the request's overrides (its timestep spacing).
    public func schedulerConfig(for request: GenerationRequest) -> SchedulerConfig {
        var config = schedulerConfig
        if let spacing = request.spacing { config.timestepSpacing = spacing.rawValue }
        return config
    }

    // MARK: - LoRAs and embeddings

    /// Reads the embeddings in `embeddingDirectories` again when the files there changed.
    public func useEmbeddings() {
        let stamps = FileStamp.files(in: embeddingDirectories, extensions: ["safetensors", "pt", "bin"])
        guard stamps != loadedEmbeddings else { return }
        chunker.embeddings = EmbeddingLibrary(directories: embeddingDirectories, tokenizer: tokenizer,
                                              width: textEncoder.config.hiddenSize)
        loadedEmbeddings = stamps
    }

    /// Rebuilds the text encoder and the UNet over the checkpoint seen through `loras` (nothing to do
    /// when they are the ones applied now). Building is cheap: weights convert on first use, the
    /// LoRA deltas with them.
    /// - Returns: each LoRA once, with its file, in prompt order.
    /// - Throws: `LoRAError` naming the tag, the file or the layer; the models stay as they were.
    @discardableResult
    public func useLoRAs(_ loras: [LoRAReference]) throws -> [AppliedLoRA] {
        let files = try loras.map { try LoRALibrary.locate($0.name, in: loraDirectories) }
        let key = zip(files, loras).map { AppliedLoRAKey(file: FileStamp(url: $0), lora: $1) }
        var applied: [AppliedLoRA] = []
        for (file, lora) in zip(files, loras) where !applied.contains(where: { $0.name == lora.name }) {
            applied.append(AppliedLoRA(name: lora.name, file: file, textEncoderMultiplier: lora.textEncoderMultiplier,
                                       unetMultiplier: lora.unetMultiplier))
        }
        guard key != appliedLoRAs else { return applied }
        var source: TensorSource = checkpoint
        if !loras.isEmpty {
            source = try LoRAPatchedSource(base: checkpoint, loras: try zip(files, loras).map { url, lora in
                (try LoRAFile(url: url), lora.textEncoderMultiplier, lora.unetMultiplier)
            })
        }
        func weights(_ component: CheckpointComponent) -> Weights {
            Weights(source: source, prefix: component.modelPrefix, keepConverted: checkpoint.keepsConverted(component), usage: checkpoint.usage)
        }
        let newTextEncoder = try CLIPTextModel(config: textEncoder.config, weights: weights(.textEncoder))
        let newUNet = try UNet2DConditionModel(config: unet.config, weights: weights(.unet))
        textEncoder = newTextEncoder
        unet = newUNet
        appliedLoRAs = key
        return applied
    }
}

/// A file as a cache key: its path, size and modification time, so an edited file is read again.
public struct FileStamp: Hashable, Sendable {
    let path: String
    let size: Int
    let modified: Double

    /// The stamps of a weights file, or of every file in a folder of them (a diffusers `vae/`): what
    /// a loaded decoder was read from, to be read again when it changes.
    public static func of(_ url: URL) -> [FileStamp] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), isFolder.boolValue else { return [FileStamp(url: url)] }
        return files(in: [url], extensions: ["safetensors", "bin", "pt", "pth", "ckpt", "json"])
    }

    init(url: URL) {
        let values = try? url.resourceValues(forKeys: [.fileSizeKey, .contentModificationDateKey])
        path = url.path
        size = values?.fileSize ?? -1
        modified = values?.contentModificationDate?.timeIntervalSince1970 ?? 0
    }

    /// The files under `directories` (sub-folders too) with one of `extensions`, sorted by path.
    static func files(in directories: [URL], extensions: Set<String>) -> [FileStamp] {
        var stamps: [FileStamp] = []
        for directory in directories {
            let walker = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.fileSizeKey, .contentModificationDateKey])
            for url in (walker?.allObjects as? [URL]) ?? [] where extensions.contains(url.pathExtension.lowercased()) {
                stamps.append(FileStamp(url: url))
            }
        }
        return stamps.sorted { $0.path < $1.path }
    }
}

/// One applied LoRA as the models were built with it.
private struct AppliedLoRAKey: Equatable {
    let file: FileStamp
    let lora: LoRAReference
}
