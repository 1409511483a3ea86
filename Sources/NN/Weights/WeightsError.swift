import Foundation

/// Building a model over a `TensorSource` found a tensor missing, shaped differently from what the
/// model's config implies, or stored in a type that is not a weight's (thrown by `Weights.parameter`,
/// so every model reports it the same way; `.notFloat` also by the loaders that read a file's
/// tensors themselves, such as LoRAs).
public enum WeightsError: Error, Equatable, CustomStringConvertible {
    case missingTensor(key: String, source: String)
    case shapeMismatch(key: String, expected: [Int], actual: [Int], source: String)
    /// A weight stored as F8, F6, F4 or complex numbers (which cannot be read), or as integers or
    /// BOOL (which can, but are not the weight); `tensor` is the file's own name for it.
    case notFloat(tensor: String, dtype: String, path: String)

    public var description: String {
        switch self {
        case let .missingTensor(key, source):
            return "the checkpoint \(source) has no tensor '\(key)'; it is incomplete or not an SD1.5 model"
        case let .shapeMismatch(key, expected, actual, source):
            return "tensor '\(key)' in \(source) has shape \(actual) but SD1.5 needs \(expected); the checkpoint is not an SD1.5 model or its config does not match"
        case let .notFloat(tensor, dtype, path):
            let kind: String
            switch TensorDType(rawValue: dtype) {
            case .bool?: kind = "booleans, not floats"
            case .c64?: kind = "complex numbers"
            case let type? where type.isReadableAsFloat: kind = "integers, not floats"
            default: kind = "a float type sdrepl cannot read"
            }
            return "tensor '\(TorchFileError.oneLine(shown(tensor)))' in \(path) is \(dtype) (\(kind)); sdrepl reads weights stored as "
                + "F32, F16, BF16 or F64: convert the file to fp16 or fp32, or use its fp16 release"
        }
    }
}
