import Foundation

// The narrow interfaces through which the session reaches the engine, the image files, the styles,
// the model store and the terminal. The REPL is written against these only; the executable plugs in
// the real implementations (Diffusion's pipeline, Imaging's PNG/JPEG/styles, ModelStore's discovery).

/// 8-bit RGB pixels, row-major, no padding: `rgb.count == width * height * 3`.
public struct RGBPixels: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var rgb: [UInt8]

    public init(width: Int, height: Int, rgb: [UInt8]) {
        precondition(rgb.count == width * height * 3, "RGBPixels: \(rgb.count) bytes for \(width)x\(height)")
        self.width = width
        self.height = height
        self.rgb = rgb
    }
}

/// Progress after one sampler step.
public struct StepProgress: Sendable {
    /// 1-based step just finished.
    public var step: Int
    public var total: Int
    /// Seconds since this image's generation started.
    public var elapsed: Double
    /// Estimated seconds left for this image, if the engine knows.
    public var eta: Double?
    /// A small decoded preview of the current latents, when the engine makes one.
    public var preview: RGBPixels?

    public init(step: Int, total: Int, elapsed: Double, eta: Double? = nil, preview: RGBPixels? = nil) {
        self.step = step
        self.total = total
        self.elapsed = elapsed
        self.eta = eta
        self.preview = preview
    }
}

/// One finished image and the engine's description of how it was made.
public struct GeneratedImage: Sendable {
    public var pixels: RGBPixels
    /// The recipe as text (A1111 infotext layout), for `show` and the saved file's metadata.
    public var recipe: String

    public init(pixels: RGBPixels, recipe: String) {
        self.pixels = pixels
        self.recipe = recipe
    }
}

/// A loaded model that turns requests into images. The session loads one on first use and keeps it.
public protocol ImageGenerator: AnyObject {
    /// Generates one image.
    ///
    /// - Parameters:
    ///   - settings: the resolved request: style already applied, a concrete seed.
    ///   - progress: called after each sampler step, on the calling thread.
    ///   - isCancelled: polled by the engine (at least once per step); when it returns true the engine
    ///     stops and throws (any error: the session reports a cancellation when the flag is set).
    /// - Returns: the RGB8 image, `settings.width` x `settings.height`, and its recipe.
    /// - Throws: on cancellation, or when generation fails (the message is shown to the user).
    func generate(_ settings: GenerationSettings, progress: (StepProgress) -> Void,
                  isCancelled: () -> Bool) throws -> GeneratedImage

    /// The token count and the 75-token chunks of `prompt`, as text for the `tokens` command.
    func tokenReport(prompt: String) throws -> String
}

/// Loads a generator for a model found by the `ModelCatalog`.
public protocol GeneratorLoader {
    /// Loads the model at `model` (a `.safetensors` file or a diffusers folder).
    /// - Throws: when the model cannot be read; the message is shown to the user.
    func load(model: ModelLocation, memory: MemoryMode) throws -> ImageGenerator
}

/// A model found on disk.
public struct ModelLocation: Equatable, Sendable {
    public var path: String
    /// How it was found ("--model", "$SDREPL_MODEL", "./models", "HF cache"), for messages.
    public var source: String

    public init(path: String, source: String) {
        self.path = path
        self.source = source
    }
}

/// The outcome of model discovery.
public enum ModelLookup: Equatable, Sendable {
    case found(ModelLocation)
    /// Nothing found: each place searched, in order, with what was missing there.
    case notFound(searched: [String])
}

/// Finds, lists and fetches checkpoints (issue 9). `BasicModelSearch` is the built-in one.
public protocol ModelCatalog {
    /// Discovery: `explicit` (`model PATH`/`--model PATH`) first, then the other places in order.
    func locate(explicit: String?) -> ModelLookup
    /// One line per model found, for `models`.
    func listing() -> [String]
    /// `model download [REPO FILE]`; returns the path of the downloaded file.
    /// - Throws: `ScriptError.unavailable` when this build cannot download.
    func download(arguments: [String], report: (String) -> Void) throws -> String
    /// What to tell a user who has no model, one line per suggestion.
    var advice: [String] { get }
}

