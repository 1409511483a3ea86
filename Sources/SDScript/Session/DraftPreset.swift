import Diffusion
import Foundation

/// What `set mode draft` renders with: a few-step LoRA and the sampler, steps, guidance and spacing
/// it was distilled for, and a TAESD decoder. The user's own settings stay as they are (they are
/// the "final" settings); a draft only overrides them in the request it sends.
public struct DraftPreset: Equatable, Sendable {
    /// The LoRA's name for `<lora:NAME:WEIGHT>`, and what kind of few-step LoRA it is.
    public var lora: String
    public var weight: Double = 1
    public var sampler: Sampler
    public var steps: Int
    public var cfg: Float
    /// nil: the model's scheduler config's.
    public var spacing: TimestepSpacing?
    public var eta: Double = 0.3
    /// A TAESD decoder (or any decoder `set vae` takes); nil: the decoder in use.
    public var vae: String?

    /// The recipe of each kind, by what its file name says, from each model card: LCM-LoRA
    /// (`LCMScheduler`, 4 steps, guidance 1), TCD (`TCDScheduler`, eta 0.3), Hyper-SD and PCM (DDIM
    /// with `trailing` spacing, the steps the file was distilled for; their CFG variants keep guidance).
    static func recognise(_ path: String) -> (kind: String, preset: (Sampler, Int, Float, TimestepSpacing?))? {
        let name = path.lowercased()
        let steps = Self.steps(in: name)
        if name.contains("lcm") { return ("LCM-LoRA", (.lcm, 4, 1, nil)) }
        if name.contains("tcd") { return ("TCD-LoRA", (.tcd, 4, 1, nil)) }
        if name.contains("hyper") {
            return ("Hyper-SD", (.ddim, steps ?? 8, name.contains("cfg") ? 5 : 1, .trailing))
        }
        if name.contains("pcm") {
            return ("PCM", (.ddim, steps ?? 4, name.contains("normalcfg") ? 5 : 1, .trailing))
        }
        return nil
    }

