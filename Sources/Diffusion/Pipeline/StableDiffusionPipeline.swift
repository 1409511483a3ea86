import Foundation

/// The UNet's text context for each model evaluation of one request.
public struct TextConditioning {
    /// One context per distinct set of texts: with guidance `[1 + k, 77·n, C]`, the negative prompt
    /// and then the k parts of the prompt (k = 1 unless it uses `AND`); without, `[1, 77·n, C]`.
    public let contexts: [Tensor]
    /// For evaluation `i`, the index into `contexts`.
    let contextIndex: [Int]
    /// Each prompt part's guidance weight (`PromptComposition`); `[1]` for a plain prompt.
    public let weights: [Double]
    /// Whether the UNet also runs on the negative prompt: guidance above 1, or a composed prompt.
    public let guidance: Bool

    /// The context of model evaluation `i` (0-based); past the schedule's end, the last one.
    public func context(forEvaluation i: Int) -> Tensor {
        contexts[contextIndex[min(i, contextIndex.count - 1)]]
    }
}

/// One finished image and everything that made it.
public struct GenerationResult: Sendable {
    public let image: PixelImage
    /// The request for this one image: its own seed, `batchCount` 1. Running it again gives the same pixels.
    public let request: GenerationRequest
    /// The checkpoint it came from (file or folder).
    public let model: URL
}

/// Text to image with a loaded SD1.x checkpoint, step for step as diffusers' `StableDiffusionPipeline`:
///
///     text -> <lora:…> tags (applied to the text encoder's and the UNet's weights), A1111's AND
///          parts and prompt editing (the texts of each step) -> tokens (A1111 weighting, 75-token
///          chunks) -> CLIP hidden states
///          -> latents = randn(seed) * init_noise_sigma
///          -> for each timestep: UNet on [uncond, cond (one per AND part)], guidance, scheduler step
///          -> VAE decode -> RGB8
///
/// The model parts load once, in `init`, and serve any number of requests. A pipeline runs one request
/// at a time; it is not meant to be shared between threads while generating.
public final class StableDiffusionPipeline: @unchecked Sendable {
    public let checkpoint: Checkpoint
    public let tokenizer: CLIPTokenizer
    /// The text encoder and the UNet, with the LoRAs of the last request applied.
    public private(set) var textEncoder: CLIPTextModel
    public private(set) var unet: UNet2DConditionModel
    public let vae: AutoencoderDecoder
    public let schedulerConfig: SchedulerConfig
    /// Tensors of the checkpoint that no model took (EMA copies and buffers excluded), for a warning.
    public let unexpectedKeys: [String]
    /// Where `<lora:NAME>` tags look for `NAME.safetensors` (sub-folders too), in order.
    public var loraDirectories: [URL] = []
    /// Where textual-inversion embeddings are found (`NAME.safetensors`, sub-folders too): a prompt
    /// that has the word NAME gets its vectors, as in A1111.
    public var embeddingDirectories: [URL] = []
    private var chunker: PromptChunker
    /// The embedding files the chunker's library was read from (path, size, date).
    private var loadedEmbeddings: [String]? = nil
    /// What the text encoder and the UNet are built with now: each LoRA file (path, size, date) and
    /// its two multipliers, in prompt order.
    private var appliedLoRAs: [String] = []

    /// Opens the checkpoint at `url` (single file, diffusers folder or HF cache entry) and builds the models.
    /// - Throws: `CheckpointError` (unreadable, refused or incomplete checkpoint, wrong shapes) or a config error.
    public convenience init(url: URL, options: LoadOptions = LoadOptions()) throws {
        try self.init(checkpoint: Checkpoint(url: url, options: options))
    }

    /// Builds the models over an open checkpoint. Nothing is converted yet in low-memory mode.
    public init(checkpoint: Checkpoint) throws {
        MemoryMode.keepFreedBlocksForReuse()
        self.checkpoint = checkpoint
        tokenizer = try checkpoint.tokenizerDirectory.map { try CLIPTokenizer(directory: $0) } ?? CLIPTokenizer.bundled()
        chunker = PromptChunker(tokenizer: tokenizer)
        let textConfig = try checkpoint.configData(for: .textEncoder).map { try CLIPTextConfig(json: $0) } ?? CLIPTextConfig()
        let unetConfig = try checkpoint.configData(for: .unet).map { try UNetConfig(json: $0) } ?? UNetConfig()
        let vaeConfig = try checkpoint.configData(for: .vae).map { try VAEConfig(json: $0) } ?? VAEConfig()
        textEncoder = try CLIPTextModel(config: textConfig, weights: checkpoint.weights(for: .textEncoder))
        unet = try UNet2DConditionModel(config: unetConfig, weights: checkpoint.weights(for: .unet))
        vae = try AutoencoderDecoder(config: vaeConfig, weights: checkpoint.weights(for: .vae))
        schedulerConfig = try checkpoint.schedulerConfigData.map { try SchedulerConfig.decoder.decode(SchedulerConfig.self, from: $0) } ?? .sd15
        unexpectedKeys = checkpoint.unexpectedKeys()
    }

