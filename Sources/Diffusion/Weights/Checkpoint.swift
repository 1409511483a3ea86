import Foundation
import HubLayout

extension CheckpointComponent {
    /// Where the component's model begins in a `Checkpoint`: the prefix of `Checkpoint.weights(for:)`.
    /// The text encoder's model is transformers' `CLIPTextModel.text_model`.
    public var modelPrefix: String {
        switch self {
        case .unet, .vae: return prefix
        case .textEncoder: return prefix + "text_model."
        }
    }
}

/// An SD1.x checkpoint, opened and checked, whose tensors are named in diffusers module names under
/// the component prefixes `unet.`, `vae.` and `text_encoder.text_model.`, whatever the layout on disk.
///
/// Layouts:
/// - a single file in the original LDM layout (`model.diffusion_model.*`, `first_stage_model.*`,
///   `cond_stage_model.transformer.*`), fp32, fp16 or bf16: safetensors, or a `.ckpt` PyTorch zip
///   file read without running anything (`TorchFile`; its `state_dict` holds the same keys). EMA
///   copies (`model_ema.*`) and DDPM buffers are ignored. Keys are renamed by `KeyMap`, a view over
///   the mapped file: nothing is copied.
/// - a diffusers folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, optional
///   `tokenizer/` and `scheduler/`), with `.fp16.` variants chosen by `LoadOptions.variant`.
/// - a Hugging Face cache entry (`models--org--name`, with `refs/main` naming the snapshot), holding
///   either layout.
///
/// A diffusers folder's parts may be `.bin` pickles in PyTorch's zip format, as older folders hold.
///
/// Refused, with a `CheckpointError` saying what the file is: SD2.x, SDXL, InstructPix2Pix and other
/// UNets of neither 4 nor 9 input channels, LoRAs, GGUF files, pickles outside PyTorch's zip format
/// (recognised by their first bytes or name and never unpickled), and every pickle under
/// `PicklePolicy.refuse`.
///
/// The library never prints: after building the models, ask `unexpectedKeys(used:ignoring:)` for the
/// tensors no model took and show them as a warning.
public final class Checkpoint: TensorSource, @unchecked Sendable {
    public enum Layout: String, Sendable {
        case singleFile = "single file"
        case diffusersFolder = "diffusers folder"
    }

    /// The path as given.
    public let url: URL
    /// The file or folder actually loaded (the snapshot folder for a Hugging Face cache entry).
    public let location: URL
    public let layout: Layout
    /// True when `url` was a Hugging Face cache entry resolved to a snapshot.
    public let viaHuggingFaceCache: Bool
    public let options: LoadOptions
    /// `options.memoryMode` resolved: `.low` or `.fast`, never `.auto`.
    public let memoryMode: MemoryMode
    /// The size of all weights once converted to Float32.
    public let float32ByteCount: Int
    /// The weights fast mode keeps: the UNet's, in the bytes `CompactWeight` keeps them in.
    public let fastModeByteCount: Int
    /// Records the keys models take through `weights(for:)`.
    public let usage = WeightUsage()
    /// The diffusers `tokenizer/` folder, when present (a single file has none; the bundled
    /// vocabulary is used then).
    public let tokenizerDirectory: URL?
    /// `scheduler/scheduler_config.json` of a diffusers folder, when present.
    public let schedulerConfigData: Data?
    /// Stored keys that were deliberately dropped (EMA copies, DDPM buffers, `position_ids`).
    public let ignoredKeys: [String]
    /// What the user should know about the checkpoint although it loads (a diffusers folder
    /// without `tokenizer/`), in the order found; empty for a complete checkpoint.
    public let warnings: [CheckpointWarning]

    private struct Entry {
        let file: any TensorFile
        let storedKey: String
        let shape: [Int]
        let dtype: TensorDType
    }
    private let entries: [String: Entry]
    private let sortedKeys: [String]
    /// Stored keys that belong to no SD1.x component, under their stored names.
    private let unknownKeys: [String]
    private let componentFiles: [CheckpointComponent: any TensorFile]
    private let configs: [CheckpointComponent: Data]

