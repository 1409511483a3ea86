import Diffusion
import Foundation
import Imaging

// The narrow interfaces through which the session reaches the engine, the image files, the styles,
// the model store and the terminal. The REPL is written against these only; the executable plugs in
// the real implementations (Diffusion's pipeline, Imaging's PNG/JPEG/styles, ModelStore's discovery).

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
    public var preview: RGBImage?

    public init(step: Int, total: Int, elapsed: Double, eta: Double? = nil, preview: RGBImage? = nil) {
        self.step = step
        self.total = total
        self.elapsed = elapsed
        self.eta = eta
        self.preview = preview
    }
}

/// One finished image and the engine's description of how it was made.
public struct GeneratedImage: Sendable {
    public var pixels: RGBImage
    /// The recipe as text (A1111 infotext layout), for `show` and the saved file's metadata.
    public var recipe: String
    /// The checkpoint, for the saved recipe's model name and hash (nil from test doubles).
    public var model: ModelIdentity?
    /// The LoRAs the prompt's `<lora:NAME>` tags applied: each name and its file, for A1111's
    /// `Lora hashes`.
    public var loras: [(name: String, file: URL)]

    public init(pixels: RGBImage, recipe: String, model: ModelIdentity? = nil, loras: [(name: String, file: URL)] = []) {
        self.pixels = pixels
        self.recipe = recipe
        self.model = model
        self.loras = loras
    }
}

/// A loaded model that turns requests into images. The session loads one on first use and keeps it.
public protocol ImageGenerator: AnyObject {
    /// Where `<lora:NAME>` tags of the next requests look for their files, in order.
    func useLoRADirectories(_ directories: [URL])
    /// Where the next requests' textual-inversion embeddings are found, in order.
    func useEmbeddingDirectories(_ directories: [URL])

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

    /// Warnings to show once, when the model has loaded (tensors of the checkpoint no model part took).
    var loadWarnings: [String] { get }

    /// The token count and the 75-token chunks of `prompt` (of each of its texts, when prompt editing
    /// changes it during the `steps`), as text for the `tokens` command.
    func tokenReport(prompt: String, steps: Int) throws -> String
}

extension ImageGenerator {
    /// A generator without LoRA or embedding support ignores the folders.
    public func useLoRADirectories(_ directories: [URL]) {}
    public func useEmbeddingDirectories(_ directories: [URL]) {}
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
    /// How it was found ("given path", "$SDREPL_MODEL", "./models", "HF cache (repo)"), for messages.
    public var source: String

    public init(path: String, source: String) {
        self.path = path
        self.source = source
    }
}

/// Finds, lists and fetches checkpoints (issue 9). `ModelStoreCatalog` is the real one.
public protocol ModelCatalog {
    /// Discovery: `explicit` (`model PATH`/`--model PATH`) first, then the other places in order.
    /// - Throws: an error whose description says where sdrepl looked and how to get a model
    ///   (ModelStore's `noModelFound`), or why an explicit path is not a model.
    func locate(explicit: String?) throws -> ModelLocation
    /// One line per model found, for `models`; `note` shows what takes a while (hashing).
    func listing(explicit: String?, note: (String) -> Void) -> [String]
    /// `model download [REPO FILE]`; returns the path of the downloaded file.
    /// - Parameters:
    ///   - status: a transient one-line progress report (bytes, rate, ETA).
    ///   - isCancelled: polled during the transfer (Ctrl-C).
    func download(arguments: [String], status: @escaping (String) -> Void,
                  isCancelled: @escaping () -> Bool) throws -> String
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

/// Where the session's output goes: the terminal in the executable, a buffer in tests.
public protocol SessionIO: AnyObject {
    /// A line of normal output (stdout).
    func output(_ line: String)
    /// A line of diagnostics (stderr).
    func diagnostic(_ line: String)
    /// Progress of image `index` (1-based) of `count` in this `gen`; `mode` says whether the engine's
    /// small preview (`progress.preview`) may be drawn.
    func progress(_ progress: StepProgress, index: Int, count: Int, mode: PreviewMode)
    /// A transient one-line status (a download's bytes, rate and ETA), redrawn in place; cleared by
    /// `progressDone`.
    func status(_ line: String)
    /// The progress of the current image is over (clear the bar).
    func progressDone()
    /// Shows `image` inline if `mode` and the terminal allow it; returns whether it drew anything.
    @discardableResult func display(_ image: RGBImage, mode: PreviewMode) -> Bool
    /// What `preview auto` resolves to here, for the `set` listing ("sixel", "off: stdout is not a terminal").
    func previewStatus(_ mode: PreviewMode) -> String
    /// True once the user pressed Ctrl-C during the current generation.
    var isInterrupted: Bool { get }
    /// Forgets an earlier Ctrl-C; called as each generation starts.
    func clearInterrupt()
}

/// The parts the session is built from. The defaults are the real ones (the pipeline, ModelStore's
/// discovery, Imaging's writer and styles); tests swap in doubles for the generator, models and saver.
public struct Components {
    public var generatorLoader: GeneratorLoader?
    public var models: ModelCatalog
    public var styles: StyleBook
    public var saver: ImageSaver?

    public init(generatorLoader: GeneratorLoader? = PipelineLoader(), models: ModelCatalog = ModelStoreCatalog(),
                styles: StyleBook = StyleBook(), saver: ImageSaver? = ImagingSaver()) {
        self.generatorLoader = generatorLoader
        self.models = models
        self.styles = styles
        self.saver = saver
    }
}
