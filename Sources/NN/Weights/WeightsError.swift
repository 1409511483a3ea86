import Foundation

/// Building a model over a `TensorSource` found a tensor missing or shaped differently from what the
/// model's config implies (thrown by `Weights.parameter`, so every model reports it the same way).
public enum WeightsError: Error, Equatable, CustomStringConvertible {
    case missingTensor(key: String, source: String)
    case shapeMismatch(key: String, expected: [Int], actual: [Int], source: String)

    public var description: String {
        switch self {
        case let .missingTensor(key, source):
            return "the checkpoint \(source) has no tensor '\(key)'; it is incomplete or not an SD1.5 model"
        case let .shapeMismatch(key, expected, actual, source):
            return "tensor '\(key)' in \(source) has shape \(actual) but SD1.5 needs \(expected); the checkpoint is not an SD1.5 model or its config does not match"
        }
    }
}
