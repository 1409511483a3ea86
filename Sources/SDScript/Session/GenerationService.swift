import Diffusion
import FileErrors
import Foundation
import Imaging

/// Turns the session's settings into images: finds and keeps the model's generator, resolves the
/// request (seed, style), runs one batch through the engine and saves images with their recipes.
final class GenerationService {
    let components: Components
    /// The generator for the model and memory mode it was loaded with; reloaded when either changes.
    private var cached: (model: String, memory: MemoryMode, generator: ImageGenerator)?

    /// The generator loaded now, if any (nothing is loaded to answer).
    var cachedGenerator: ImageGenerator? { cached?.generator }
    /// Told of each model loaded without a `model` path: found by discovery, or `replayed` from a
    /// transcript's `# model` line.
    var loadedWithoutPath: (_ location: ModelLocation, _ replayed: Bool) -> Void = { _, _ in }

    init(components: Components) {
        self.components = components
    }

    /// The generator for the current model, loaded on first use and kept for the session.
    /// - Parameter command: the command that needs it, named in errors.
    func generator(for resources: ResourceSettings, io: SessionIO, command: String = "gen") throws -> ImageGenerator {
        let location: ModelLocation
        do {
            location = try components.models.locate(explicit: resources.modelToLoad)
        } catch {
            throw ScriptError.noModel(FileErrorText.reason(error), command: command)
        }
        if let kept = cached, kept.model == location.path, kept.memory == resources.memory {
            let changed = kept.generator.filesChangedOnDisk()
            if changed.isEmpty { return kept.generator }
            // Its weights are read from the files' mappings as it runs: the old model goes first,
            // so that the two are never in memory together.
            cached = nil
            io.output("\(changed.joined(separator: ", ")) changed on disk since the model was loaded; loading it again")
        }
        guard let loader = components.generatorLoader else { throw ScriptError.noEngine(model: location.path, command: command) }
        io.output("loading \(location.path) (\(location.source)) …")
        let loaded: ImageGenerator
        do {
            loaded = try loader.load(model: location, memory: resources.memory)
        } catch {
            // The engine's messages name the checkpoint already; the path is added only when they do not.
            let reason = FileErrorText.reason(error)
            throw reason.contains(location.path) ? ScriptError.unavailable(command: "model", reason: reason)
                                                 : ScriptError.file(command: "model", path: location.path, reason: reason)
        }
        loaded.loadWarnings.forEach(io.warning)
        cached = (location.path, resources.memory, loaded)
        if resources.model == nil { loadedWithoutPath(location, resources.replayedModel != nil) }
        return loaded
    }

    /// The request for `count` images from `seed`, with the style applied and the init image and
    /// mask read and brought to the request's size.
    /// - Parameters:
    ///   - history: the session's images, for `init N`.
    ///   - note: told when an image is resized.
    /// - Throws: `ScriptError.badArgument` for a style this session does not have or an `init N`
    ///   past the history, `.file` for an init image or mask that cannot be read.
    func resolve(_ settings: RequestDefaults, seed: UInt64, count: Int, command: String = "gen",
                 history: [SessionImage] = [], note: (String) -> Void = { _ in }) throws -> StyledRequest {
        guard let styled = components.styles.apply(settings.style, prompt: settings.prompt, negative: settings.negative) else {
            throw ScriptError.badArgument(command: command, argument: settings.style, reason: "unknown style",
                                          suggestion: closestWord(to: settings.style, in: components.styles.names))
        }
        let initImage = try initPixels(settings, history: history, command: command, note: note)
        let mask = try maskValues(settings, command: command, note: note)
        let engine = Self.engineRequest(settings, prompt: styled.prompt, negative: styled.negative, seed: seed, count: count,
                                        initImage: initImage, mask: mask)
        if let reason = engine.noStepReason { note("\(command): " + reason) }
        let changed = styled.prompt != settings.prompt || styled.negative != settings.negative
        var request = StyledRequest(engine: engine, style: settings.style, typedPrompt: changed ? settings.prompt : nil,
                                    typedNegative: changed ? settings.negative : nil,
                                    initSource: settings.initImage.map(Self.recordedSource), maskSource: mask == nil ? nil : settings.mask,
                                    hiresSize: settings.hires)
        var fromFile = mask != nil
        if case .file? = settings.initImage { fromFile = true }
        request.turnedByEXIF = settings.exifOrientation && fromFile
        return request
    }