    /// The chunks of `prompt` as the text encoder will see them, for the REPL's `tokens` command.
    public func chunks(of prompt: String) throws -> ChunkedPrompt {
        useEmbeddings()
        return try chunker.chunk(prompt)
    }

    /// Reads the embeddings in `embeddingDirectories` again when the files there changed.
    public func useEmbeddings() {
        var stamps: [String] = []
        for directory in embeddingDirectories {
            let walker = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.fileSizeKey, .contentModificationDateKey])
            for url in (walker?.allObjects as? [URL]) ?? [] where ["safetensors", "pt", "bin"].contains(url.pathExtension.lowercased()) {
                let values = try? url.resourceValues(forKeys: [.fileSizeKey, .contentModificationDateKey])
                stamps.append("\(url.path)|\(values?.fileSize ?? -1)|\(values?.contentModificationDate?.timeIntervalSince1970 ?? 0)")
            }
        }
        stamps.sort()
        guard stamps != loadedEmbeddings else { return }
        chunker.embeddings = EmbeddingLibrary(directories: embeddingDirectories, tokenizer: tokenizer,
                                              width: textEncoder.config.hiddenSize)
        loadedEmbeddings = stamps
    }

    /// Rebuilds the text encoder and the UNet over the checkpoint seen through `loras` (nothing to do
    /// when they are the ones applied now). Building is cheap: weights convert on first use, the
    /// LoRA deltas with them.
    /// - Throws: `LoRAError` naming the tag, the file or the layer; the models stay as they were.
    public func useLoRAs(_ loras: [LoRAReference]) throws {
        let files = try loras.map { try LoRALibrary.locate($0.name, in: loraDirectories) }
        let key = zip(files, loras).map { url, lora in
            let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
            let stamp = "\((attributes?[.size] as? Int) ?? -1)@\((attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
            return "\(url.path)|\(stamp)|\(lora.textEncoderMultiplier)|\(lora.unetMultiplier)"
        }
        guard key != appliedLoRAs else { return }
        var source: TensorSource = checkpoint
        if !loras.isEmpty {
            source = try LoRAPatchedSource(base: checkpoint, loras: try zip(files, loras).map { url, lora in
                (try LoRAFile(url: url), lora.textEncoderMultiplier, lora.unetMultiplier)
            })
        }
        func weights(_ component: CheckpointComponent) -> Weights {
            Weights(source: source, prefix: component.modelPrefix, keepConverted: checkpoint.memoryMode == .fast, usage: checkpoint.usage)
        }
        let newTextEncoder = try CLIPTextModel(config: textEncoder.config, weights: weights(.textEncoder))
        let newUNet = try UNet2DConditionModel(config: unet.config, weights: weights(.unet))
        textEncoder = newTextEncoder
        unet = newUNet
        appliedLoRAs = key
    }

    /// The text conditioning: `cond` for the prompt and, when guidance is on, `uncond` for the negative
    /// prompt, both `[1, 77·n, C]` with the same `n` (the shorter is padded with empty chunks, as A1111).
    public func encodeText(prompt: String, negativePrompt: String, clipSkip: Int, guidance: Bool) throws -> (cond: Tensor, uncond: Tensor?) {
        var cond = try chunker.chunk(prompt)
        let encode: (PromptChunk) -> Tensor = { self.textEncoder(tokens: $0.tokens, fixes: $0.fixes, clipSkip: clipSkip) }
        guard guidance else { return (PromptConditioning.encode(cond, chunks: encode), nil) }
        var uncond = try chunker.chunk(negativePrompt)
        (cond, uncond) = chunker.padToSameLength(cond, uncond)
        return (PromptConditioning.encode(cond, chunks: encode), PromptConditioning.encode(uncond, chunks: encode))
    }

    /// The UNet's context for every model evaluation of `request`: A1111's composition (`AND`,
    /// `:weight`, see `PromptComposition`) splits the prompt into parts, and its prompt editing and
    /// alternation (`PromptSchedule`) pick each part's text, and the negative prompt's, per evaluation.
    ///
    /// Each distinct set of texts is encoded once, all before sampling starts, so a prompt error
    /// surfaces before any work. The texts of one context are padded to the same number of chunks
    /// with empty chunks. A plain prompt gives one context, the same as `encodeText`.
    /// - Throws: a prompt error (`PromptError`).
    public func conditioning(for request: GenerationRequest) throws -> TextConditioning {
        // LoRA tags are not text (`useLoRAs` applies them); A1111 removes them before anything else.
        let parts = PromptComposition.parts(of: try ExtraNetworks.parse(request.prompt).prompt)
        let guidance = request.guidanceScale > 1 || !PromptComposition.isPlain(parts)
        let positives = parts.map { PromptSchedule($0.text, steps: request.steps) }
        let negative = PromptSchedule(request.negativePrompt, steps: request.steps)
        let encode: (PromptChunk) -> Tensor = { self.textEncoder(tokens: $0.tokens, fixes: $0.fixes, clipSkip: request.clipSkip) }
        var contexts: [Tensor] = []
        var known: [[String]: Int] = [:]
        var forEvaluation: [Int] = []
        // A sampler makes at most steps + 1 evaluations (PNDM's first timestep runs twice).
        for evaluation in 0...request.steps {
            // diffusers' batch order: [negative, positive]; the composed parts follow in order.
            let schedules = guidance ? [negative] + positives : positives
            let texts = schedules.map { $0.entries[$0.entryIndex(forEvaluation: evaluation)].prompt }
            if let index = known[texts] {
                forEvaluation.append(index)
                continue
            }
            let chunked = chunker.padToSameLength(try texts.map { try chunker.chunk($0) })
            contexts.append(Tensor.concatBatch(chunked.map { PromptConditioning.encode($0, chunks: encode) }))
            known[texts] = contexts.count - 1
            forEvaluation.append(contexts.count - 1)
        }
        return TextConditioning(contexts: contexts, contextIndex: forEvaluation, weights: parts.map(\.weight), guidance: guidance)
    }

    /// Generates `request.batchCount` images with seeds `seed`, `seed + 1`, …
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
        try request.validate(textEncoderLayers: textEncoder.config.layerCount)
        // The allocator keeps freed blocks for reuse; between generations (finished or cancelled)
        // a low-memory session gives them back.
        defer { if checkpoint.memoryMode == .low { MemoryMode.returnFreedMemory() } }
        try cancellation?.check()
        if let tag = ExtraNetworks.tags(in: request.negativePrompt).first { throw LoRAError.inNegativePrompt(tag: tag) }
        try useLoRAs(try ExtraNetworks.parse(request.prompt).loras)
        useEmbeddings()
        let conditioning = try conditioning(for: request)
        var results: [GenerationResult] = []
        for index in 0..<request.batchCount {
            var single = request
            single.seed = request.seed + UInt64(index)
            single.batchCount = 1
            let image = try denoiseAndDecode(single, conditioning: conditioning, index: index,
                                             of: request.batchCount, progress: progress, previewEvery: previewEvery,
                                             cancellation: cancellation)
            results.append(GenerationResult(image: image, request: single, model: checkpoint.location))
        }
        return results
    }

    private func denoiseAndDecode(_ request: GenerationRequest, conditioning: TextConditioning,
                                  index: Int, of count: Int,
                                  progress: (GenerationProgress) -> Void, previewEvery: Int?,
                                  cancellation: CancellationToken?) throws -> PixelImage {
        let start = Date()
        var generator = TorchGenerator(seed: request.seed)
        var scheduler = try request.sampler.makeScheduler(config: schedulerConfig, steps: request.steps)
        let latentShape = [1, unet.config.inChannels, request.height / 8, request.width / 8]
        var latents = generator.randn(latentShape) * scheduler.initNoiseSigma
        let timesteps = scheduler.timesteps
        for (i, t) in timesteps.enumerated() {
            try cancellation?.check()
            let input = scheduler.scaleModelInput(latents, stepIndex: i)
            let context = conditioning.context(forEvaluation: i)
            var noise: Tensor
            if conditioning.guidance {
                // One UNet run on [negative, part 1, …, part k]; A1111's combine_denoised:
                // uncond + Σᵢ (condᵢ − uncond) · (weightᵢ · scale), which for one part of weight 1 is
                // diffusers' uncond + (cond − uncond) · scale.
                let batch = 1 + conditioning.weights.count
                let out = try unet(Tensor.concatBatch(Array(repeating: input, count: batch)), timestep: t, context: context,
                                   cancellation: cancellation)
                let uncond = out.slice(batch: 0)
                noise = uncond
                for (k, weight) in conditioning.weights.enumerated() {
                    noise = noise + (out.slice(batch: k + 1) - uncond) * Float(weight * Double(request.guidanceScale))
                }
            } else {
                noise = try unet(input, timestep: t, context: context, cancellation: cancellation)
            }
            latents = scheduler.step(modelOutput: noise, stepIndex: i, sample: latents, generator: &generator)
            let step = i + 1
            let wantsPreview = previewEvery.map { step % max($0, 1) == 0 || step == timesteps.count } ?? false
            progress(GenerationProgress(image: index, images: count, step: step, total: timesteps.count,
                                        elapsed: Date().timeIntervalSince(start),
                                        preview: wantsPreview ? LatentPreview.image(from: latents) : nil))
        }
        try cancellation?.check()
        return PixelImage(decoded: try vae.decode(latents, cancellation: cancellation))
    }
}
