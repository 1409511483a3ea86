import FileErrors
import Foundation
import Diffusion
import Imaging
import ModelStore

/// `load FILE`: a stored recipe back into the request defaults.
extension Command {
    /// Sets everything that decides the pixels from a stored recipe. sdrepl's own keys give the prompt
    /// as typed with its style; otherwise (A1111, or a JPEG) the infotext's prompts, style applied.
    static func apply(_ stored: StoredRecipe, to session: Session, file: String) throws {
        var settings = session.settings.request
        let recipe = stored.recipe
        var toLoad = stored.promptToLoad
        if session.components.styles.style(named: toLoad.style) == nil {
            // A style this session does not have: the infotext's prompts already contain it.
            toLoad = (recipe.prompt, recipe.negativePrompt, "none")
        }
        settings.prompt = toLoad.prompt
        settings.negative = toLoad.negativePrompt
        settings.style = toLoad.style
        if let seed = recipe.seed { settings.seed = .fixed(seed) }
        if let steps = recipe.steps { settings.steps = steps }
        if let cfg = recipe.cfgScale { settings.cfg = Float(cfg) }
        if let width = recipe.width, let height = recipe.height {
            settings.width = width
            settings.height = height
        }
        var schedule: [String] = []
        if let name = recipe.sampler {
            let scheduleType = recipe.extra("Schedule type")
            if let sampler = Sampler(a1111Name: name, scheduleType: scheduleType) {
                settings.sampler = sampler
            } else if let sampler = Sampler(a1111Name: name), let scheduleType {
                // A1111 1.9+ names the schedule apart ("Euler a" + "Karras"): the sampler without it
                // is the closest there is, and the warning says what differs.
                settings.sampler = sampler
                schedule = ["Schedule type: \(scheduleType) (\(sampler.rawValue) with its own schedule instead)"]
            } else {
                // A sampler sdrepl lacks (UniPC, DPM++ SDE): everything else still loads.
                schedule = ["Sampler: \(name) (sdrepl has no such sampler; kept \(settings.sampler.rawValue))"]
            }
        }
        settings.clipSkip = recipe.clipSkip
        let missing = applyImageInputs(stored, to: &settings, upscalers: session.upscalerDirectories())
            + (restoreVAE(recipe, ownKeys: stored.settingsJSON != nil, session: session).map { [$0] } ?? [])
            + keepingValid(&settings, current: session.settings.request)
        session.settings.request = settings
        session.io.output("loaded the recipe of \(file)")
        // One line for all of it: what gen will not reproduce, then the inputs that need giving again.
        let differences = (notReproduced(recipe, session: session).map { [$0] } ?? []) + schedule
        let problems = (differences.isEmpty ? [] : ["gen will not reproduce " + differences.joined(separator: ", ")]) + missing
        if !problems.isEmpty { session.io.warning("load: \(file): " + problems.joined(separator: "; ")) }
    }

    /// What `set` would refuse of a recipe's values (a hand-edited or foreign infotext: `Steps:
    /// 99999999`, `CFG scale: nan`) goes back to the session's `current` value, each named in the
    /// load's one warning line, so `gen` is not left to fail on them one at a time.
    static func keepingValid(_ settings: inout RequestDefaults, current: RequestDefaults) -> [String] {
        var kept: [String] = []
        func check<Value>(_ path: WritableKeyPath<RequestDefaults, Value>, _ name: String, _ valid: (Value) -> Bool, _ rule: String) {
            guard !valid(settings[keyPath: path]) else { return }
            kept.append("its \(name) \(settings[keyPath: path]) (sdrepl takes \(rule); kept \(current[keyPath: path]))")
            settings[keyPath: path] = current[keyPath: path]
        }
        check(\.steps, "steps", { RequestLimits.steps.contains($0) }, "1 to \(RequestLimits.steps.upperBound)")
        check(\.cfg, "CFG scale", { $0.isFinite && RequestLimits.guidance.contains($0) }, RequestLimits.guidanceDescription)
        check(\.width, "width", RequestLimits.acceptsSide, RequestLimits.sideDescription)
        check(\.height, "height", RequestLimits.acceptsSide, RequestLimits.sideDescription)
        let clipSkips = SettingKey.clipSkipRange
        check(\.clipSkip, "clip skip", clipSkips.contains, "\(clipSkips.lowerBound) to \(clipSkips.upperBound)")
        let strengths = SettingKey.strengthRange, strengthRule = "\(strengths.lowerBound) to \(formatNumber(Float(strengths.upperBound)))"
        check(\.strength, "denoising strength", strengths.contains, strengthRule)
        check(\.hiresStrength, "hires denoising strength", strengths.contains, strengthRule)
        check(\.hiresSteps, "hires steps", { $0 == 0 || RequestLimits.steps.contains($0) }, "0 to \(RequestLimits.steps.upperBound)")
        if case .scale(let factor)? = settings.hires, !(factor.isFinite && factor > 1 && factor <= 8) {
            kept.append("its hires upscale \(factor) (sdrepl takes above 1 and at most 8; kept \(current.hires.map { "\($0)" } ?? "off"))")
            settings.hires = current.hires
        }
        return kept
    }

