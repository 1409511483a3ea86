import Diffusion
import Foundation
import HubLayout
import Imaging

/// Loads `StableDiffusionPipeline` for the session: the model is read once and kept until the model
/// path or the memory mode changes.
public struct PipelineLoader: GeneratorLoader {
    public init() {}

    public func load(model: ModelLocation, memory: MemoryMode) throws -> ImageGenerator {
        let url = URL(fileURLWithPath: model.path)
        let pipeline = try StableDiffusionPipeline(url: url, options: LoadOptions(memoryMode: memory))
        return PipelineGenerator(pipeline: pipeline)
    }
}

/// The checkpoint an image came from, for the saved recipe: A1111's `Model` and `Model hash`.
public struct ModelIdentity: Equatable, Sendable {
    /// The checkpoint's name: the file name without extension, or the folder's (the repository's for
    /// a Hugging Face cache snapshot).
    public var name: String
    /// The file whose SHA-256 is the model hash: the single file, or a diffusers folder's UNet weights.
    public var hashedFile: URL

    public init(name: String, hashedFile: URL) {
        self.name = name
        self.hashedFile = hashedFile
    }

    /// The identity of a loaded checkpoint.
    public init(checkpoint: Checkpoint) {
        let location = checkpoint.location
        var name = location.deletingPathExtension().lastPathComponent
        if checkpoint.layout != .singleFile {
            // …/models--owner--name/snapshots/<commit>: the repository's name says more than the commit.
            name = HubCacheLayout.repositoryName(containing: location) ?? location.lastPathComponent
        }
        self.init(name: name, hashedFile: checkpoint.fileURL(for: .unet))
    }
}

/// The session's generator over the engine: one `prepare` per batch (LoRAs, embeddings, the text
/// encoder), one `render` per seed, Ctrl-C -> `CancellationToken`.
public final class PipelineGenerator: ImageGenerator {
    public let pipeline: StableDiffusionPipeline
    public let identity: ModelIdentity?
    public let loadWarnings: [String]
    public var memoryMode: MemoryMode? { pipeline.checkpoint.memoryMode }
    public var keptWeightBytes: Int? { pipeline.checkpoint.memoryMode == .fast ? pipeline.checkpoint.fastModeByteCount : 0 }
    public func filesChangedOnDisk() -> [String] { pipeline.checkpoint.filesChangedOnDisk() }

    public init(pipeline: StableDiffusionPipeline) {
        self.pipeline = pipeline
        identity = ModelIdentity(checkpoint: pipeline.checkpoint)
        var warnings = pipeline.checkpoint.warnings.map { "warning: \($0)" }
        let unexpected = pipeline.unexpectedKeys
        if !unexpected.isEmpty {
            let shown = unexpected.prefix(5).joined(separator: ", ")
            warnings.append("warning: \(unexpected.count) tensor\(unexpected.count == 1 ? "" : "s") of \(pipeline.checkpoint.location.path) "
                            + "\(unexpected.count == 1 ? "belongs" : "belong") to no part of SD1.5 and \(unexpected.count == 1 ? "was" : "were") ignored: \(shown)\(unexpected.count > 5 ? ", …" : "")")
        }
        loadWarnings = warnings
    }

    public func generate(_ request: GenerationRequest, folders: ResourceFolders, progress: (GenerationProgress) -> Void,
                         isCancelled: () -> Bool, image: (GenerationResult) throws -> Void) throws {
        try use(folders)
        let token = CancellationToken()
        if isCancelled() { throw PipelineError.cancelled }
        // The engine checks the token between the UNet's blocks, and the token polls Ctrl-C's flag
        // there, so a cancel takes effect within a block rather than at the end of a step (minutes
        // at the largest sizes). The cheap latent preview is made every step and the terminal
        // decides when to draw one.
        try token.watching(isCancelled) {
            let prepared = try pipeline.prepare(request, cancellation: token)
            for index in 0..<request.batchCount {
                let result = try pipeline.render(prepared, index: index, progress: { step in
                    progress(step.counted(inSteps: request.steps))
                }, previewEvery: 1, cancellation: token)
                try image(result)
                if isCancelled() && index + 1 < request.batchCount { throw PipelineError.cancelled }
            }
        }
    }

    public func tokenReport(prompt: String, steps: Int, folders: ResourceFolders) throws -> String {
        try use(folders)
        let networks = try ExtraNetworks.parse(prompt)
        let loras = networks.loras.map { lora in
            do {
                _ = try LoRALibrary.locate(lora.name, in: folders.loras)
            } catch LoRAError.notFound(let name, let searched) {
                // `gen` would refuse the prompt: say so here, with the closest name found.
                let near = closestWord(to: name, in: LoRALibrary.names(in: folders.loras)).map { "; did you mean '\($0)'?" } ?? ""
                return "LoRA \(name): not found (looked for \(name).safetensors in \(searched.joined(separator: ", ")))\(near); gen refuses this prompt"
            } catch {
                return "LoRA \(lora.name): \(error); gen refuses this prompt"
            }
            return "LoRA \(lora.name): text encoder x\(lora.textEncoderMultiplier), UNet x\(lora.unetMultiplier)"
        }
        return (loras + [try compositionReport(networks.prompt, steps: steps)]).joined(separator: "\n")
    }

