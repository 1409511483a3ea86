import Foundation

/// A full VAE kept apart from the checkpoint, as A1111 users keep them in `models/VAE`: a single file
/// in the original LDM layout without the `first_stage_model.` prefix
/// (`vae-ft-mse-840000-ema-pruned.safetensors`: `decoder.up.3.block.0.conv1.weight`, …, or the same
/// as a `.ckpt`, whose `state_dict` holds those keys), or a diffusers `AutoencoderKL` folder
/// (`config.json` + `diffusion_pytorch_model.safetensors`) or file. Its decoder is read over the file
/// through `KeyMap`, as the checkpoint's own VAE is.
public enum VAEFile {
    /// Opens the decoder of the VAE at `url`.
    /// - Parameter config: the sizes of a single file, which carries none (the model's own VAE's:
    ///   a VAE file replaces the VAE of the model it was made for); a folder's `config.json` wins.
    /// - Throws: `VAEFileError.otherFile` for a file that is something else (a whole checkpoint, a
    ///   LoRA), `.notAVAE` for one that is no VAE, `WeightsError` naming the first tensor that does
    ///   not fit SD1.x's VAE or is not stored as floats, `SafetensorsError` or `TorchFileError` for an
    ///   unreadable or refused file.
    public static func decoder(_ url: URL, config defaultConfig: VAEConfig = VAEConfig()) throws -> AutoencoderDecoder {
        let (weights, config) = try open(url, config: defaultConfig)
        return try AutoencoderDecoder(config: config, weights: weights)
    }

    /// Opens the encoder of the VAE at `url` (as `decoder`), or nil when the file holds only a
    /// decoder: then images are encoded with the model's own VAE.
    public static func encoder(_ url: URL, config defaultConfig: VAEConfig = VAEConfig()) throws -> AutoencoderEncoder? {
        let (weights, config) = try open(url, config: defaultConfig)
        return weights.contains("encoder.conv_in.weight") ? try AutoencoderEncoder(config: config, weights: weights) : nil
    }

    /// The VAE's weights under diffusers' names, and its sizes.
    private static func open(_ url: URL, config defaultConfig: VAEConfig) throws -> (Weights, VAEConfig) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw VAEFileError.notFound(path: url.path)
        }
        var config = defaultConfig
        var file = url
        if isDirectory.boolValue {
            var folder = url
            // A whole diffusers model: its VAE is the vae/ folder.
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path) {
                folder = url.appendingPathComponent("vae")
            }
            let fm = FileManager.default
            guard let found = ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin"]
                .map({ folder.appendingPathComponent($0) }).first(where: { fm.fileExists(atPath: $0.path) }) else {
                throw VAEFileError.notAVAE(path: url.path, reason: "the folder has no diffusion_pytorch_model.safetensors, "
                                           + "which a diffusers VAE folder holds beside its config.json")
            }
            file = found
            if let data = fm.contents(atPath: folder.appendingPathComponent("config.json").path) {
                config = try VAEConfig(json: data)
            }
        }
        let source = try openTensorFile(file)
        let keys = source.keys
        if keys.contains(where: { $0.hasPrefix("decoder.up_blocks.") }) {
            return (Weights(source: source, keepConverted: true), config)
        }
        if keys.contains(where: { $0.hasPrefix("decoder.up.") }) {
            return (Weights(source: try LDMVAESource(file: source), keepConverted: true), config)
        }
        if keys.contains(where: { $0.hasPrefix("first_stage_model.") }) {
            throw VAEFileError.otherFile(path: file.path, kind: "a whole checkpoint", evidence: "first_stage_model.* is its VAE",
                                         advice: "give it with 'model' instead")
        }
        if let (kind, evidence) = LoRAFile.recognise(names: keys) {
            throw VAEFileError.otherFile(path: file.path, kind: kind, evidence: evidence, advice: "LoRAs go in the prompt, as <lora:NAME:1>")
        }
        throw VAEFileError.notAVAE(path: file.path, reason: "its first tensor, '\(keys.sorted().first ?? "(none)")', is not a VAE decoder's")
    }
}

/// An LDM-layout VAE file seen under diffusers' names through `KeyMap` (the same table that maps a
/// single-file checkpoint's `first_stage_model.*`); 1×1 attention weights are seen flattened, as there.
final class LDMVAESource: TensorSource, @unchecked Sendable {
    private let file: any TensorFile
    private let entries: [String: (stored: String, shape: [Int])]

    init(file: any TensorFile) throws {
        self.file = file
        let levels = file.names.compactMap { KeyMap.match("decoder.up.#.", Substring($0))?.0.first }
        let keyMap = KeyMap(vaeLevels: (levels.max() ?? 3) + 1)
        var entries: [String: (stored: String, shape: [Int])] = [:]
        for info in file.tensorInfos {
            guard case let .tensor(key, reshape) = keyMap.mapLDM("first_stage_model." + info.name),
                  key.hasPrefix(CheckpointComponent.vae.prefix) else { continue }
            var shape = info.shape
            if reshape, shape.count == 4, shape[2] == 1, shape[3] == 1 { shape = Array(shape.prefix(2)) }
            entries[String(key.dropFirst(CheckpointComponent.vae.prefix.count))] = (info.name, shape)
        }
        self.entries = entries
    }

    var sourceDescription: String { file.url.path }
    var keys: [String] { entries.keys.sorted() }
    func shape(of key: String) -> [Int]? { entries[key]?.shape }
    func storedTensor(_ key: String) -> StoredTensor? { entries[key].flatMap { file.storedTensor($0.stored) } }
    func read(_ key: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let entry = entries[key] else { throw WeightsError.missingTensor(key: key, source: sourceDescription) }
        try file.read(entry.stored, into: buffer)
    }
}

/// A file given as a VAE that is not one.
public enum VAEFileError: Error, Equatable, CustomStringConvertible {
    case notFound(path: String)
    case notAVAE(path: String, reason: String)
    /// A file that is something else, which its tensors show (a whole checkpoint, a LoRA).
    case otherFile(path: String, kind: String, evidence: String, advice: String)
    /// A VAE or TAESD made for another model's latents.
    case otherModel(path: String, kind: String, evidence: String)

    public var description: String {
        switch self {
        case let .otherModel(path, kind, evidence):
            return "\(path) is \(kind) (\(evidence)); SD1.x models need an SD1.x VAE such as "
                + "vae-ft-mse-840000-ema-pruned.safetensors (stabilityai/sd-vae-ft-mse-original) or taesd_decoder.safetensors (madebyollin/taesd)"
        case let .notFound(path): return "no VAE at \(path): the path does not exist"
        case let .notAVAE(path, reason): return "\(path) is not a VAE: \(reason)"
        case let .otherFile(path, kind, evidence, advice): return "\(path) is \(kind) (\(evidence)), not a VAE; \(advice)"
        }
    }
}
