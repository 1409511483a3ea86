import Diffusion
import FileErrors
import Foundation
import Imaging
import ModelStore

// The session's image files and styles, over the Imaging module.

/// Saves images with `ImageWriter`: PNG and JPEG with the A1111 `parameters`, sdrepl's own keys and
/// the XMP (see `ImageMetadata`).
public struct ImagingSaver: ImageSaver {
    /// Where model hashes are cached (hashing a 2–4 GB checkpoint takes a while).
    public var hashes: ModelHashCache
    /// Tells the user about slow work (hashing the checkpoint the first time).
    public var note: (String) -> Void

    public init(hashes: ModelHashCache = ModelHashCache(), note: @escaping (String) -> Void = { _ in }) {
        self.hashes = hashes
        self.note = note
    }

    /// The A1111 recipe of one image: the prompts the model saw (style applied), the sampler by
    /// A1111's name, the model's name and short hash, `Version: sdrepl X`.
    public static func recipe(for request: StyledRequest, model: ModelIdentity?, modelHash: String?) -> Imaging.ImageRecipe {
        let r = request.engine
        return Imaging.ImageRecipe(
            prompt: r.prompt, negativePrompt: r.negativePrompt, steps: r.steps,
            sampler: r.sampler.a1111Name,
            cfgScale: Double(formatNumber(r.guidanceScale)) ?? Double(r.guidanceScale), seed: r.seed,
            width: r.width, height: r.height, modelHash: modelHash, modelName: model?.name,
            clipSkip: r.clipSkip, style: request.style, version: "sdrepl \(SDReplVersion.string)")
    }

    public func save(_ image: SessionImage, to path: String?, output: OutputSettings) throws -> SavedFiles {
        let (paths, metadata) = try write(image, to: path, output: output)
        guard metadata.jpegUserCommentIsCut, let jpeg = paths.first(where: { ImageFormat(path: $0) == .jpeg }) else {
            return SavedFiles(paths: paths)
        }
        let kept = metadata.jpegUserComment.count, whole = metadata.infotext.count
        let png = paths.first { ImageFormat(path: $0) == .png }.map { "\($0) has all of it" } ?? "a PNG would keep all of it"
        return SavedFiles(paths: paths, warnings: [
            "warning: \(jpeg): the prompt is too long for a JPEG's EXIF comment (a recipe of \(whole) characters), "
                + "which keeps the first \(kept) characters of it; \(png)",
        ])
    }

    /// Writes the files; returns their paths and the metadata they carry.
    private func write(_ image: SessionImage, to path: String?, output: OutputSettings) throws -> ([String], ImageMetadata) {
        let metadata = try metadata(for: image)
        if let path, namesAFolder(path) {
            // `save DIR/`: into that folder, named as outdir's images are.
            let writer = ImageWriter(directory: URL(fileURLWithPath: path), jpegQuality: output.jpegQuality)
            return (try writer.save(image.pixels, metadata: metadata).map { relativeIfBelowCurrent($0.path) }, metadata)
        }
        let writer = ImageWriter(directory: URL(fileURLWithPath: output.outdir), jpegQuality: output.jpegQuality)
        if let path, (path as NSString).pathExtension.isEmpty {
            // No extension: both formats, as `save` alone writes them.
            let urls = try writer.save(image.pixels, metadata: metadata, stem: URL(fileURLWithPath: path))
            return (urls.map { path + "." + $0.pathExtension }, metadata)
        }
        if let path {
            try writer.save(image.pixels, metadata: metadata, to: URL(fileURLWithPath: path))
            return ([path], metadata)
        }
        return (try writer.save(image.pixels, metadata: metadata).map { relativeIfBelowCurrent($0.path) }, metadata)
    }