    private func use(_ folders: ResourceFolders) throws {
        pipeline.loraDirectories = folders.loras
        pipeline.embeddingDirectories = folders.embeddings
        usePreview(folders.previewDecoder)
        guard let file = folders.decoder else {
            pipeline.decoder = pipeline.vae
            pipeline.encoder = pipeline.vaeEncoder
            pipeline.decoderFile = nil
            loadedDecoder = nil
            return
        }
        // Read again when the file changed: its weights are read from the file's mapping.
        let stamps = FileStamp.of(file)
        if loadedDecoder?.url != file || loadedDecoder?.stamps != stamps {
            // The old one goes first, so that the two are never in memory together.
            loadedDecoder = nil
            pipeline.decoder = pipeline.vae
            pipeline.encoder = pipeline.vaeEncoder
            pipeline.decoderFile = nil
            let decoder = try loadLatentDecoder(file, vaeConfig: pipeline.vae.config)
            // A full VAE encodes too (TAESD's encoder is not used: the model's VAE encodes for it).
            let encoder = decoder is AutoencoderDecoder ? try VAEFile.encoder(file, config: pipeline.vae.config) : nil
            loadedDecoder = (file, stamps, decoder, encoder)
        }
        if let decoder = loadedDecoder?.decoder {
            pipeline.decoder = decoder
            pipeline.encoder = loadedDecoder?.encoder ?? pipeline.vaeEncoder
            pipeline.decoderFile = file
            if decoder is TinyAutoencoderDecoder, pipeline.previewDecoder == nil { pipeline.previewDecoder = decoder }
        }
    }

    /// The TAESD for live previews, read once per file and again when it changes; one that cannot be
    /// read leaves the latent projection (a preview is not worth refusing a generation for).
    private func usePreview(_ file: URL?) {
        let stamps = file.map(FileStamp.of)
        if previewFile != file || previewStamps != stamps {
            previewFile = file
            previewStamps = stamps
            previewDecoder = nil
            previewDecoder = file.flatMap { try? TinyAutoencoderDecoder.load($0) }
        }
        pipeline.previewDecoder = previewDecoder
    }

    private var previewFile: URL?
    private var previewStamps: [FileStamp]?
    private var previewDecoder: TinyAutoencoderDecoder?

    /// The decoder read for `set vae` (TAESD or a VAE file), and a VAE file's encoder, kept while the
    /// file stays the same (the same path, sizes and modification times).
    private var loadedDecoder: (url: URL, stamps: [FileStamp], decoder: any LatentDecoder, encoder: AutoencoderEncoder?)?

    private func compositionReport(_ prompt: String, steps: Int) throws -> String {
        let parts = PromptComposition.parts(of: prompt)
        guard !PromptComposition.isPlain(parts) else { return try scheduleReport(parts[0].text, steps: steps) }
        var lines = ["\(parts.count) prompt\(parts.count == 1 ? "" : "s") composed with AND or a :weight; their guidance adds up"]
        for (number, part) in parts.enumerated() {
            lines.append("prompt \(number + 1) of \(parts.count), weight \(part.weight):")
            lines += try scheduleReport(part.text, steps: steps).split(separator: "\n").map { "  " + $0 }
        }
        return lines.joined(separator: "\n")
    }

    private func scheduleReport(_ prompt: String, steps: Int) throws -> String {
        let schedule = PromptSchedule(prompt, steps: steps)
        // Editing that resolves to one text over these steps (`[a:b:0.4]` at 2 steps) is that text.
        guard schedule.isScheduled else { return try chunkReport(schedule.entries.first?.prompt ?? prompt) }
        // Sampling step s (1-based) is A1111's evaluation s - 1.
        var ranges: [String] = []
        var texts: [String] = []
        var first = 1
        for step in 1...steps {
            let text = schedule.entries[schedule.entryIndex(forEvaluation: step - 1)].prompt
            if step < steps, schedule.entries[schedule.entryIndex(forEvaluation: step)].prompt == text { continue }
            ranges.append("  \(first == step ? "step \(step)" : "steps \(first)-\(step)"): \(text)")
            if !texts.contains(text) { texts.append(text) }
            first = step + 1
        }
        var lines = ["prompt editing: \(texts.count) text\(texts.count == 1 ? "" : "s") over \(steps) step\(steps == 1 ? "" : "s")"] + ranges
        for text in texts {
            lines.append("\(text.isEmpty ? "(empty)" : text):")
            lines += try chunkReport(text).split(separator: "\n").map { "  " + $0 }
        }
        return lines.joined(separator: "\n")
    }

    private func chunkReport(_ prompt: String) throws -> String {
        let chunked = try pipeline.chunks(of: prompt)
        let chunker = PromptChunker(tokenizer: pipeline.tokenizer)
        let count = chunked.chunks.count
        var lines = ["\(chunked.tokenCount) token\(chunked.tokenCount == 1 ? "" : "s") in \(count) chunk\(count == 1 ? "" : "s") of up to \(PromptChunker.chunkLength)"]
        for (number, chunk) in chunked.chunks.enumerated() {
            lines.append("  chunk \(number + 1) (\(chunk.promptTokenCount) token\(chunk.promptTokenCount == 1 ? "" : "s")): \(chunker.text(of: chunk))")
        }
        return lines.joined(separator: "\n")
    }
}

extension GenerationProgress {
    /// This progress counted in the `steps` the request asked for. The engine counts UNet
    /// evaluations (`total` is the sampler's timestep count), which for PNDM is steps + 1: its
    /// first step evaluates twice (the PLMS warm-up), so evaluation k of steps + 1 finishes step
    /// k - 1 (`k * steps / (steps + 1)`, rounded down). Other samplers are returned as they are.
    func counted(inSteps steps: Int) -> GenerationProgress {
        guard total > 0, steps > 0, total != steps else { return self }
        var counted = GenerationProgress(image: image, images: images, step: step * steps / total, total: steps,
                                         elapsed: elapsed, preview: preview)
        counted.previewIsDecoded = previewIsDecoded
        return counted
    }
}