    /// The init image as the saved image names it: a file by its absolute path, so `load` finds it
    /// from any folder.
    static func recordedSource(_ source: InitImage) -> String {
        guard case .file(let path) = source else { return "\(source)" }
        return URL(fileURLWithPath: path).standardizedFileURL.path
    }

    /// The engine's request for `settings` with the given texts and images (none of them read here).
    static func engineRequest(_ settings: RequestDefaults, prompt: String, negative: String, seed: UInt64, count: Int,
                              initImage: PixelImage?, mask: InpaintMask?) -> GenerationRequest {
        GenerationRequest(prompt: prompt, negativePrompt: negative, seed: seed,
                          steps: settings.steps, guidanceScale: settings.cfg, width: settings.width,
                          height: settings.height, sampler: settings.sampler, batchCount: count,
                          clipSkip: settings.clipSkip, initImage: initImage,
                          strength: settings.strength, spacing: settings.spacing, eta: settings.eta,
                          mask: mask, maskBlur: settings.maskBlur, inpaintPaste: settings.inpaintPaste,
                          hires: settings.hiresFix, vaeTiling: settings.vaeTiling == .on, deepCache: settings.deepCache,
                          precision: settings.precision.resolved(drafting: false))
    }

    /// The init image's pixels at the request's size: resized as diffusers' image processor does
    /// (Pillow's Lanczos) when the file is another size, with a note.
    private func initPixels(_ settings: RequestDefaults, history: [SessionImage], command: String,
                            note: (String) -> Void) throws -> PixelImage? {
        guard let source = settings.initImage else { return nil }
        let image: RGBImage
        switch source {
        case .history(let index):
            guard history.indices.contains(index - 1) else {
                throw ScriptError.badArgument(command: command, argument: "init \(index)",
                                              reason: "this session has \(history.count) image\(history.count == 1 ? "" : "s"); no such init")
            }
            image = history[index - 1].pixels
        case .file(let path):
            do {
                let read = try ImageRecipeReader.pixelsAndAlpha(URL(fileURLWithPath: path), turnedByEXIF: settings.exifOrientation)
                image = read.image
                Self.noteOrientation(read.exifOrientation, of: path, what: "init", settings: settings, note: note)
            } catch {
                throw ScriptError.file(command: command, path: path, reason: "cannot read the init image: \(Self.readProblem(error))")
            }
        }
        let pixels = PixelImage(width: image.width, height: image.height, rgb: image.pixels)
        guard image.width != settings.width || image.height != settings.height else { return pixels }
        // The size to keep it at, only when `set size` takes it.
        let keep = RequestLimits.acceptsSide(image.width) && RequestLimits.acceptsSide(image.height)
            ? " — 'set size \(image.width)x\(image.height)' keeps its size" : ""
        note("init: \(source) is \(image.width)x\(image.height); resized to \(settings.width)x\(settings.height) (Lanczos, as diffusers)" + keep)
        return pixels.resized(width: settings.width, height: settings.height)
    }

    /// Says when a JPEG stored turned (a phone's portrait photo) is used as stored.
    private static func noteOrientation(_ orientation: Int?, of path: String, what: String, settings: RequestDefaults, note: (String) -> Void) {
        guard let orientation, orientation != 1, !settings.exifOrientation else { return }
        note("\(what): \(path) is stored turned (EXIF orientation \(orientation)) and is used as stored; "
             + "'set exif-rotate on' turns it upright first, as A1111 does")
    }

