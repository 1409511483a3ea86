import FileErrors
import Diffusion
import Foundation

/// `set mode draft|final` and `final N`: explore with a few-step LoRA and TAESD, then render the
/// chosen picture with the user's own settings and the same seed.
extension Session {
    /// The LoRAs of the LoRA folders with their files: the file each name finds, as `<lora:NAME>` does.
    private func loraFiles() -> [(name: String, file: URL)] {
        let folders = loraDirectories()
        return LoRALibrary.names(in: folders).compactMap { name in (try? LoRALibrary.locate(name, in: folders)).map { (name, $0) } }
    }

    /// `set mode VALUE`: `final`; `draft` (the best few-step LoRA found, TAESD when there is one); or
    /// `draft KEY=VALUE…` as the transcript records it. The transcript gets the explicit form.
    func setMode(_ value: String) throws {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        let first = trimmed.prefix { !$0.isWhitespace }, rest = trimmed.dropFirst(first.count)
        switch first.lowercased() {
        case "final":
            guard rest.allSatisfy(\.isWhitespace) else {
                throw ScriptError.unexpectedArgument(command: "set mode final", argument: rest.trimmingCharacters(in: .whitespaces))
            }
            settings.resources.draft = nil
            log.line.replay = "set mode final"
        case "draft" where !rest.allSatisfy(\.isWhitespace):
            var preset = try DraftPreset(text: String(rest))
            // `vae=NAME` as `set vae NAME` takes it: a name from 'vaes', kept as its file's path.
            if let vae = preset.vae, vae != DraftPreset.modelVAE, !FileManager.default.fileExists(atPath: vae.expandingTilde),
               let entry = VAELibrary.locate(vae, in: generation.vaeEntries(settings.resources)) {
                preset.vae = entry.url.path
            }
            try checkDraftFiles(preset)
            settings.resources.draft = preset
            log.line.replay = "set mode draft " + preset.words
        case "draft":
            try chooseDraft()
        case "":
            throw ScriptError.missingArgument(command: "set mode", usage: "set mode draft|final")
        default:
            throw ScriptError.badArgument(command: "set mode", argument: trimmed, reason: "expected draft or final, got",
                                          suggestion: closestWord(to: String(first), in: ["draft", "final"]))
        }
    }

    /// `set mode draft`: the best few-step LoRA of the LoRA folders that fits an SD1.x model, and the
    /// first TAESD that decodes for the model.
    private func chooseDraft() throws {
        var skipped: [String] = []
        var taesd = generation.previewTAESD(settings.resources)
        if let found = taesd, let problem = decoderProblem(found) {
            skipped.append("\(found.lastPathComponent) (\(problem))")
            taesd = nil
        }
        // A file named like a few-step LoRA for another model (lcm-lora-sdxl) is skipped, saying why.
        let usable = loraFiles().filter { lora in
            guard DraftPreset.recognise(lora.file.pathComponents.suffix(4).joined(separator: "/")) != nil else { return true }
            do {
                _ = try LoRAFile(url: lora.file)
                return true
            } catch {
                // Hugging Face snapshots all share one file name, and the name finds only the first.
                let others = LoRALibrary.files(in: loraDirectories()).filter { $0.name == lora.name }.count - 1
                skipped.append("\(lora.name) (\(error))" + (others > 0 ? "; files of the same name are hidden by it: rename them to use them" : ""))
                return false
            }
        }
        guard let (kind, preset) = DraftPreset.best(among: usable, taesd: taesd) else {
            throw ScriptError.unavailable(command: "set mode draft", reason: "no few-step LoRA for SD1.5 (LCM, TCD, Hyper-SD or PCM by its file name) in "
                + loraDirectories().map(\.path).joined(separator: ", ")
                + (skipped.isEmpty ? "" : " (skipped: " + skipped.joined(separator: "; ") + ")")
                + ": get one, e.g. 'model download latent-consistency/lcm-lora-sdv1-5 "
                + "pytorch_lora_weights.safetensors' and copy that file to models/Lora/lcm-lora-sdv1-5.safetensors"
                + (taesd == nil ? "; for fast decoding too, 'model download madebyollin/taesd taesd_decoder.safetensors' into models/VAE-taesd" : ""))
        }
        settings.resources.draft = preset
        log.line.replay = "set mode draft " + preset.words
        for reason in skipped { io.output("draft: skipped \(reason)") }
        io.output("draft: \(kind) \(preset.words)")
        if taesd == nil {
            io.output("draft: no usable TAESD in " + generation.taesdDirectories(settings.resources).map(\.path).joined(separator: ", ")
                      + ", so drafts decode with the full VAE; 'model download madebyollin/taesd taesd_decoder.safetensors' "
                      + "and copy it to models/VAE-taesd for a decode about 18 times cheaper")
        }
    }

    /// The preset's LoRA and decoder exist and fit (a replayed transcript may name files that moved).
    private func checkDraftFiles(_ preset: DraftPreset) throws {
        do {
            _ = try LoRAFile(url: LoRALibrary.locate(preset.lora, in: loraDirectories()))
        } catch {
            throw ScriptError.unavailable(command: "set mode draft", reason: "\(error)")
        }
        guard let vae = preset.vae, vae != DraftPreset.modelVAE else { return }
        let url = URL(fileURLWithPath: vae.expandingTilde)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw ScriptError.unavailable(command: "set mode draft", reason: "no decoder at \(vae): the path does not exist")
        }
        if let problem = decoderProblem(url) {
            throw ScriptError.unavailable(command: "set mode draft", reason: "vae=\(vae): " + problem)
        }
    }

    /// `final N`: history image N, made in draft mode, again with the user's own settings and its seed.
    func renderFinal(_ argument: String) throws {
        guard !history.images.isEmpty else {
            throw ScriptError.notReady(command: "final", reason: "no image yet; make drafts with 'set mode draft' and 'gen' first")
        }
        let word = argument.trimmingCharacters(in: .whitespaces)
        guard let number = isLastImage(word) ? history.images.count : Int(word), history.images.indices.contains(number - 1) else {
            throw ScriptError.badArgument(command: "final", argument: argument,
                                          reason: "expected the number of an image of this session (1 to \(history.images.count)) or last, got", suggestion: nil)
        }
        log.line.replay = "final \(number)"
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
