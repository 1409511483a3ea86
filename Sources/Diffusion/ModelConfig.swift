import Foundation

/// A model config that sdrepl cannot build: a setting outside what SD1.x uses, or sizes that do not
/// fit together.
public enum ModelConfigError: Error, Equatable, CustomStringConvertible {
    /// `setting` (the diffusers JSON name) has a value this engine does not implement.
    case unsupported(model: String, setting: String, value: String, reason: String)
    /// `setting` has a value that cannot describe any model (e.g. channels not divisible by groups).
    case invalid(model: String, setting: String, value: String, reason: String)
    /// The config.json is not JSON, or a known setting has the wrong type (`setting` is its path).
    case malformed(model: String, setting: String, reason: String)

    public var description: String {
        switch self {
        case let .unsupported(model, setting, value, reason):
            return "the \(model) config sets \(setting) = \(value), which sdrepl does not implement (\(reason)); only Stable Diffusion 1.x models are supported"
        case let .invalid(model, setting, value, reason):
            return "the \(model) config sets \(setting) = \(value), which is not a valid model: \(reason); check the config.json beside the weights"
        case let .malformed(model, setting, reason):
            let location = setting.isEmpty ? "" : " at \(setting)"
            return "the \(model) config.json cannot be read\(location): \(reason); it should be the config.json that diffusers or transformers saved with the weights"
        }
    }

    /// Decodes a config from JSON, turning a `DecodingError` into `.malformed` naming the setting.
    static func decode<Config: Decodable>(_ type: Config.Type, model: String, from json: Data) throws -> Config {
        do {
            return try JSONDecoder().decode(type, from: json)
        } catch let error as DecodingError {
            let context: DecodingError.Context
            switch error {
            case let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c), let .dataCorrupted(c): context = c
            @unknown default: throw error
            }
            let path = context.codingPath.reduce(into: "") { path, key in
                if let index = key.intValue { path += "[\(index)]" } else { path += (path.isEmpty ? "" : ".") + key.stringValue }
            }
            throw ModelConfigError.malformed(model: model, setting: path, reason: context.debugDescription)
        }
    }
}

/// A diffusers setting written either as one number for every block or as a list with one number
/// per block (`attention_head_dim: 8` or `attention_head_dim: [5, 10, 20, 20]`).
public enum PerBlock: Codable, Equatable, Sendable, CustomStringConvertible {
    case all(Int)
    case each([Int])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(Int.self) {
            self = .all(one)
        } else {
            self = .each(try container.decode([Int].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case let .all(value): try container.encode(value)
        case let .each(values): try container.encode(values)
        }
    }

    /// One value per block for `count` blocks; nil when a list has the wrong length.
    func values(count: Int) -> [Int]? {
        switch self {
        case let .all(value): return Array(repeating: value, count: count)
        case let .each(values): return values.count == count ? values : nil
        }
    }

    public var description: String {
        switch self {
        case let .all(value): return "\(value)"
        case let .each(values): return "\(values)"
        }
    }
}

extension KeyedDecodingContainer {
    /// The value under `key`, or `fallback` when the key is absent or JSON `null` (diffusers writes
    /// `null` for "use the default").
    func decodeSetting<T: Decodable>(_ key: Key, default fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }
}