    /// What a saved image carries: A1111's infotext with every key that applies (hashes, hires,
    /// inpainting, upscaling), sdrepl's own keys and the XMP.
    func metadata(for image: SessionImage) throws -> ImageMetadata {
        let request = image.request, r = request.engine
        var hash: String?
        if let model = image.model {
            hash = try? hashes.shortHash(of: model.hashedFile, note: note)
        }
        var recipe = Self.recipe(for: request, model: image.model, modelHash: hash)
        // A1111's `Lora hashes: "name: <first 12 hex digits of its LoRA hash>, …"`, which civitai
        // reads to link the resources; A1111 drops colons and commas from the name.
        let loraHashes = image.loras.compactMap { lora in
            (try? FileHash.loraHash(of: lora.file)).map {
                "\(lora.name.replacingOccurrences(of: ":", with: "").replacingOccurrences(of: ",", with: "")): \($0.prefix(12))"
            }
        }
        if !loraHashes.isEmpty { recipe.extra.append(.init("Lora hashes", loraHashes.joined(separator: ", "))) }
        if let vae = image.vae {
            // A1111's `VAE hash` (first 10 hex digits of the file's SHA-256) and `VAE` (its file name).
            if let hash = try? FileHash.sha256(of: VAELibrary.hashedFile(vae)) { recipe.extra.append(.init("VAE hash", String(hash.prefix(10)))) }
            recipe.extra.append(.init("VAE", vae.lastPathComponent))
        }
        if r.initImage != nil { recipe.extra.append(.init("Denoising strength", formatNumber(Float(r.strength)))) }
        if r.mask != nil { recipe.extra.append(.init("Mask blur", String(r.maskBlur))) }
        if let hires = r.hires {
            // A1111's keys: its Size stays the first pass's; the strength is the second pass's.
            recipe.extra.append(.init("Denoising strength", formatNumber(Float(hires.strength))))
            if case .scale(let factor)? = request.hiresSize {
                recipe.extra.append(.init("Hires upscale", formatNumber(Float(factor))))
            } else {
                recipe.extra.append(.init("Hires resize", "\(hires.width)x\(hires.height)"))
            }
            if hires.steps > 0 { recipe.extra.append(.init("Hires steps", String(hires.steps))) }
            recipe.extra.append(.init("Hires upscaler", hires.upscalerName))
        }
        if let interval = r.deepCache { recipe.extra.append(.init("DeepCache", String(interval))) }
        if let upscale = image.upscale {
            // A1111's extras tab writes these after the generation's own parameters.
            recipe.extra.append(.init("Postprocess upscale by", formatNumber(Float(upscale.factor))))
            recipe.extra.append(.init("Postprocess upscaler", upscale.upscaler))
        }
        var all: [String: Any] = [
            "prompt": r.prompt, "negative_prompt": r.negativePrompt, "style": request.style,
            "seed": NSNumber(value: r.seed), "steps": r.steps,
            "cfg_scale": Double(formatNumber(r.guidanceScale)) ?? Double(r.guidanceScale),
            "width": r.width, "height": r.height, "sampler": r.sampler.rawValue,
            "clip_skip": r.clipSkip, "version": SDReplVersion.string,
            // Not a setting: how long the engine took for this image, to the millisecond.
            "seconds": (image.seconds * 1000).rounded() / 1000,
        ]
        if let spacing = r.spacing { all["spacing"] = spacing.rawValue }
        if r.sampler == .tcd { all["eta"] = r.eta }
        if r.vaeTiling { all["vae_tiling"] = true }
        if let interval = r.deepCache { all["deepcache"] = interval }
        if r.precision != .fp32 { all["precision"] = r.precision.rawValue }
        if let initImage = r.initImage {
            all["strength"] = r.strength
            all["init_sha256"] = pixelHash(try RGBImage(width: initImage.width, height: initImage.height, pixels: initImage.rgb))
            if let source = request.initSource { all["init"] = source }
        }
        if let hires = r.hires {
            all["hires_width"] = hires.width
            all["hires_height"] = hires.height
            all["hires_steps"] = hires.steps
            all["hires_strength"] = hires.strength
            all["hires_upscaler"] = hires.upscalerModel == nil ? hires.upscaler.rawValue : hires.upscalerName
            if let file = hires.upscalerModel { all["hires_upscaler_file"] = file }
        }
        if request.turnedByEXIF { all["exif_orientation"] = true }
        if r.mask != nil {
            all["mask_blur"] = r.maskBlur
            all["inpaint_paste"] = r.inpaintPaste
            if let path = request.maskSource {
                all["mask"] = path
                if let hash = try? FileHash.sha256(of: URL(fileURLWithPath: path)) { all["mask_sha256"] = hash }
            }
        }
        if image.decoder != "VAE" { all["decoder"] = image.decoder }
        if let upscale = image.upscale {
            all["upscaler"] = upscale.upscaler
            all["upscale_by"] = upscale.factor
            if let resize = upscale.resize { all["upscale_resize"] = resize }
        }
        if let model = image.model {
            all["model"] = model.name
            all["model_file"] = model.hashedFile.path
        }
        if let hash { all["model_hash"] = hash }
        var metadata = ImageMetadata(recipe: recipe, typedPrompt: request.typedPrompt ?? r.prompt,
                                     typedNegativePrompt: request.typedNegative ?? r.negativePrompt,
                                     style: request.style, timestamp: Date(),
                                     settingsJSON: (try? ImageMetadata.settingsJSON(all)) ?? "{}")
        if Self.isInpaintedPhoto(request) { metadata.sourceType = .compositeWithTrainedAlgorithmicMedia }
        return metadata
    }

