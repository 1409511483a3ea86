import Foundation

/// An upscaler file that cannot be used, or an upscale that cannot be made. Each message is one
/// line saying what is wrong and, where there is one, what to do.
public enum UpscalerError: Error, Equatable, CustomStringConvertible {
    case notFound(path: String)
    /// A path sdrepl cannot read as an upscaler at all (a folder).
    case unsupportedFormat(path: String, reason: String)
    /// The weights are some other network's; `reason` names the key that shows it.
    case notRRDBNet(path: String, reason: String)
    /// An RRDBNet whose tensors disagree with the sizes its others imply (a missing or misshapen one).
    case incompatible(path: String, WeightsError)
    /// Tensors under the network's prefix that no part of RRDBNet takes (ESRGAN+ noise inputs,
    /// pixel-shuffle upsampling, another head).
    case unexpectedTensors(path: String, keys: [String])
    /// The result would pass `UpscaleLimits.maxSide`.
    case tooLarge(width: Int, height: Int)
    /// The network's output holds NaN or ±∞: its weights do.
    case nonFinite(name: String)

    public var description: String {
        switch self {
        case let .notFound(path):
            return "no upscaler at \(path): the path does not exist"
        case let .unsupportedFormat(path, reason):
            return "\(path) cannot be read as an upscaler: \(reason)"
        case let .notRRDBNet(path, reason):
            return "\(path) is not an RRDBNet (ESRGAN/Real-ESRGAN) upscaler: \(reason)"
        case let .incompatible(path, error):
            switch error {
            case let .missingTensor(key, _):
                return "\(path) is an incomplete RRDBNet: it has no tensor '\(key)'"
            case let .shapeMismatch(key, expected, actual, _):
                return "\(path): tensor '\(key)' has shape \(actual) but the RRDBNet its other tensors describe needs \(expected)"
            case .notFloat:
                return error.description  // names the file and the tensor, and says nothing of SD1.5
            }
        case let .unexpectedTensors(path, keys):
            let shown = keys.prefix(3).map { "'\($0)'" }.joined(separator: ", ")
            return "\(path) is not a plain RRDBNet upscaler: \(keys.count) tensor\(keys.count == 1 ? "" : "s") belong to no part of it (\(shown)\(keys.count > 3 ? ", …" : ""))"
        case let .nonFinite(name):
            return "the upscaler '\(name)' produced NaN or infinite pixels: its weights hold NaN or infinite values; use another upscaler file"
        case let .tooLarge(width, height):
            return "the result would be \(width)x\(height); sdrepl makes images of at most \(UpscaleLimits.maxSide) pixels a side"
        }
    }
}