    /// Opens the checkpoint at `url`, detects its layout, maps its names and checks that it is a
    /// complete SD1.x text-to-image model.
    /// - Parameters:
    ///   - url: a `.safetensors` or `.ckpt` file, a diffusers folder, a Hugging Face cache entry
    ///     (`models--*`), or a folder holding exactly one such file.
    ///   - options: memory mode (resolved here), threads, preferred diffusers variant.
    /// - Throws: `CheckpointError` naming the file and the problem: `.notFound`, `.pickleFile`,
    ///   `.ggufFile`, `.unreadable` (wrapping the `SafetensorsError` of a damaged file),
    ///   `.unreadablePickle` (wrapping the `TorchFileError` of a damaged or refused pickle),
    ///   `.unsupportedModel`, `.missingComponent`, `.unknownLayout`, `.unresolvedSnapshot`,
    ///   `.conflictingKeys`.
    public init(url: URL, options: LoadOptions = LoadOptions()) throws {
        self.url = url
        self.options = options
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory) else { throw CheckpointError.notFound(path: url.path) }

        var location = url
        var viaCache = false
        if isDirectory.boolValue, HubCacheLayout.isEntry(url) {
            location = try Self.resolveSnapshot(url)
            viaCache = true
        }
        self.location = location
        self.viaHuggingFaceCache = viaCache

        var entries: [String: Entry] = [:]
        var ignored: [String] = []
        var unknown: [String] = []
        var componentFiles: [CheckpointComponent: any TensorFile] = [:]
        var configs: [CheckpointComponent: Data] = [:]
        var keyMap = KeyMap()

        func add(_ mapping: KeyMap.Mapping, _ info: TensorInfo, _ file: any TensorFile) throws {
            switch mapping {
            case let .tensor(key, reshape):
                var shape = info.shape
                if reshape, shape.count == 4, shape[2] == 1, shape[3] == 1 { shape = Array(shape.prefix(2)) }
                if let other = entries[key] {
                    throw CheckpointError.conflictingKeys(path: file.url.path, first: other.storedKey, second: info.name, mappedTo: key)
                }
                entries[key] = Entry(file: file, storedKey: info.name, shape: shape, dtype: info.dtype)
            case .ignored:
                ignored.append(info.name)
            case .unknown:
                unknown.append(info.name)
            }
        }

        if Self.isDirectory(location), Self.isDiffusersFolder(location) {
            layout = .diffusersFolder
            try Self.refuseByModelIndex(location)
            for component in CheckpointComponent.allCases {
                let fileURL = try Self.componentFile(component, in: location, variant: options.variant)
                let file = try Self.openWeightsFile(fileURL)
                componentFiles[component] = file
                for info in file.tensorInfos {
                    try add(keyMap.mapDiffusers(info.name, component: component), info, file)
                }
                if let data = fm.contents(atPath: location.appendingPathComponent(component.rawValue).appendingPathComponent("config.json").path) {
                    configs[component] = data
                }
            }
            let tokenizer = location.appendingPathComponent("tokenizer")
            tokenizerDirectory = Self.isDirectory(tokenizer) ? tokenizer : nil
            // The pipeline falls back to the bundled vocabulary, which is right for SD1.x but
            // should not happen silently: a missing folder can also mean an incomplete download.
            warnings = tokenizerDirectory == nil ? [.noTokenizerFolder(folder: location.path)] : []
            schedulerConfigData = fm.contents(atPath: location.appendingPathComponent("scheduler/scheduler_config.json").path)
        } else {
            layout = .singleFile
            let fileURL = Self.isDirectory(location) ? try Self.singleFileInFolder(location) : location
            let file = try Self.openWeightsFile(fileURL)
            try Self.refuseByStoredKeys(file)
            // LDM numbers the decoder's levels from the bottom, so the mapping needs their count.
            let levels = file.names.compactMap { KeyMap.match("first_stage_model.decoder.up.#.", Substring($0))?.0.first }
            if let top = levels.max() { keyMap = KeyMap(vaeLevels: top + 1) }
            for info in file.tensorInfos { try add(keyMap.mapLDM(info.name), info, file) }
            for component in CheckpointComponent.allCases { componentFiles[component] = file }
            let present = Set(entries.keys.compactMap { key in CheckpointComponent.allCases.first { key.hasPrefix($0.prefix) } })
            if present.isEmpty {
                throw CheckpointError.unknownLayout(path: fileURL.path, reason: Self.describeUnknownFile(file.names))
            }
            for (prefix, component) in KeyMap.ldmComponents where !present.contains(component) {
                throw CheckpointError.missingComponent(path: fileURL.path, component: Self.componentName(component), lookedFor: [prefix + "*"])
            }
            tokenizerDirectory = nil
            schedulerConfigData = nil
            warnings = []
        }