    /// Why an image file could not be read, without its path (the message names it already).
    private static func readProblem(_ error: Error) -> String {
        if case ImagingError.readFailed(_, let reason) = error { return reason }
        return FileErrorText.reason(error)
    }

    /// The mask at the request's size, as A1111 reads one: a PNG's alpha when it is not all opaque
    /// (opaque repaints, thresholded at 128 as A1111's `create_binary_mask`), otherwise the image's
    /// luma (white repaints); resized with Lanczos when it is another size, with a note.
    private func maskValues(_ settings: RequestDefaults, command: String, note: (String) -> Void) throws -> InpaintMask? {
        guard let path = settings.mask else { return nil }
        let read: (image: RGBImage, alpha: [UInt8]?)
        do {
            let file = try ImageRecipeReader.pixelsAndAlpha(URL(fileURLWithPath: path), turnedByEXIF: settings.exifOrientation)
            read = (file.image, file.alpha)
            Self.noteOrientation(file.exifOrientation, of: path, what: "mask", settings: settings, note: note)
        } catch {
            throw ScriptError.file(command: command, path: path, reason: "cannot read the mask: \(Self.readProblem(error))")
        }
        let (w, h) = (read.image.width, read.image.height)
        var mask: InpaintMask
        if let alpha = read.alpha, alpha.contains(where: { $0 != 255 }) {
            mask = InpaintMask(width: w, height: h, values: alpha.map { $0 > 128 ? 255 : 0 })
        } else {
            mask = InpaintMask(luma: PixelImage(width: w, height: h, rgb: read.image.pixels))
        }
        if w != settings.width || h != settings.height {
            note("mask: \(path) is \(w)x\(h); resized to \(settings.width)x\(settings.height) (Lanczos) to match the init image")
            mask = mask.resized(width: settings.width, height: settings.height)
        }
        return mask
    }

    /// Where `<lora:NAME>` tags and embedding names are looked up for `resources`, and its decoder.
    func folders(for resources: ResourceSettings) -> ResourceFolders {
        ResourceFolders(loras: loraDirectories(resources), embeddings: embeddingDirectories(resources),
                        decoder: vaeFile(resources))
    }

    /// Where `<lora:NAME>` looks: `lora-dir` when set, then `models/Lora` in the current folder and
    /// `Lora` beside the model's folder (A1111 keeps checkpoints in `models/Stable-diffusion` and
    /// LoRAs in `models/Lora`).
    func loraDirectories(_ resources: ResourceSettings) -> [URL] {
        folders(chosen: resources.loraDir, here: "models/Lora", besideModels: "Lora", model: resources.modelToLoad)
    }

    /// Where textual-inversion embeddings are found: `embeddings` when set, then `embeddings`
    /// in the current folder and beside the models folder (A1111's `embeddings/` next to `models/`).
    func embeddingDirectories(_ resources: ResourceSettings) -> [URL] {
        folders(chosen: resources.embeddingsDir, here: "embeddings", besideModels: "../embeddings", model: resources.modelToLoad)
    }

