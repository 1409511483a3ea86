import Foundation

/// Errors from opening a checkpoint and building a model from it. Each `description` says what is
/// wrong, with which file or tensor, and what the user can do.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    // Opening a checkpoint. (Building a model from it throws `WeightsError`.)
    case notFound(path: String)
    /// The safetensors file itself is broken; `underlying` says how.
    case unreadable(path: String, underlying: SafetensorsError)
    /// The PyTorch zip file is broken, or refused (pickles turned off, something beyond weights in it).
    case unreadablePickle(path: String, underlying: TorchFileError)
    /// A pickle that is never read: outside PyTorch's zip format (a raw pickle stream, or a file named
    /// like one that is no zip).
    case pickleFile(path: String, evidence: String)
    /// A GGUF file (stable-diffusion.cpp / llama.cpp quantised weights).
    case ggufFile(path: String)
    /// A recognised model that is not SD1.x (`kind` is e.g. "an SDXL checkpoint").
    case unsupportedModel(path: String, kind: String, evidence: String)
    /// A diffusers folder or single file without one of the three weighted components.
    case missingComponent(path: String, component: String, lookedFor: [String])
    /// Neither a single-file SD checkpoint nor a diffusers folder nor a Hugging Face cache entry.
    case unknownLayout(path: String, reason: String)
    /// A Hugging Face cache entry whose snapshot cannot be chosen.
    case unresolvedSnapshot(path: String, reason: String)
    /// Two stored tensors map to the same name (e.g. a text-encoder key both with and without
    /// `text_model.`).
    case conflictingKeys(path: String, first: String, second: String, mappedTo: String)

    static let conversionHelp = """
        Convert it to safetensors in an environment you trust (loading a pickle can run code), e.g.:
            python -c "import torch, safetensors.torch as st; sd = torch.load('model.ckpt', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); st.save_file({k: v.contiguous().clone() for k, v in sd.items() if isinstance(v, torch.Tensor)}, 'model.safetensors')"
        or use the converters of AUTOMATIC1111 or ComfyUI, or download the model's .safetensors release instead.
        """

    public var description: String {
        switch self {
        case let .notFound(path):
            return "no checkpoint at \(path): the path does not exist"
        case let .unreadable(path, underlying):
            // The file's own error usually names the file already.
            let reason = "\(underlying)"
            return reason.contains(path) ? "cannot load it: \(reason)" : "cannot load \(path): \(reason)"
        case let .unreadablePickle(path, underlying):
            let reason = "\(underlying)"
            return reason.contains(path) ? "cannot load it: \(reason)" : "cannot load \(path): \(reason)"
        case let .pickleFile(path, evidence):
            return "\(path) is a pickle sdrepl does not read (\(evidence)): it reads the zip files torch.save writes since PyTorch 1.6 as single-file checkpoints, without running anything in them, and never unpickles anything else, because unpickling can run arbitrary code.\n" + Self.conversionHelp
        case let .ggufFile(path):
            return "\(path) is a GGUF file (quantised weights for stable-diffusion.cpp); sdrepl reads safetensors and PyTorch's zip files. Use the model's .safetensors release."
        case let .unsupportedModel(path, kind, evidence):
            return "\(path) is \(kind) (\(evidence)); sdrepl runs only Stable Diffusion 1.x text-to-image models. Use an SD1.5-based checkpoint."
        case let .missingComponent(path, component, lookedFor) where component.hasSuffix(".json"):
            return "\(path) has no \(component) (looked for \(lookedFor.joined(separator: ", "))); the download is incomplete — fetch the missing part or the whole model again"
        case let .missingComponent(path, component, lookedFor):
            return "\(path) has no \(component) weights (looked for \(lookedFor.joined(separator: ", "))); the download is incomplete — fetch the missing part or the whole model again"
        case let .unknownLayout(path, reason):
            return "\(path) is not a Stable Diffusion checkpoint sdrepl understands: \(reason). Give a single-file .safetensors or .ckpt checkpoint, a diffusers folder (with model_index.json), or a Hugging Face cache folder (models--*)."
        case let .unresolvedSnapshot(path, reason):
            return "cannot choose a snapshot in the Hugging Face cache folder \(path): \(reason); give the path of one snapshot (\(path)/snapshots/<commit>)"
        case let .conflictingKeys(path, first, second, mappedTo):
            return "\(path) holds both '\(first)' and '\(second)', which are the same weight '\(mappedTo)'; it is ambiguous which to use, so the file was refused. Re-save it with one of them."
        }
    }
}