        self.entries = entries
        self.sortedKeys = entries.keys.sorted()
        self.ignoredKeys = ignored
        self.unknownKeys = unknown
        self.componentFiles = componentFiles
        self.configs = configs
        try Self.refuseByShapes(entries.mapValues(\.shape), path: location.path)

        float32ByteCount = entries.values.reduce(0) { $0 + $1.shape.reduce(4, *) }
        // What fast mode keeps (see `keepsConverted`): the UNet's weights, in two bytes where the
        // file has them in fp16 or bf16 (`CompactWeight`; the few small ones are Float32 but count
        // for little), in four otherwise. The text encoder and the VAE are converted on each use.
        fastModeByteCount = entries.filter { $0.key.hasPrefix(CheckpointComponent.unet.modelPrefix) }.values.reduce(0) { total, entry in
            total + entry.shape.reduce([.f16, .bf16].contains(entry.dtype) ? 2 : 4, *)
        }
        memoryMode = options.memoryMode.resolve(fastModeBytes: fastModeByteCount)
    }

    // MARK: Public API

    /// The weights of `component`, scoped at its model (`CheckpointComponent.modelPrefix`), kept
    /// where `keepsConverted(component)`. Models mark the keys they take in `usage`.
    public func weights(for component: CheckpointComponent) -> Weights {
        Weights(source: self, prefix: component.modelPrefix, keepConverted: keepsConverted(component), usage: usage)
    }

    /// Whether `component`'s weights are kept after first use: only the UNet's, in `.fast` mode.
    ///
    /// The UNet runs every step, so its weights are kept (in two bytes each when the file is fp16,
    /// see `Parameter`). The text encoder and the VAE run once a generation: converting their
    /// weights again then costs ~0.1 s against a generation's minutes, while keeping them would add
    /// their 330 MB (two-byte copies of an fp16 file) to the peak, which falls in the VAE decode.
    public func keepsConverted(_ component: CheckpointComponent) -> Bool {
        memoryMode == .fast && component == .unet
    }

    /// The raw `config.json` of `component` in a diffusers folder; nil for a single file or when the
    /// folder has none (the models then use SD1.5 defaults).
    public func configData(for component: CheckpointComponent) -> Data? { configs[component] }

    /// The weights file that holds `component` (the same file for all three in a single file).
    /// The app hashes it for the image metadata (A1111's model hash is the first 10 hex digits of the
    /// SHA-256 of the single file).
    public func fileURL(for component: CheckpointComponent) -> URL {
        componentFiles[component]!.url  // every component has a file once init succeeded
    }

    /// Every file the weights come from, without repeats, in component order.
    public var fileURLs: [URL] {
        var seen = Set<String>()
        return CheckpointComponent.allCases.map(fileURL(for:)).filter { seen.insert($0.path).inserted }
    }

    /// Tensors that no model took: mapped keys missing from `used` (default: `usage.keys`), minus
    /// those under `ignoring` prefixes (e.g. `["vae.encoder.", "vae.quant_conv."]` when only the VAE
    /// decoder is built), followed by stored keys that belong to no SD1.x component, under their
    /// stored names. Deliberately dropped keys (`ignoredKeys`) are not listed.
    public func unexpectedKeys(used: Set<String>? = nil, ignoring prefixes: [String] = []) -> [String] {
        let used = used ?? usage.keys
        return sortedKeys.filter { !used.contains($0) && !prefixes.contains(where: $0.hasPrefix) } + unknownKeys
    }

    // MARK: TensorSource

    public var sourceDescription: String { location.path }
    public var keys: [String] { sortedKeys }
    public func shape(of key: String) -> [Int]? { entries[key]?.shape }
    public func storedTensor(_ key: String) -> StoredTensor? {
        entries[key].map { StoredTensor(path: $0.file.url.path, name: $0.storedKey, dtype: $0.dtype) }
    }

    public func filesChangedOnDisk() -> [String] {
        var seen = Set<ObjectIdentifier>(), changed: [String] = []
        for key in sortedKeys {
            guard let file = entries[key]?.file, seen.insert(ObjectIdentifier(file)).inserted else { continue }
            changed += file.filesChangedOnDisk()
        }
        return changed
    }

    /// Converts `key` (a mapped name) to Float32 into `buffer`.
    /// - Throws: `WeightsError.missingTensor`, or the file's `SafetensorsError` or `TorchFileError`
    ///   (e.g. a wrong buffer size or an unsupported dtype).
    public func read(_ key: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let entry = entries[key] else { throw WeightsError.missingTensor(key: key, source: sourceDescription) }
        try entry.file.read(entry.storedKey, into: buffer)
        entry.file.releasePages(of: entry.storedKey)  // converted: the mapped copy need not stay resident
    }

    /// Converts rows `rows` of `key` (a mapped name), seen as `[rows, width]`, into `buffer`.
    public func readRows(_ key: String, rows: [Int], width: Int, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let entry = entries[key] else { throw WeightsError.missingTensor(key: key, source: sourceDescription) }
        try entry.file.readRows(entry.storedKey, rows: rows, width: width, into: buffer)
        entry.file.releasePages(of: entry.storedKey)
    }

    /// A mapped key's stored two-byte elements in place (reading only widens them: a new name or
    /// shape never reorders elements).
    public func storedHalfElements(_ key: String) -> HalfElements? {
        entries[key].flatMap { $0.file.storedHalfElements($0.storedKey) }
    }

    /// Drops the mapped pages of every tensor under `prefix` (e.g. `unet.`) from the resident set:
    /// fast mode keeps an fp16 file's weights in its mapping, and between uses the page cache can hold them.
    public func releasePages(under prefix: String) {
        for (key, entry) in entries where key.hasPrefix(prefix) { entry.file.releasePages(of: entry.storedKey) }
    }

    /// The stored name of a mapped key and the file that holds it, for messages and tests.
    public func storedLocation(of key: String) -> (file: URL, key: String)? {
        entries[key].map { ($0.file.url, $0.storedKey) }
    }

    // MARK: Layout detection

    private static func isDirectory(_ url: URL) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    private static func isDiffusersFolder(_ url: URL) -> Bool {
        FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path)
            || isDirectory(url.appendingPathComponent("unet"))
    }

    private static func componentName(_ component: CheckpointComponent) -> String {
        switch component {
        case .unet: return "UNet"
        case .vae: return "VAE"
        case .textEncoder: return "text encoder"
        }
    }

    /// The snapshot of a Hugging Face cache entry: the one `refs/main` names, else the only one.
    private static func resolveSnapshot(_ entry: URL) throws -> URL {
        do {
            return try HubCacheLayout.snapshot(of: entry)
        } catch let problem as HubCacheLayout.SnapshotProblem {
            throw CheckpointError.unresolvedSnapshot(path: entry.path, reason: problem.description)
        }
    }

    /// A folder that is not a diffusers folder may hold one single-file checkpoint: its one
    /// `.safetensors` file, or else its one `.ckpt`.
    private static func singleFileInFolder(_ folder: URL) throws -> URL {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).sorted()
        let safetensors = names.filter { $0.hasSuffix(".safetensors") }
        let candidates = safetensors.isEmpty ? names.filter { $0.lowercased().hasSuffix(".ckpt") } : safetensors
        if candidates.count == 1 { return folder.appendingPathComponent(candidates[0]) }
        throw CheckpointError.unknownLayout(path: folder.path, reason: candidates.isEmpty
            ? "the folder has no model_index.json, no unet/ and no .safetensors file"
            : "the folder has no model_index.json and several checkpoint files (\(candidates.joined(separator: ", "))); give the path of one")
    }

    /// The weights file of `component` in a diffusers folder. The plain file is preferred unless a
    /// variant is asked for; either way the other is the fallback.
    private static func componentFile(_ component: CheckpointComponent, in folder: URL, variant: String?) throws -> URL {
        let dir = folder.appendingPathComponent(component.rawValue)
        let stem = component == .textEncoder ? "model" : "diffusion_pytorch_model"
        var candidates = ["\(stem).safetensors", "\(stem).fp16.safetensors"]
        if let variant {
            candidates.removeAll { $0 == "\(stem).\(variant).safetensors" }
            candidates.insert("\(stem).\(variant).safetensors", at: 0)
        }
        for name in candidates {
            let url = dir.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.path) { return url }
        }
        // Older folders hold torch.save's zip pickles (`save_pretrained(safe_serialization=False)`), read
        // by the weights-only reader when pickles are allowed.
        let pickleStem = stem == "model" ? "pytorch_model" : stem
        var pickles = ["\(pickleStem).bin", "\(pickleStem).fp16.bin"]
        if let variant, variant != "fp16" { pickles.insert("\(pickleStem).\(variant).bin", at: 0) }
        if variant == "fp16" { pickles.reverse() }
        for name in pickles {
            let url = dir.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.path) { return url }
        }
        throw CheckpointError.missingComponent(path: folder.path, component: componentName(component),
                                               lookedFor: (candidates + pickles).map { "\(component.rawValue)/\($0)" })
    }

    /// Why a file with none of the single-file prefixes is not a checkpoint, recognising the parts
    /// that people download on their own.
    private static func describeUnknownFile(_ names: [String]) -> String {
        let hasPrefix = { (p: String) in names.contains { $0.hasPrefix(p) } }
        if names.isEmpty { return "the file holds no tensors" }
        if names.contains("conv_in.weight") && hasPrefix("time_embedding.") {
            return "it is a UNet alone (the unet/ part of a diffusers folder); give the folder that holds model_index.json"
        }
        if hasPrefix("encoder.") && hasPrefix("decoder.") {
            return "it is a VAE alone, not a full checkpoint"
        }
        if hasPrefix("text_model.") || (hasPrefix("encoder.layers.") && hasPrefix("embeddings.")) {
            return "it is a text encoder alone, not a full checkpoint"
        }
        let sample = names.prefix(3).map { "'\($0)'" }.joined(separator: ", ")
        return "none of its keys (\(sample)\(names.count > 3 ? ", …" : "")) is a key of an SD checkpoint"
    }

    // MARK: Opening files

    /// Opens a weights file through `openTensorFile` (safetensors or a PyTorch zip file, told apart
    /// by their first bytes), refusing GGUF files and, without parsing them, pickles outside the zip format.
    static func openWeightsFile(_ url: URL) throws -> any TensorFile {
        if TensorFileKind.of(url) == .gguf { throw CheckpointError.ggufFile(path: url.path) }
        do {
            return try openTensorFile(url)
        } catch let error as SafetensorsError {
            throw CheckpointError.unreadable(path: url.path, underlying: error)
        } catch let TorchFileError.notZipFormat(path, evidence) {
            throw CheckpointError.pickleFile(path: path, evidence: evidence)
        } catch let error as TorchFileError {
            throw CheckpointError.unreadablePickle(path: url.path, underlying: error)
        }
    }
}