    /// Inpainting that keeps a photo's pixels outside the mask: its init image is a file with no
    /// recipe of its own (neither A1111's nor sdrepl's: not a picture a model made).
    static func isInpaintedPhoto(_ request: StyledRequest) -> Bool {
        guard request.engine.mask != nil, request.engine.inpaintPaste, let source = request.initSource, source.hasPrefix("/") else { return false }
        do {
            _ = try ImageRecipeReader.read(URL(fileURLWithPath: source))
            return false
        } catch ImagingError.noRecipe {
            return true
        } catch {
            return false  // gone or unreadable since: nothing says it was not made
        }
    }

    private func relativeIfBelowCurrent(_ path: String) -> String {
        let current = FileManager.default.currentDirectoryPath + "/"
        return path.hasPrefix(current) ? String(path.dropFirst(current.count)) : path
    }
}

/// The prompt styles: Imaging's built-in presets, the user's `$XDG_CONFIG_HOME/sdrepl/styles.csv`
/// (`~/.config/sdrepl/styles.csv`) when present, and any `set styles FILE`.
public final class StyleBook {
    public private(set) var library: StyleLibrary
    /// A problem with the user's styles file, reported once by the front end.
    public private(set) var loadProblem: String?

    /// - Parameter environment: where `XDG_CONFIG_HOME` and `HOME` are read from.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        library = StyleLibrary()
        let file = XDGDirectories(environment: environment).config + "/sdrepl/styles.csv"
        if FileManager.default.fileExists(atPath: file) {
            do {
                try load(csv: file)
            } catch {
                loadProblem = "\(file): \(fileProblem(error))"
            }
        }
    }

    /// Every style name, `none` first.
    public var names: [String] { library.names }

    public func style(named name: String) -> PromptStyle? { library.style(named: name) }

    /// One line per style for the `styles` command.
    public func listing() -> [String] {
        let width = (library.names.map(\.count).max() ?? 0) + 2
        return library.styles.map { style in
            var line = style.name.padding(toLength: width, withPad: " ", startingAt: 0)
            line += style.isNone ? "the prompt as typed" : (style.prompt.isEmpty ? "(no prompt text)" : style.prompt)
            if !style.negativePrompt.isEmpty { line += "   negative: " + style.negativePrompt }
            if style.origin != "built-in" { line += "   [\(style.origin)]" }
            return line
        }
    }

    /// The prompt and negative with `style` applied, or nil for an unknown style.
    public func apply(_ style: String, prompt: String, negative: String) -> (prompt: String, negative: String)? {
        guard let found = library.style(named: style) else { return nil }
        let applied = found.apply(prompt: prompt, negativePrompt: negative)
        return (applied.prompt, applied.negativePrompt)
    }

    /// Adds the styles of an A1111-format `styles.csv`.
    /// - Throws: Imaging's error naming the file and line.
    public func load(csv path: String) throws {
        library.add(try StyleLibrary.load(URL(fileURLWithPath: path)))
    }
}

/// What `info FILE` and `sdrepl info FILE` print: the infotext as stored, then what sdrepl's own
/// keys add (the prompt as typed, the style, when and how fast it was made), the watermark and
/// the XMP's AI-origin field.
public func describeStoredRecipe(_ stored: StoredRecipe) -> String {
    var lines = [stored.infotext ?? Infotext.render(stored.recipe)]
    if stored.source == .sdrepl {
        if let typed = stored.typedPrompt { lines.append("Prompt as typed: \(typed)") }
        if let typed = stored.typedNegativePrompt, !typed.isEmpty { lines.append("Negative prompt as typed: \(typed)") }
        if let style = stored.style { lines.append("Style: \(style)") }
        if let timestamp = stored.timestamp { lines.append("Timestamp: \(timestamp)") }
        if let json = stored.settingsJSON,
           let settings = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] {
            // sdrepl's own keys that decide the pixels but have no place in A1111's line.
            var own: [String] = []
            if let spacing = settings["spacing"] as? String { own.append("spacing \(spacing)") }
            if let eta = (settings["eta"] as? NSNumber)?.floatValue { own.append("eta \(formatNumber(eta))") }
            if let precision = settings["precision"] as? String { own.append("precision \(precision)") }
            if settings["vae_tiling"] != nil { own.append("VAE tiling on") }
            if !own.isEmpty { lines.append("sdrepl: " + own.joined(separator: ", ")) }
            if let seconds = (settings["seconds"] as? NSNumber)?.doubleValue {
                lines.append("Generation time: " + String(format: "%.2f s", seconds))
            }
        }
    }
    if let watermark = stored.watermark { lines.append("Watermark: \(watermark)") }
    if let type = stored.digitalSourceType { lines.append("XMP: IPTC DigitalSourceType \(type.rawValue)") }
    return lines.joined(separator: "\n")
}