/// Writes images to files with their recipes (issue 7).
public protocol ImageSaver {
    /// Writes `image`.
    ///
    /// - Parameters:
    ///   - path: the exact file to write (`.png` or `.jpg`), or nil for both a PNG and a JPEG in
    ///     `directory`, named from the timestamp, seed and prompt.
    ///   - settings: the resolved request, for the metadata.
    /// - Returns: the paths written.
    /// - Throws: with a message naming the file when it cannot be written; nothing partial is left.
    func save(_ image: GeneratedImage, settings: GenerationSettings, to path: String?, directory: String,
              jpegQuality: Int) throws -> [String]
}

/// The recipe read back from an image file (ours or A1111's): every field the file had.
public struct ImageRecipe: Equatable, Sendable {
    public var prompt: String?
    public var negative: String?
    public var seed: UInt64?
    public var steps: Int?
    public var cfg: Float?
    public var width: Int?
    public var height: Int?
    /// Any spelling `Samplers.canonicalName` understands.
    public var sampler: String?
    public var style: String?
    /// Everything, as text, for `sdrepl info`.
    public var text: String

    public init(prompt: String? = nil, negative: String? = nil, seed: UInt64? = nil, steps: Int? = nil,
                cfg: Float? = nil, width: Int? = nil, height: Int? = nil, sampler: String? = nil,
                style: String? = nil, text: String = "") {
        self.prompt = prompt
        self.negative = negative
        self.seed = seed
        self.steps = steps
        self.cfg = cfg
        self.width = width
        self.height = height
        self.sampler = sampler
        self.style = style
        self.text = text
    }
}

/// Reads recipes back from PNG/JPEG files (`load FILE`, `sdrepl info FILE`).
public protocol RecipeReader {
    func recipe(at path: String) throws -> ImageRecipe
}

/// The prompt styles (issue 7): built-in presets plus a user `styles.csv`.
public protocol StyleBook: AnyObject {
    /// Every style name, `none` first.
    var names: [String] { get }
    /// One line per style for the `styles` command.
    func listing() -> [String]
    /// The prompt and negative with `style` applied, or nil for an unknown style.
    func apply(_ style: String, prompt: String, negative: String) -> (prompt: String, negative: String)?
    /// Adds the styles of an A1111-format `styles.csv` (`set styles FILE`).
    func load(csv path: String) throws
}

/// Where the session's output goes: the terminal in the executable, a buffer in tests.
public protocol SessionIO: AnyObject {
    /// A line of normal output (stdout).
    func output(_ line: String)
    /// A line of diagnostics (stderr).
    func diagnostic(_ line: String)
    /// Progress of image `index` (1-based) of `count` in this `gen`; `mode` says whether the engine's
    /// small preview (`progress.preview`) may be drawn.
    func progress(_ progress: StepProgress, index: Int, count: Int, mode: PreviewMode)
    /// The progress of the current image is over (clear the bar).
    func progressDone()
    /// Shows `image` inline if `mode` and the terminal allow it; returns whether it drew anything.
    @discardableResult func display(_ image: RGBPixels, mode: PreviewMode) -> Bool
    /// What `preview auto` resolves to here, for the `set` listing ("sixel", "off: stdout is not a terminal").
    func previewStatus(_ mode: PreviewMode) -> String
    /// True once the user pressed Ctrl-C during the current generation.
    var isInterrupted: Bool { get }
    /// Forgets an earlier Ctrl-C; called as each generation starts.
    func clearInterrupt()
}

/// The parts the session is built from. Only `models` and `styles` have built-in implementations;
/// the others are nil until the engine and the Imaging module are wired in, and the commands that
/// need them say so.
public struct Components {
    public var generatorLoader: GeneratorLoader?
    public var models: ModelCatalog
    public var styles: StyleBook
    public var saver: ImageSaver?
    public var recipes: RecipeReader?

    public init(generatorLoader: GeneratorLoader? = nil, models: ModelCatalog = BasicModelSearch(),
                styles: StyleBook = PlainStyleBook(), saver: ImageSaver? = nil, recipes: RecipeReader? = nil) {
        self.generatorLoader = generatorLoader
        self.models = models
        self.styles = styles
        self.saver = saver
        self.recipes = recipes
    }
}