    /// The step count in `2step`, `8steps`, `4-step`.
    private static func steps(in name: String) -> Int? {
        guard let range = name.range(of: #"[0-9]+[-_]?steps?"#, options: .regularExpression) else { return nil }
        return Int(name[range].prefix(while: \.isNumber))
    }

    /// The few-step LoRA to draft with among `loras` (name, file): LCM first, then TCD, Hyper-SD, PCM,
    /// and of several of a kind the one nearest 4 steps.
    static func best(among loras: [(name: String, file: URL)], taesd: URL?) -> (kind: String, preset: DraftPreset)? {
        let kinds = ["LCM-LoRA", "TCD-LoRA", "Hyper-SD", "PCM"]
        let found = loras.compactMap { lora -> (String, DraftPreset)? in
            // The file's folders count too: an HF cache snapshot names the repository, not the file.
            let path = lora.file.pathComponents.suffix(4).joined(separator: "/")
            guard let (kind, (sampler, steps, cfg, spacing)) = recognise(path) else { return nil }
            return (kind, DraftPreset(lora: lora.name, sampler: sampler, steps: steps, cfg: cfg, spacing: spacing, vae: taesd?.path))
        }
        return found.min { a, b in
            let (ka, kb) = (kinds.firstIndex(of: a.0) ?? 9, kinds.firstIndex(of: b.0) ?? 9)
            return ka != kb ? ka < kb : abs(a.1.steps - 4) < abs(b.1.steps - 4)
        }
    }

    /// `lora=NAME:1 sampler=lcm steps=4 cfg=1 spacing=model eta=0.3 vae=PATH`: everything explicit, as
    /// the transcript records it, so a replay does not depend on what `set mode draft` would pick.
    public var words: String {
        var parts = ["lora=\(lora):\(formatNumber(Float(weight)))", "sampler=\(sampler.rawValue)", "steps=\(steps)",
                     "cfg=\(formatNumber(cfg))", "spacing=\(spacing?.rawValue ?? "model")"]
        if sampler == .tcd { parts.append("eta=\(formatNumber(Float(eta)))") }
        if let vae { parts.append("vae=\(vae)") }  // last: `init(words:)` reads it to the end of the line
        return parts.joined(separator: " ")
    }

    /// Reads `words` back.
    /// - Throws: `ScriptError.badArgument` naming the first word it cannot read.
    init(words: [String]) throws {
        var values: [String: String] = [:]
        for (index, word) in words.enumerated() {
            let pair = word.split(separator: "=", maxSplits: 1).map(String.init)
            // `vae=` is written last and takes the rest of the line: a path may hold blanks.
            if pair.count == 2, pair[0] == "vae" {
                values["vae"] = ([pair[1]] + words[(index + 1)...]).joined(separator: " ")
                break
            }
            let keys = ["lora", "sampler", "steps", "cfg", "spacing", "eta", "vae"]
            guard pair.count == 2, keys.contains(pair[0]) else {
                throw ScriptError.badArgument(command: "set mode", argument: word, reason: "expected KEY=VALUE with KEY one of \(keys.joined(separator: ", ")), got",
                                              suggestion: closestWord(to: String(word.prefix { $0 != "=" }), in: keys))
            }
            values[pair[0]] = pair[1]
        }
        func bad(_ key: String, _ reason: String) -> ScriptError {
            ScriptError.badArgument(command: "set mode", argument: "\(key)=\(values[key] ?? "")", reason: reason, suggestion: nil)
        }
        guard let loraWord = values["lora"], !loraWord.isEmpty else { throw bad("lora", "a draft needs lora=NAME[:WEIGHT]") }
        let loraParts = loraWord.split(separator: ":").map(String.init)
        lora = loraParts[0]
        if loraParts.count > 1 {
            guard let value = Double(loraParts[1]) else { throw bad("lora", "the weight is not a number") }
            weight = value
        }
        guard let sampler = try? Sampler(name: values["sampler"] ?? "lcm") else { throw bad("sampler", "unknown sampler") }
        self.sampler = sampler
        guard let steps = Int(values["steps"] ?? "4"), RequestLimits.steps.contains(steps) else { throw bad("steps", "not a step count") }
        self.steps = steps
        guard let cfg = Float(values["cfg"] ?? "1"), RequestLimits.guidance.contains(cfg) else { throw bad("cfg", "not a guidance scale") }
        self.cfg = cfg
        let spacingWord = values["spacing"] ?? "model"
        guard spacingWord == "model" || TimestepSpacing(rawValue: spacingWord) != nil else { throw bad("spacing", "unknown spacing") }
        spacing = TimestepSpacing(rawValue: spacingWord)
        guard let eta = Double(values["eta"] ?? "0.3"), (0...1).contains(eta) else { throw bad("eta", "not 0 to 1") }
        self.eta = eta
        vae = values["vae"]
    }

    init(lora: String, sampler: Sampler, steps: Int, cfg: Float, spacing: TimestepSpacing?, vae: String?) {
        (self.lora, self.sampler, self.steps, self.cfg, self.spacing, self.vae) = (lora, sampler, steps, cfg, spacing, vae)
    }

    /// `request` with the LoRA's tag added to its prompt and the preset's sampling.
    func applied(to request: StyledRequest) -> StyledRequest {
        var out = request
        let tag = " <lora:\(lora):\(formatNumber(Float(weight)))>"
        out.engine.prompt += tag
        if let typed = out.typedPrompt { out.typedPrompt = typed + tag }
        out.engine.sampler = sampler
        out.engine.steps = steps
        out.engine.guidanceScale = cfg
        out.engine.spacing = spacing
        out.engine.eta = eta
        // A draft is for choosing: the second pass waits for the final render.
        out.engine.hires = nil
        out.hiresSize = nil
        return out
    }
}
