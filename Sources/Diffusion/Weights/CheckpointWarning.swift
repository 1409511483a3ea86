import Foundation

/// Something about a checkpoint that does not stop it from loading but that the user should know,
/// found while opening it (`Checkpoint.warnings`). The library never prints: the app shows each
/// warning's `description` once, when the model loads.
public enum CheckpointWarning: Equatable, Sendable, CustomStringConvertible {
    /// A diffusers folder without `tokenizer/`: the engine's bundled CLIP vocabulary is used, which
    /// is the tokenizer of every SD1.x model.
    case noTokenizerFolder(folder: String)

    public var description: String {
        switch self {
        case let .noTokenizerFolder(folder):
            return "\(folder) has no tokenizer/ folder; using sdrepl's built-in CLIP vocabulary (the one of every SD1.x model)"
        }
    }
}
