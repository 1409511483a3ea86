import Foundation

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
    /// A canonical sampler name from `Samplers.canonical` (`pndm`, `euler-a`, …).
    public var sampler: String
    /// 1 uses CLIP's last layer; 2 the one before it (A1111's "Clip skip").
    public var clipSkip: Int
    /// The model path the user asked for, or nil for discovery.
    public var model: String?

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

/// `set memory auto|low|fast`: a load option for the engine, not part of the recipe.
public enum MemoryMode: String, CaseIterable, Sendable {
    case auto, low, fast
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

    public init() {}

    /// The request for one image, before the style is applied.
    public func request(seed: UInt64) -> GenerationSettings {
        GenerationSettings(prompt: prompt, negative: negative, style: style, seed: seed, steps: steps, cfg: cfg,
                           width: width, height: height, sampler: sampler, clipSkip: clipSkip, model: model)
    }
}

/// The sampler names sdrepl accepts: canonical names, plus A1111's and diffusers' spellings.
public enum Samplers {
    /// Canonical names, in the order `help set` lists them.
    public static let canonical = ["pndm", "ddim", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras", "lcm"]

    /// A1111's display name for each canonical name (used in infotext).
    public static let a1111Names: [String: String] = [
        "pndm": "PLMS", "ddim": "DDIM", "euler": "Euler", "euler-a": "Euler a",
        "dpmpp-2m": "DPM++ 2M", "dpmpp-2m-karras": "DPM++ 2M Karras", "lcm": "LCM",
    ]

    /// Other spellings, compared after `normalize`.
    static let aliases: [String: String] = [
        "plms": "pndm", "eulerancestral": "euler-a", "keulera": "euler-a", "keuler": "euler",
        "kdpmpp2m": "dpmpp-2m", "dpmpp2mkarras": "dpmpp-2m-karras", "kdpmpp2mkarras": "dpmpp-2m-karras",
        "dpmsolvermultistep": "dpmpp-2m", "pndmscheduler": "pndm", "ddimscheduler": "ddim",
        "eulerdiscrete": "euler", "eulerancestraldiscrete": "euler-a", "lcmscheduler": "lcm",
    ]

    /// Every name completion offers: canonical names first, then A1111's.
    public static var completions: [String] { canonical + canonical.compactMap { a1111Names[$0] } }

    /// The canonical name for `name` ("Euler a", "DPM++ 2M Karras", "PLMS", "euler_a" …), or nil.
    public static func canonicalName(_ name: String) -> String? {
        let key = normalize(name)
        if let match = canonical.first(where: { normalize($0) == key }) { return match }
        return aliases[key]
    }

    /// Lowercased, "++" read as "pp", blanks, "-", "_" and "." dropped.
    static func normalize(_ name: String) -> String {
        name.lowercased().replacingOccurrences(of: "++", with: "pp")
            .filter { !" -_.".contains($0) }
    }
}
