import Foundation

/// What went wrong while loading a tokenizer or encoding a prompt.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The BPE vocabulary bundled with the engine is missing from the resource bundle.
    case bundledVocabularyMissing(String)
    /// A vocabulary file could not be read or parsed.
    case unreadable(path: String, reason: String)
    /// A line of `merges.txt` (or of the bundled merges) is not two symbols, or names a symbol the
    /// vocabulary lacks.
    case badMerge(path: String, line: Int, text: String)
    /// An entry of `model.merges` in `tokenizer.json` is not two symbols of the vocabulary.
    case badMergeEntry(path: String, index: Int, text: String)
    /// A required special token is missing from `vocab.json`.
    case missingSpecialToken(path: String, token: String)
    /// A tokenizer folder holds neither `vocab.json` with `merges.txt` nor `tokenizer.json`;
    /// `missing` lists the files it lacks.
    case noTokenizerFiles(folder: String, missing: [String])
    /// A `tokenizer.json` that is readable but describes a tokenizer other than CLIP's (another
    /// model type, normaliser, word suffix or added tokens), which would give other ids.
    case unsupportedTokenizer(path: String, reason: String)
    /// A token sequence does not fit the requested length and truncation was not asked for.
    case tooLong(tokens: Int, limit: Int)

    public var description: String {
        switch self {
        case .bundledVocabularyMissing(let name):
            return "the bundled CLIP vocabulary \(name) was not found in the Diffusion resource bundle; "
                + "reinstall sdrepl together with its sdrepl_Diffusion.resources folder"
        case .unreadable(let path, let reason):
            let fix = URL(fileURLWithPath: path).lastPathComponent == CLIPTokenizer.bundledName
                ? "reinstall sdrepl together with its sdrepl_Diffusion.resources folder"
                : "download the model's tokenizer/ folder again"
            return "cannot read the tokenizer file \(path): \(reason); \(fix)"
        case .badMerge(let path, let line, let text):
            return "\(path):\(line): the BPE merge \"\(text)\" is not two symbols of the vocabulary; "
                + "the tokenizer files are damaged or do not belong to a CLIP model"
        case .badMergeEntry(let path, let index, let text):
            return "\(path): model.merges[\(index)] (\(text)) is not two symbols of the vocabulary; "
                + "the tokenizer file is damaged or does not belong to a CLIP model"
        case .missingSpecialToken(let path, let token):
            return "\(path) has no \(token) token; it is not a CLIP vocabulary"
        case .noTokenizerFiles(let folder, let missing):
            return "the tokenizer folder \(folder) lacks \(missing.joined(separator: ", ")): a CLIP tokenizer needs "
                + "vocab.json with merges.txt, or tokenizer.json; download the model's tokenizer/ folder again, "
                + "or remove the folder to use sdrepl's built-in SD1.x vocabulary"
        case .unsupportedTokenizer(let path, let reason):
            return "\(path) is not a CLIP tokenizer sdrepl can use: \(reason); SD1.x models use CLIP's tokenizer, "
                + "so use the model's original tokenizer/ folder, or remove the folder to use the built-in vocabulary"
        case .tooLong(let tokens, let limit):
            return "the text is \(tokens) tokens long but at most \(limit) fit; shorten it, or use the "
                + "prompt chunking that splits long prompts into several 77-token windows"
        }
    }
}
