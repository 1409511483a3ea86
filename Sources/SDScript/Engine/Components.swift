import Diffusion
import Foundation
import Imaging

// The narrow interfaces through which the session reaches the engine, the image files, the styles,
// the model store and the terminal. The REPL is written against these only; the executable plugs in
// the real implementations (Diffusion's pipeline, Imaging's PNG/JPEG/styles, ModelStore's discovery).

/// The folders a request's `<lora:NAME>` tags and embedding names are looked up in, in order, and
/// the decoder file it uses.
public struct ResourceFolders: Equatable, Sendable {
    public var loras: [URL]
    public var embeddings: [URL]
    /// The decoder to use instead of the model's VAE (`set vae`); nil: the model's own.
    public var decoder: URL?
    /// A TAESD for the live previews (from `VAE-taesd`); nil: the decoder's own if it is a TAESD, or
    /// the latent projection.
    public var previewDecoder: URL?

    public init(loras: [URL] = [], embeddings: [URL] = [], decoder: URL? = nil, previewDecoder: URL? = nil) {
        self.loras = loras
        self.embeddings = embeddings
        self.decoder = decoder
        self.previewDecoder = previewDecoder
    }
}

/// A loaded model that turns requests into images. The session loads one on first use and keeps it.
public protocol ImageGenerator: AnyObject {
    /// The checkpoint, for the saved recipe's model name and hash (nil for test doubles).
    var identity: ModelIdentity? { get }
    /// The memory mode the model was loaded in (nil for test doubles that do not say).
    var memoryMode: MemoryMode? { get }
    /// The bytes of weights the model keeps between uses once it has run (nil: not known).
    var keptWeightBytes: Int? { get }

    /// Generates `request.batchCount` images with seeds `seed`, `seed + 1`, …, preparing the
    /// request (LoRAs, embeddings, the text encoder) once for the whole batch.
    ///
    /// - Parameters:
    ///   - request: the resolved request: style already applied, a concrete seed.
    ///   - folders: where the prompt's LoRAs and embeddings are found.
    ///   - progress: called after each sampler step, on the calling thread.
    ///   - isCancelled: polled by the engine (at least once per step); when it returns true the engine
    ///     stops and throws (any error: the session reports a cancellation when the flag is set).
    ///   - image: called with each image as it is finished, before the next starts.
    /// - Throws: on cancellation, or when generation fails (the message is shown to the user).
    func generate(_ request: GenerationRequest, folders: ResourceFolders, progress: (GenerationProgress) -> Void,
                  isCancelled: () -> Bool, image: (GenerationResult) throws -> Void) throws

    /// Warnings to show once, when the model has loaded (tensors of the checkpoint no model part took).
    var loadWarnings: [String] { get }

    /// The model's files that were rewritten in place since it loaded (the weights are read from
    /// their mapping as they are used): the model must be loaded again before it runs.
    func filesChangedOnDisk() -> [String]

    /// The token count and the 75-token chunks of `prompt` (of each of its texts, when prompt editing
    /// changes it during the `steps`), as text for the `tokens` command.
    func tokenReport(prompt: String, steps: Int, folders: ResourceFolders) throws -> String
}

extension ImageGenerator {
    public var memoryMode: MemoryMode? { nil }
    public var keptWeightBytes: Int? { nil }
    public func filesChangedOnDisk() -> [String] { [] }
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

/// Finds, lists and fetches checkpoints. `ModelStoreCatalog` is the real one.
public protocol ModelCatalog {
    /// Discovery: `explicit` (`model PATH`/`--model PATH`) first, then the other places in order.
    /// - Throws: an error whose description says where sdrepl looked and how to get a model
    ///   (ModelStore's `noModelFound`), or why an explicit path is not a model.
    func locate(explicit: String?) throws -> ModelLocation
    /// One line per model found, for `models`; `note` shows what takes a while (hashing).
    func listing(explicit: String?, note: (String) -> Void) -> [String]
    /// The short hash (A1111's first 10 hex digits of the SHA-256) of the model discovery finds now,
    /// when it is known without reading the file (the hash cache, a Hugging Face blob); nil otherwise.
    func shortHash(explicit: String?) -> String?
    /// `model download [REPO FILE]`; returns the path of the downloaded file.
    /// - Parameters:
    ///   - status: a transient one-line progress report (bytes, rate, ETA).
    ///   - isCancelled: polled during the transfer (Ctrl-C).
    func download(arguments: [String], status: @escaping (String) -> Void,
                  isCancelled: @escaping () -> Bool) throws -> String
}

/// What a save wrote.
public struct SavedFiles: Equatable, Sendable {
    /// The paths written.
    public var paths: [String]
    /// What the user should know about them (a JPEG whose comment holds only part of the recipe).
    public var warnings: [String]

    public init(paths: [String], warnings: [String] = []) {
        self.paths = paths
        self.warnings = warnings
    }
}

/// Writes images to files with their recipes.
public protocol ImageSaver {
    /// Writes `image`.
    ///
    /// - Parameters:
    ///   - path: the exact file to write (`.png` or `.jpg`); without an extension, `PATH.png` and
    ///     `PATH.jpg`; nil for both in `output.outdir`, named from the timestamp, seed and prompt.
    /// - Returns: the paths written, and any warnings about them.
    /// - Throws: with a message naming the file when it cannot be written; nothing partial is left.
    func save(_ image: SessionImage, to path: String?, output: OutputSettings) throws -> SavedFiles
    /// Writes a grid's labelled sheet with every cell's recipe (`GridSheet.swift`).
    func saveSheet(_ sheet: GridSheet, to path: String?, output: OutputSettings) throws -> SavedFiles
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
