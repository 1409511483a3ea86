/// The recipe of one image as A1111's infotext records it: what the model was given and how it
/// sampled. Rendered and parsed by `Infotext`.
///
/// `prompt` and `negativePrompt` are the texts the model saw, with any style already applied
/// (A1111 writes them that way too), so the recipe alone regenerates the image with style `none`.
/// `style` only names the style that was applied, for people reading the text.
public struct ImageRecipe: Equatable, Sendable {
    /// One `Key: value` pair of the parameters line, unquoted.
    public struct Field: Equatable, Sendable {
        public var key: String
        public var value: String
        public init(_ key: String, _ value: String) {
            self.key = key
            self.value = value
        }
    }

    public var prompt: String
    public var negativePrompt: String
    public var steps: Int?
    /// A1111's display name, e.g. `Euler a`, `DPM++ 2M Karras` (see `A1111SamplerName`).
    public var sampler: String?
    public var cfgScale: Double?
    public var seed: UInt64?
    public var width: Int?
    public var height: Int?
    /// First 10 hex digits of the checkpoint file's SHA-256 (A1111's short hash).
    public var modelHash: String?
    public var modelName: String?
    /// CLIP layers skipped counted A1111's way (1 = last layer, the default; written only when > 1).
    public var clipSkip: Int
    /// Name of the style applied to the prompts; written as `Style` unless nil or `none`.
    public var style: String?
    /// Program and version, e.g. `sdrepl 0.1.0`; written last, as A1111 does.
    public var version: String?
    /// Any other parameters, in order, written before `Version`; parsing puts unknown keys here.
    public var extra: [Field]

    public init(
        prompt: String, negativePrompt: String = "", steps: Int? = nil, sampler: String? = nil,
        cfgScale: Double? = nil, seed: UInt64? = nil, width: Int? = nil, height: Int? = nil,
        modelHash: String? = nil, modelName: String? = nil, clipSkip: Int = 1, style: String? = nil,
        version: String? = nil, extra: [Field] = []
    ) {
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.steps = steps
        self.sampler = sampler
        self.cfgScale = cfgScale
        self.seed = seed
        self.width = width
        self.height = height
        self.modelHash = modelHash
        self.modelName = modelName
        self.clipSkip = clipSkip
        self.style = style
        self.version = version
        self.extra = extra
    }

    /// The value of an extra field, if present.
    public func extra(_ key: String) -> String? {
        extra.first { $0.key == key }?.value
    }

    /// sdrepl's sampler id (`pndm`, `euler-a`, ...) for `sampler`, taking A1111 1.9+'s separate
    /// `Schedule type` field into account; nil for samplers sdrepl does not have.
    public var samplerID: String? {
        sampler.flatMap { A1111SamplerName.samplerID(forDisplayName: $0, scheduleType: extra("Schedule type")) }
    }
}

/// sdrepl's sampler ids and the names A1111 gives the same methods in its infotext.
///
/// Karras variants are written in the combined legacy form, `Sampler: DPM++ 2M Karras`, not as
/// A1111 1.9+'s `Sampler: DPM++ 2M, Schedule type: Karras`: A1111 1.9+ still reads the combined
/// form (`sd_samplers.get_sampler_and_scheduler` strips a trailing scheduler label from the sampler
/// name), and civitai and older prompt readers only know the combined names. Both forms are read.
///
/// diffusers' `PNDMScheduler` with SD1.5's `skip_prk_steps: true` runs only the linear multistep
/// part of PNDM, which is the method A1111 (after the original CompVis code) calls `PLMS`.
public enum A1111SamplerName {
    /// (sdrepl id, A1111 display name), in the order `sampler` lists them.
    public static let table: [(id: String, name: String)] = [
        ("pndm", "PLMS"),
        ("ddim", "DDIM"),
        ("euler", "Euler"),
        ("euler-a", "Euler a"),
        ("dpmpp-2m", "DPM++ 2M"),
        ("dpmpp-2m-karras", "DPM++ 2M Karras"),
        ("lcm", "LCM"),
    ]

    /// The A1111 display name for an sdrepl sampler id, or nil if the id is unknown.
    public static func displayName(forSamplerID id: String) -> String? {
        table.first { $0.id == id.lowercased() }?.name
    }

    /// The sdrepl sampler id for an A1111 sampler name (case-insensitive; `PNDM` and sdrepl's own
    /// ids are accepted too). A `scheduleType` other than `Automatic` is appended to the name
    /// first, so `DPM++ 2M` + `Karras` gives `dpmpp-2m-karras`.
    public static func samplerID(forDisplayName name: String, scheduleType: String? = nil) -> String? {
        var full = name.trimmingCharacters(in: .whitespaces)
        if let schedule = scheduleType?.trimmingCharacters(in: .whitespaces), !schedule.isEmpty,
            schedule.lowercased() != "automatic", !full.lowercased().hasSuffix(" " + schedule.lowercased())
        {
            full += " " + schedule
        }
        let key = full.lowercased()
        if key == "pndm" { return "pndm" }
        return table.first { $0.name.lowercased() == key || $0.id == key }?.id
    }
}