    /// `chosen`, then `here` in the current folder, then `besideModels` relative to the folder that
    /// holds the model (`models/` for `models/Stable-diffusion/x.safetensors` or `x.ckpt`, for a
    /// diffusers folder there or in a sub-folder of it, and for `models/x` a diffusers folder), without repeats.
    func folders(chosen: String?, here: String, besideModels: String, model: String?) -> [URL] {
        var folders: [URL] = []
        if let chosen { folders.append(URL(fileURLWithPath: chosen.expandingTilde)) }
        folders.append(URL(fileURLWithPath: here))
        if let location = try? components.models.locate(explicit: model) {
            let url = URL(fileURLWithPath: location.path).standardizedFileURL
            // A single file (.safetensors or .ckpt) sits one level deeper than a diffusers folder.
            var isDirectory: ObjCBool = false
            let isFile = FileManager.default.fileExists(atPath: location.path, isDirectory: &isDirectory) && !isDirectory.boolValue
            var folder = (isFile ? url.deletingLastPathComponent() : url).deletingLastPathComponent()
            // A1111's checkpoint folder (discovery looks two levels into it): its parent holds Lora/ and VAE/.
            let a1111 = sequence(first: url.deletingLastPathComponent()) { $0.deletingLastPathComponent() }.prefix(3)
                .first { $0.lastPathComponent.lowercased() == "stable-diffusion" }
            if let a1111 { folder = a1111.deletingLastPathComponent() }
            folders.append(folder.appendingPathComponent(besideModels))
        }
        var seen = Set<String>()
        return folders.map(\.standardizedFileURL).filter { seen.insert($0.path).inserted }
    }

    /// Runs `request` (all its images) through the engine, handing each finished image to `made`.
    /// - Throws: `ScriptError.cancelled` after Ctrl-C (with how many images were made), or
    ///   `ScriptError.generation` naming what the engine refused.
    /// - Parameter command: the command that asked (`gen`, `grid`, `final`), named in errors.
    func generate(_ request: StyledRequest, settings: SessionSettings, io: SessionIO, command: String = "gen",
                  made: (GenerationResult, RGBImage, ModelIdentity?) throws -> Void) throws {
        let generator = try self.generator(for: settings.resources, io: io, command: command)
        var folders = self.folders(for: settings.resources)
        if settings.output.preview != .off { folders.previewDecoder = previewTAESD(settings.resources) }
        let count = request.engine.batchCount
        var finished = 0
        io.clearInterrupt()
        do {
            try generator.generate(request.engine, folders: folders, progress: { step in
                io.emit(.progress(step, index: finished + 1, count: count, preview: settings.output.preview))
            }, isCancelled: { io.isInterrupted }, image: { result in
                io.progressDone()
                let pixels: RGBImage
                do {
                    pixels = try RGBImage(width: result.image.width, height: result.image.height, pixels: result.image.rgb)
                } catch {
                    throw ScriptError.generation("the engine returned a malformed image: \(error)", command: command)
                }
                let expected = request.engine.hires.map { ($0.width, $0.height) } ?? (request.engine.width, request.engine.height)
                guard pixels.width == expected.0, pixels.height == expected.1 else {
                    throw ScriptError.generation("the engine returned \(pixels.width)x\(pixels.height) for \(expected.0)x\(expected.1)", command: command)
                }
                finished += 1
                try made(result, pixels, generator.identity)
            })
            io.progressDone()
        } catch let error as ScriptError {
            io.progressDone()
            throw error
        } catch {
            io.progressDone()
            if io.isInterrupted { throw ScriptError.cancelled(completed: finished, requested: count) }
            if case LoRAError.notFound(let name, _) = error,
               let near = closestWord(to: name, in: LoRALibrary.names(in: folders.loras)) {
                throw ScriptError.engine(EngineFailure(error, hint: "did you mean '\(near)'?"), command: command)
            }
            throw ScriptError.engine(EngineFailure(error), command: command)
        }
    }

    /// Writes `image` to `path` (or both formats in the output folder) with its recipe.
    /// - Throws: `ScriptError.imageNotSaved` saying which file and why; the image stays in the session.
    func save(_ image: SessionImage, to path: String?, output: OutputSettings) throws -> SavedFiles {
        guard let saver = components.saver else {
            throw ScriptError.unavailable(command: "save", reason: "this session has no image writer")
        }
        do {
            return try saver.save(image, to: path, output: output)
        } catch let error as ScriptError {
            throw error
        } catch {
            throw ScriptError.imageNotSaved(command: "save", reason: FileErrorText.reason(error))
        }
    }
}