    /// Restores what sdrepl's own keys and A1111's `Denoising strength`, `Mask blur` and `Hires …`
    /// keys say of the sampling, the second pass and the pictures it started from: spacing, eta,
    /// DeepCache's interval (sdrepl's `deepcache` or the infotext's `DeepCache`), the hires fix, the init image and mask files (when they are still there, unchanged), strength,
    /// mask blur and paste.
    /// - Returns: what could not be restored, one phrase each.
    /// - Parameter upscalers: the folders where a hires upscaler network is looked for by name.
    static func applyImageInputs(_ stored: StoredRecipe, to settings: inout RequestDefaults, upscalers: [URL]) -> [String] {
        let recipe = stored.recipe
        let own = stored.settingsJSON.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [String: Any] ?? [:]
        settings.spacing = (own["spacing"] as? String).flatMap(TimestepSpacing.init(rawValue:))
        if let eta = own["eta"] as? Double, (0...1).contains(eta) { settings.eta = eta }
        defer {
            // Tiling changes the pixels only of pictures over the tile: a smaller one leaves the choice as it was.
            let size = settings.hiresFix.map { ($0.width, $0.height) } ?? (settings.width, settings.height)
            if own["vae_tiling"] as? Bool == true {
                settings.vaeTiling = .on
            } else if max(size.0, size.1) > VAETiling.tileSide {
                settings.vaeTiling = .off
            }
        }
        settings.deepCache = ((own["deepcache"] as? Int) ?? recipe.extra("DeepCache").flatMap(Int.init))
            .flatMap { RequestLimits.deepCache.contains($0) ? $0 : nil }
        settings.initImage = nil
        settings.mask = nil
        settings.hires = nil
        settings.exifOrientation = own["exif_orientation"] as? Bool ?? false
        var missing: [String] = []
        settings.precision = .fp32
        if own["precision"] as? String == MatmulPrecision.bf16.rawValue {
            if case .failure(let unavailable) = BF16Support.detected {
                missing.append("bf16 precision (\(unavailable); fp32 instead)")
            } else {
                settings.precision = .bf16
            }
        }
        let hiresSize = recipe.extra("Hires upscale").flatMap(Double.init).map(HiresSize.scale)
            ?? recipe.extra("Hires resize").flatMap { try? parseHires($0) }
        if let hiresSize {
            // A1111's txt2img: the Denoising strength is the second pass's.
            settings.hires = hiresSize
            settings.hiresSteps = recipe.extra("Hires steps").flatMap(Int.init) ?? 0
            settings.hiresStrength = recipe.extra("Denoising strength").flatMap(Double.init) ?? RequestDefaults().hiresStrength
            let upscaler = recipe.extra("Hires upscaler") ?? "Latent"
            settings.hiresModel = nil
            if let known = HiresUpscaler(a1111Name: upscaler) {
                settings.hiresUpscaler = known
            } else if let file = (own["hires_upscaler_file"] as? String).flatMap({ FileManager.default.fileExists(atPath: $0) ? $0 : nil })
                        ?? UpscalerLibrary.find(upscaler, in: upscalers)?.path {
                settings.hiresModel = file
            } else {
                missing.append("its hires upscaler \(upscaler) is neither one of sdrepl's (\(HiresUpscaler.allCases.map(\.rawValue).joined(separator: ", "))) "
                               + "nor a file in the upscaler folders: put it there, or 'set hires-upscaler' to choose")
            }
            return missing
        }
        guard let strength = recipe.extra("Denoising strength").flatMap(Double.init) else { return missing }
        settings.strength = strength
        if let blur = recipe.extra("Mask blur").flatMap(Int.init), RequestLimits.maskBlur.contains(blur) { settings.maskBlur = blur }
        if let paste = own["inpaint_paste"] as? Bool { settings.inpaintPaste = paste }
        // A path as typed (older images kept a relative one) is found from here, as the mask is;
        // "image N" names no file.
        let source = own["init"] as? String
        let initFile = source.flatMap { $0.hasPrefix("image ") ? nil : URL(fileURLWithPath: $0).standardizedFileURL.path }
        if let source = initFile, FileManager.default.fileExists(atPath: source) {
            settings.initImage = .file(source)
            if let expected = own["init_sha256"] as? String, let pixels = try? ImageRecipeReader.pixels(URL(fileURLWithPath: source), turnedByEXIF: settings.exifOrientation),
               pixels.width == settings.width, pixels.height == settings.height, pixelHash(pixels) != expected {
                missing.append("the init image \(source) has changed since (its pixels' SHA-256 differs)")
            }
        } else {
            missing.append("it started from \(source ?? "an init image") (Denoising strength \(formatNumber(Float(strength)))): "
                           + "'init FILE' or 'init N' to give it again")
        }
        if let mask = own["mask"] as? String {
            if settings.initImage == nil {
                // A mask alone would fail the next gen ("a mask needs an init image").
                missing.append("its mask \(mask) is not restored without the init image")
            } else if FileManager.default.fileExists(atPath: mask) {
                settings.mask = mask
                if let expected = own["mask_sha256"] as? String, let hash = try? FileHash.sha256(of: URL(fileURLWithPath: mask)), hash != expected {
                    missing.append("the mask \(mask) has changed since (its SHA-256 differs)")
                }
            } else {
                missing.append("its mask \(mask) is gone: 'mask FILE' to give it again")
            }
        } else if recipe.extra("Mask blur") != nil {
            missing.append("it was inpainted with a mask this file does not name: 'mask FILE' to give it again")
        }
        return missing
    }

