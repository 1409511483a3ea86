import Foundation

/// What went wrong while finding, hashing or downloading a model. Each case says what, where and
/// what to do about it.
public enum ModelStoreError: Error, CustomStringConvertible, Equatable {
    /// No model in any of the places searched.
    case noModelFound(searched: [String])
    /// A path given by the user (`model PATH`, `--model`, `$SDREPL_MODEL`) that holds no model.
    case notAModel(path: String, reason: String)
    /// The server answered with an HTTP error.
    case http(status: Int, url: String)
    /// The server sent no usable metadata (commit, size or hash) for a file.
    case missingMetadata(url: String, header: String)
    /// The server stopped sending data for longer than the timeout.
    case stalled(url: String, seconds: Double)
    /// A transport error (connection refused, DNS, TLS…).
    case transport(url: String, message: String)
    /// The downloaded bytes do not hash to what the server promised; nothing was kept.
    case checksumMismatch(file: String, expected: String, actual: String)
    /// The downloaded size differs from the announced size.
    case sizeMismatch(file: String, expected: Int64, actual: Int64)
    /// A file-system operation failed.
    case io(path: String, message: String)
    /// The download was cancelled; the partial file is kept for resuming.
    case cancelled(partial: String)

    public var description: String {
        switch self {
        case let .noModelFound(searched):
            return """
            no Stable Diffusion 1.5 model found. sdrepl looked in:
            \(searched.map { "  - \($0)" }.joined(separator: "\n"))
            To get one: run `model download` (fetches v1-5-pruned-emaonly-fp16.safetensors, about 2 GB, \
            into the Hugging Face cache), or put a .safetensors checkpoint in ./models/, or point \
            `model PATH` / `--model PATH` / $SDREPL_MODEL at a checkpoint file or diffusers folder.
            """
        case let .notAModel(path, reason):
            return "\(path) is not a usable model: \(reason)"
        case let .http(status, url):
            let hint: String
            switch status {
            case 401, 403: hint = "the repository may be gated or private: set HF_TOKEN to a token with access"
            case 404: hint = "check the repository and file name"
            default: hint = "try again later"
            }
            return "the server answered HTTP \(status) for \(url): \(hint)"
        case let .missingMetadata(url, header):
            return "the server sent no \(header) header for \(url); is HF_ENDPOINT a Hugging Face hub?"
        case let .stalled(url, seconds):
            return "the download of \(url) stalled (no data for \(Int(seconds)) s); run the command again to resume"
        case let .transport(url, message):
            return "could not reach \(url): \(message). Check the network or HF_ENDPOINT; a partial download resumes next time"
        case let .checksumMismatch(file, expected, actual):
            return "\(file) is corrupt: its SHA-256 is \(actual) but the hub says \(expected). The bad copy was deleted; run the download again"
        case let .sizeMismatch(file, expected, actual):
            return "\(file) has \(actual) bytes but the hub announced \(expected). The bad copy was deleted; run the download again"
        case let .io(path, message):
            return "\(path): \(message)"
        case let .cancelled(partial):
            return "download cancelled; the partial file \(partial) is kept and the next download resumes from it"
        }
    }
}
