import FileErrors
import Diffusion
import Foundation

/// `set mode draft|final` and `final N`: explore with a few-step LoRA and TAESD, then render the
/// chosen picture with the user's own settings and the same seed.
extension Session {
    /// The LoRAs of the LoRA folders with their files.
    private func loraFiles() -> [(name: String, file: URL)] {
        let folders = loraDirectories()
        return LoRALibrary.names(in: folders).compactMap { name in (try? LoRALibrary.locate(name, in: folders)).map { (name, $0) } }
    }

    /// `set mode VALUE`: `final`; `draft` (the best few-step LoRA found, TAESD when there is one); or
    /// `draft KEY=VALUE…` as the transcript records it. The transcript gets the explicit form.
    func setMode(_ value: String) throws {
        let words = value.split(whereSeparator: \.isWhitespace).map(String.init)
        switch words.first?.lowercased() {
        case "final"?:
            guard words.count == 1 else { throw ScriptError.unexpectedArgument(command: "set mode final", argument: words.dropFirst().joined(separator: " ")) }
            settings.resources.draft = nil
            log.line.replay = "set mode final"
        case "draft"? where words.count > 1:
            var preset = try DraftPreset(words: Array(words.dropFirst()))
            // `vae=NAME` as `set vae NAME` takes it: a name from 'vaes', kept as its file's path.
            if let vae = preset.vae, !FileManager.default.fileExists(atPath: vae.expandingTilde),
               let entry = VAELibrary.locate(vae, in: generation.vaeEntries(settings.resources)) {
                preset.vae = entry.url.path
            }
            try checkDraftFiles(preset)
            settings.resources.draft = preset
            log.line.replay = "set mode draft " + preset.words
        case "draft"?:
            let taesd = generation.previewTAESD(settings.resources)
            guard let (kind, preset) = DraftPreset.best(among: loraFiles(), taesd: taesd) else {
                throw ScriptError.unavailable(command: "set mode draft", reason: "no few-step LoRA (LCM, TCD, Hyper-SD or PCM by its file name) in "
                    + loraDirectories().map(\.path).joined(separator: ", ") + ": get one, e.g. 'model download latent-consistency/lcm-lora-sdv1-5 "
                    + "pytorch_lora_weights.safetensors' and copy that file to models/Lora/lcm-lora-sdv1-5.safetensors")
            }
            settings.resources.draft = preset
            log.line.replay = "set mode draft " + preset.words
            io.output("draft: \(kind) \(preset.words)")
            if taesd == nil {
                io.output("draft: no TAESD in " + generation.taesdDirectories(settings.resources).map(\.path).joined(separator: ", ")
                          + ", so drafts decode with the full VAE; 'model download madebyollin/taesd taesd_decoder.safetensors' "
                          + "and copy it to models/VAE-taesd for a decode about 18 times cheaper")
            }
        default:
            throw ScriptError.badArgument(command: "set mode", argument: value, reason: "expected draft or final, got",
                                          suggestion: closestWord(to: words.first ?? value, in: ["draft", "final"]))
        }
    }

    /// The preset's LoRA and decoder exist (a replayed transcript may name files that moved).
    private func checkDraftFiles(_ preset: DraftPreset) throws {
        do {
            _ = try LoRALibrary.locate(preset.lora, in: loraDirectories())
        } catch {
            throw ScriptError.unavailable(command: "set mode draft", reason: "\(error)")
        }
        if let vae = preset.vae, !FileManager.default.fileExists(atPath: vae) {
            throw ScriptError.unavailable(command: "set mode draft", reason: "no decoder at \(vae): the path does not exist")
        }
    }

    /// `final N`: history image N, made in draft mode, again with the user's own settings and its seed.
    func renderFinal(_ argument: String) throws {
        guard !history.images.isEmpty else {
            throw ScriptError.notReady(command: "final", reason: "no image yet; make drafts with 'set mode draft' and 'gen' first")
        }
        guard let number = Int(argument.trimmingCharacters(in: .whitespaces)), history.images.indices.contains(number - 1) else {
            throw ScriptError.badArgument(command: "final", argument: argument,
                                          reason: "expected the number of an image of this session (1 to \(history.images.count)), got", suggestion: nil)
        }
        guard var request = history.images[number - 1].finalRequest else {
            throw ScriptError.notReady(command: "final", reason: "image \(number) was not made in draft mode ('set mode draft'); it is final already")
        }
        var own = settings
        own.resources.draft = nil
        // From the choice now, as a replay sees it: under `auto` the draft recorded `set precision
        // bf16`, and the line recorded here (fp32) is what sets a replay's `final` back.
        request.engine.precision = settledPrecision(settings.request.precision, drafting: false)
        history.startBatch()
        try render(request, base: request.engine.seed, settings: own, own: nil, command: "final")
    }
}