    /// Infotext keys that `load` applies or that do not change the pixels.
    static let reproducedKeys: Set<String> = ["Lora hashes", "Schedule type", "Version", "TI hashes", "Emphasis",
                                                      "Denoising strength", "Mask blur", "Hires upscale", "Hires resize",
                                                      "Hires steps", "Hires upscaler", "VAE", "VAE hash", "DeepCache"]

    /// What of a recipe the next `gen` will not reproduce, as one phrase: settings sdrepl does not
    /// have (hires fix, denoising strength, ControlNet, …) and a different model; nil when nothing.
    static func notReproduced(_ recipe: Imaging.ImageRecipe, session: Session) -> String? {
        var parts = recipe.extra.filter { !reproducedKeys.contains($0.key) && !($0.key == "RNG" && $0.value == "CPU") }
            .map { "\($0.key): \($0.value)" }
        // A1111 writes `RNG` only when it is not its default, the GPU's noise, which sdrepl (drawing
        // torch's CPU noise, A1111's `RNG: CPU`) cannot give; sdrepl's own images name no RNG.
        let version = recipe.version ?? ""
        if recipe.extra("RNG") == nil, !version.hasPrefix("sdrepl"), recipe.seed != nil {
            parts.append("RNG: GPU (A1111's default noise; sdrepl's is A1111's RNG: CPU)")
        }
        if let hash = recipe.modelHash,
           let current = session.components.models.shortHash(explicit: session.settings.resources.modelToLoad),
           hash.lowercased() != current.lowercased() {
            parts.append("Model hash: \(hash) (the current model's is \(current))")
        }
        parts += loraDifferences(recipe, folders: session.loraDirectories())
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }

    /// A1111's `Lora hashes: "NAME: first 12 hex digits, …"` against the files `<lora:NAME>` finds
    /// here: a LoRA that is missing, or another file under its name (hashed as A1111 does).
    static func loraDifferences(_ recipe: Imaging.ImageRecipe, folders: [URL]) -> [String] {
        guard let value = recipe.extra("Lora hashes") else { return [] }
        let unquoted = value.trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
        return unquoted.split(separator: ",").compactMap { entry in
            let pieces = entry.split(separator: ":", omittingEmptySubsequences: false)
            guard let last = pieces.last, pieces.count > 1 else { return nil }
            let name = pieces.dropLast().joined(separator: ":").trimmingWhitespace()
            let recorded = String(last).trimmingWhitespace().lowercased()
            guard !name.isEmpty, !recorded.isEmpty, recorded.allSatisfy(\.isHexDigit) else { return nil }
            guard let file = try? LoRALibrary.locate(name, in: folders) else {
                return "Lora \(name) (not in \(folders.map(\.path).joined(separator: ", ")))"
            }
            guard let local = try? FileHash.loraHash(of: file), !local.lowercased().hasPrefix(recorded) else { return nil }
            return "Lora hashes: \(name): \(recorded) (\(file.lastPathComponent)'s is \(local.prefix(recorded.count)))"
        }
    }
}