/// The recipe stored in the image at `path` (`load`, `info`).
/// - Parameters:
///   - shown: the path as the user gave it, for the message (default: `path`).
///   - command: the command the message is labelled with.
/// - Throws: `ScriptError.file` naming the path and what is wrong with the file.
public func readStoredRecipe(at path: String, shownAs shown: String? = nil, command: String) throws -> StoredRecipe {
    do {
        return try ImageRecipeReader.read(URL(fileURLWithPath: path))
    } catch {
        throw ScriptError.file(command: command, path: shown ?? path, reason: fileProblem(error))
    }
}

/// What went wrong reading an image or a styles file, without its path (the message names the
/// path as the user gave it): Imaging's reason, or the file-system phrase.
func fileProblem(_ error: Error) -> String {
    switch error as? ImagingError {
    case .readFailed(_, let reason)?: return reason
    case .noRecipe?: return "carries no generation recipe (no A1111 parameters, sdrepl keys or EXIF UserComment)"
    case .stylesFile(_, let line, let message)?: return "line \(line): \(message)"
    default: return FileErrorText.reason(error)
    }
}

/// Short model hashes (A1111's first 10 hex digits of the file's SHA-256), cached under
/// `$XDG_CACHE_HOME/sdrepl/model-hashes.tsv` keyed by path, size and modification time, so each
/// checkpoint is read once. A Hugging Face cache blob is named by its SHA-256: free.
public struct ModelHashCache: Sendable {
    public var file: String

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        file = XDGDirectories(environment: environment).cache + "/sdrepl/model-hashes.tsv"
    }

    /// The first 10 hex digits of the SHA-256 of `url`.
    /// - Parameter note: told before a long hash starts, and as it goes.
    public func shortHash(of url: URL, note: (String) -> Void = { _ in }) throws -> String {
        if let known = cachedShortHash(of: url) { return known }
        let real = url.resolvingSymlinksInPath()
        let attributes = try FileManager.default.attributesOfItem(atPath: real.path)
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        let key = cacheKey(real, attributes: attributes)
        let lines = (try? String(contentsOfFile: file, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        if size > 64 << 20 { note("hashing \(real.lastPathComponent) (\(size >> 20) MiB) once for its model hash …") }
        let sha = try withoutActuallyEscaping(note) { note in
            try FileHash.sha256(of: real) { done in
                if size > 64 << 20 {
                    note("hashing \(real.lastPathComponent): \(Int(Double(done) * 100 / Double(max(size, 1))))%")
                }
            }
        }
        let short = FileHash.shortHash(sha)
        // The cache is an optimisation: failing to write it costs a re-hash next time, nothing else.
        try? FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        let text = (lines.filter { !$0.hasPrefix(real.path + "\t") } + [key + "\t" + short]).joined(separator: "\n") + "\n"
        try? text.write(toFile: file, atomically: true, encoding: .utf8)
        return short
    }

    /// The short hash when it is known without reading the file: a Hugging Face blob's name, or this
    /// cache's entry for the file's path, size and date.
    public func cachedShortHash(of url: URL) -> String? {
        if let known = HubCache.blobSHA256(of: url) { return FileHash.shortHash(known) }
        let real = url.resolvingSymlinksInPath()
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: real.path) else { return nil }
        let key = cacheKey(real, attributes: attributes)
        let lines = (try? String(contentsOfFile: file, encoding: .utf8))?.split(separator: "\n") ?? []
        return lines.first { $0.hasPrefix(key + "\t") }.map { String($0.dropFirst(key.count + 1)) }
    }

    /// `path<TAB>size<TAB>modification time in ms`: a file that changed is hashed again.
    private func cacheKey(_ real: URL, attributes: [FileAttributeKey: Any]) -> String {
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        let mtime = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        return "\(real.path)\t\(size)\t\(Int64(mtime * 1000))"
    }
}

/// Whether a `save` path means a folder to save into rather than a file name: it ends in "/" or
/// names a folder that exists.
func namesAFolder(_ path: String) -> Bool {
    var isFolder: ObjCBool = false
    return path.hasSuffix("/") || (FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) && isFolder.boolValue)
}
