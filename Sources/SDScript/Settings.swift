import Diffusion
import Foundation
import Imaging

/// One generation's request as the engine sees it: everything that decides the pixels.
///
/// The session hands the generator a *resolved* value: the style already applied to `prompt` and
/// `negative` (`style` names it, for the recipe only) and a concrete `seed`.
public struct GenerationSettings: Codable, Equatable, Sendable {
    public var prompt: String
    public var negative: String
    /// The style that was applied, recorded in the recipe; `none` means the prompt is used as typed.
    public var style: String
    public var seed: UInt64
    public var steps: Int
    public var cfg: Float
    public var width: Int
    public var height: Int
    /// A canonical sampler name, `Sampler.rawValue` (`pndm`, `euler-a`, …).
    public var sampler: String
    /// 1 uses CLIP's last layer; 2 the one before it (A1111's "Clip skip").
    public var clipSkip: Int
    /// The model path the user asked for, or nil for discovery.
    public var model: String?
    /// The prompt and negative as typed, when the style changed them (nil: `prompt`/`negative` are as typed).
    public var typedPrompt: String?
    public var typedNegative: String?

    public init(prompt: String = "", negative: String = "", style: String = "none", seed: UInt64 = 0,
                steps: Int = 25, cfg: Float = 7.5, width: Int = 512, height: Int = 512,
                sampler: String = "pndm", clipSkip: Int = 1, model: String? = nil) {
        self.prompt = prompt
        self.negative = negative
        self.style = style
        self.seed = seed
        self.steps = steps
        self.cfg = cfg
        self.width = width
        self.height = height
        self.sampler = sampler
        self.clipSkip = clipSkip
        self.model = model
    }
}

/// `seed N` or `seed random` (a fresh seed drawn for each `gen`).
public enum SeedMode: Equatable, Sendable {
    case fixed(UInt64)
    case random
}

/// `set preview auto|sixel|off`.
public enum PreviewMode: String, CaseIterable, Sendable {
    /// Sixel when the terminal answers the DA1 query with attribute 4, and stdout is a terminal.
    case auto
    case sixel
    case off
}

/// Everything `set` can change, with the defaults of issue 6.
public struct SessionSettings: Equatable, Sendable {
    public var prompt = ""
    public var negative = ""
    public var style = "none"
    public var seed: SeedMode = .random
    public var steps = 25
    public var cfg: Float = 7.5
    public var width = 512
    public var height = 512
    public var sampler = "pndm"
    /// Images per `gen` when no count is given.
    public var batch = 1
    public var model: String?
    public var clipSkip = 1
    public var preview: PreviewMode = .auto
    public var outdir = "generated_images"
    public var memory: MemoryMode = .auto
    /// A user `styles.csv` (A1111 format), or nil for the built-in presets only.
    public var stylesFile: String?
    public var jpegQuality = 92
    /// Whether `gen` saves each image at once (as `save` would).
    public var autosave = true
    /// Where `<lora:NAME>` looks first; nil for the default folders only (`Session.loraDirectories`).
    public var loraDir: String?
    /// Where textual-inversion embeddings are looked for first; nil for the defaults only.
    public var embeddingsDir: String?

    public init() {}

    /// The request for one image, before the style is applied.
    public func request(seed: UInt64) -> GenerationSettings {
        GenerationSettings(prompt: prompt, negative: negative, style: style, seed: seed, steps: steps, cfg: cfg,
                           width: width, height: height, sampler: sampler, clipSkip: clipSkip, model: model)
    }
}

/// Sampler names as the session reads them: the engine's `Sampler(name:)` (canonical names, A1111's
/// and diffusers' spellings), then A1111's infotext names with a separate schedule type.
enum SamplerNames {
    /// Every name completion offers: the canonical names, then A1111's display names.
    static var completions: [String] { Sampler.allCases.map(\.rawValue) + A1111SamplerName.table.map(\.name) }

    /// The canonical name (`Sampler.rawValue`) for `name`, or nil.
    static func canonical(_ name: String) -> String? {
        if let sampler = try? Sampler(name: name) { return sampler.rawValue }
        return A1111SamplerName.samplerID(forDisplayName: name)
    }
}
