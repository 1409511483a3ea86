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
    /// A1111's display name, e.g. `Euler a`, `DPM++ 2M Karras` (the engine's `Sampler` table reads it;
    /// A1111 1.9+ may add a separate `Schedule type` field).
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
}
