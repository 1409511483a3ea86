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
    /// A value runs to the next ` KEY=`, so names and paths may hold blanks.
    public var words: String {
        var parts = ["lora=\(lora):\(formatNumber(Float(weight)))", "sampler=\(sampler.rawValue)", "steps=\(steps)",
                     "cfg=\(formatNumber(cfg))", "spacing=\(spacing?.rawValue ?? "model")"]
        if sampler == .tcd { parts.append("eta=\(formatNumber(Float(eta)))") }
        if let vae { parts.append("vae=\(vae)") }
        return parts.joined(separator: " ")
    }

    static let keys = ["lora", "sampler", "steps", "cfg", "spacing", "eta", "vae"]

    /// Reads `words` back: each `KEY=` (at the start or after a blank) starts a value that runs to
    /// the next one.
    /// - Throws: `ScriptError.badArgument` naming the first part it cannot read.
    init(text: String) throws {
        func bad(_ argument: String, _ reason: String, _ suggestion: String? = nil) -> ScriptError {
            ScriptError.badArgument(command: "set mode draft", argument: argument, reason: reason, suggestion: suggestion)
        }
        let starts = text.ranges(of: #/(?:^|\s)[A-Za-z][A-Za-z_-]*=/#)
        let leading = text[..<(starts.first?.lowerBound ?? text.endIndex)].trimmingCharacters(in: .whitespaces)
        if !leading.isEmpty {
            throw bad(leading, "expected KEY=VALUE with KEY one of \(Self.keys.joined(separator: ", ")), got",
                      closestWord(to: String(leading.prefix { $0 != " " }), in: Self.keys))
        }
        var values: [String: String] = [:]
        for (index, start) in starts.enumerated() {
            let keyText = text[start].trimmingCharacters(in: .whitespaces).dropLast()
            let key = String(keyText).lowercased()
            let end = index + 1 < starts.count ? starts[index + 1].lowerBound : text.endIndex
            let value = text[start.upperBound..<end].trimmingCharacters(in: .whitespaces)
            guard Self.keys.contains(key) else {
                throw bad("\(keyText)=", "expected KEY=VALUE with KEY one of \(Self.keys.joined(separator: ", ")), got",
                          closestWord(to: key, in: Self.keys).map { $0 + "=" })
            }
            guard values[key] == nil else { throw bad("\(key)=\(value)", "\(key)= is given twice; keep one:") }
            values[key] = value
        }
        guard let loraWord = values["lora"], !loraWord.isEmpty else {
            throw bad(text.trimmingCharacters(in: .whitespaces), "a draft needs lora=NAME[:WEIGHT] (a few-step LoRA from 'loras'), got")
        }
        // The weight follows the name's last colon, as in `<lora:NAME:WEIGHT>`.
        if let colon = loraWord.lastIndex(of: ":"), let value = Double(loraWord[loraWord.index(after: colon)...]) {
            guard value.isFinite else { throw bad("lora=\(loraWord)", "the weight is not a finite number:") }
            lora = String(loraWord[..<colon]).trimmingCharacters(in: .whitespaces)
            weight = value
        } else {
            lora = loraWord
        }
        let samplerWord = values["sampler"] ?? "lcm"
        guard let sampler = try? Sampler(name: samplerWord) else {
            throw bad(samplerWord, "unknown sampler (\(Sampler.allCases.map(\.rawValue).joined(separator: ", "))):",
                      closestWord(to: samplerWord, in: Sampler.allCases.map(\.rawValue)))
        }
        self.sampler = sampler
        guard let steps = Int(values["steps"] ?? "4"), RequestLimits.steps.contains(steps) else {
            throw bad("steps=\(values["steps"] ?? "")", "expected a step count from \(RequestLimits.steps.lowerBound) to \(RequestLimits.steps.upperBound), got")
        }
        self.steps = steps
        guard let cfg = Float(values["cfg"] ?? "1"), RequestLimits.guidance.contains(cfg) else {
            throw bad("cfg=\(values["cfg"] ?? "")", "expected a guidance scale from \(formatNumber(RequestLimits.guidance.lowerBound)) to \(formatNumber(RequestLimits.guidance.upperBound)), got")
        }
        self.cfg = cfg
        let spacingWord = values["spacing"] ?? "model"
        let spacings = ["model"] + TimestepSpacing.allCases.map(\.rawValue)
        guard spacingWord == "model" || TimestepSpacing(rawValue: spacingWord) != nil else {
            throw bad(spacingWord, "unknown spacing (\(spacings.joined(separator: ", "))):", closestWord(to: spacingWord, in: spacings))
        }
        spacing = TimestepSpacing(rawValue: spacingWord)
        guard let eta = Double(values["eta"] ?? "0.3"), (0...1).contains(eta) else {
            throw bad("eta=\(values["eta"] ?? "")", "expected eta from 0 to 1, got")
        }
        self.eta = eta
        // `vae=none`: the model's own VAE, as `set vae none`; no `vae=`: the decoder in use.
        vae = values["vae"].map { $0.lowercased() == "none" ? Self.modelVAE : $0 }
    }

    /// `vae=none`: decode drafts with the model's own VAE.
    static let modelVAE = "none"

    init(lora: String, sampler: Sampler, steps: Int, cfg: Float, spacing: TimestepSpacing?, vae: String?) {
        (self.lora, self.sampler, self.steps, self.cfg, self.spacing, self.vae) = (lora, sampler, steps, cfg, spacing, vae)
    }

    /// Whether `prompt` has a tag of this LoRA already (a loaded draft's prompt): its own weight stands,
    /// since a second tag would add the LoRA twice.
    func isTagged(in prompt: String) -> Bool {
        (try? ExtraNetworks.parse(prompt))?.loras.contains { $0.name == lora } ?? false
    }

    /// `request` with the LoRA's tag added to its prompt (unless it has one) and the preset's sampling.
    func applied(to request: StyledRequest) -> StyledRequest {
        var out = request
        if !isTagged(in: out.engine.prompt) {
            let tag = " <lora:\(lora):\(formatNumber(Float(weight)))>"
            out.engine.prompt += tag
            if let typed = out.typedPrompt { out.typedPrompt = typed + tag }
        }
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
