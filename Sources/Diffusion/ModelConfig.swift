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
}

/// Upper bounds on a config's counts and widths, far above any SD1.x-like model's (2 layers a
/// block, 1280 channels, 12 text layers): a config past them is damaged or hostile, and building
/// what it asks for would run out of memory before any weight is read.
enum ModelConfigLimits {
    /// Layers a block, transformer layers, text-encoder layers.
    static let layers = 64
    /// Channels, hidden sizes, positions, latent channels.
    static let width = 1 << 16
    /// Token ids.
    static let vocabulary = 1 << 20
}

/// A model's `config.json` as diffusers and transformers write it: every setting is the SD1.5 value
/// unless the file sets it (JSON `null` also means "the default", as diffusers reads it), and keys
/// nobody here knows are ignored.
///
/// A setting's property is the camel-case form of its JSON key (`block_out_channels` →
/// `blockOutChannels`) unless `renamedSettings` names another property. `init(json:)` reads the
/// file; the `Codable` conformance is the config's own form, under its property names.
public protocol ModelConfigFile: Codable {
    /// SD1.5's config.
    init()
    /// The model in messages: "UNet", "VAE", "text encoder".
    static var modelName: String { get }
    /// JSON keys whose property has another name: `["norm_num_groups": "normGroups"]`.
    static var renamedSettings: [String: String] { get }
    /// Rewrites values that the file may spell in more than one way, before decoding.
    static func normalise(_ settings: inout [String: Any])
}

extension ModelConfigFile {
    public static func normalise(_ settings: inout [String: Any]) {}

    /// Reads a `config.json`.
    /// - Parameter json: the file's bytes, a JSON object of settings under diffusers' names.
    /// - Throws: `ModelConfigError.malformed` when the JSON is not an object or a known setting has
    ///   the wrong type, naming the setting.
    public init(json: Data) throws {
        let file: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: json) as? [String: Any] else {
                throw ModelConfigError.malformed(model: Self.modelName, setting: "", reason: "it is not a JSON object")
            }
            file = object
        } catch let error as ModelConfigError {
            throw error
        } catch {
            throw ModelConfigError.malformed(model: Self.modelName, setting: "", reason: "it is not valid JSON")
        }
        // The defaults, written under their property names, with the file's settings over them.
        var settings = try JSONSerialization.jsonObject(with: JSONEncoder().encode(Self())) as? [String: Any] ?? [:]
        // Only a setting's own JSON name counts (`norm_num_groups`, not `norm_groups` or `normGroups`),
        // so no two keys of a file can set one property.
        for (key, value) in file where !(value is NSNull) {
            let property = Self.renamedSettings[key] ?? Self.propertyName(key)
            if Self.settingName(property) == key { settings[property] = value }
        }
        Self.normalise(&settings)
        do {
            self = try JSONDecoder().decode(Self.self, from: JSONSerialization.data(withJSONObject: settings))
        } catch let error as DecodingError {
            let context: DecodingError.Context
            switch error {
            case let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c), let .dataCorrupted(c): context = c
            @unknown default: throw error
            }
            let path = context.codingPath.reduce(into: "") { path, key in
                if let index = key.intValue { path += "[\(index)]" } else { path += (path.isEmpty ? "" : ".") + Self.settingName(key.stringValue) }
            }
            throw ModelConfigError.malformed(model: Self.modelName, setting: path, reason: Self.reason(error))
        }
    }

    /// The config as a `config.json` under diffusers' names, which `init(json:)` reads back (settings
    /// that are nil are left out, as diffusers reads them: the default).
    /// - Throws: an `EncodingError` for a value JSON cannot hold (a non-finite float).
    public func json() throws -> Data {
        let properties = try JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as? [String: Any] ?? [:]
        let settings = Dictionary(uniqueKeysWithValues: properties.map { (Self.settingName($0.key), $0.value) })
        return try JSONSerialization.data(withJSONObject: settings, options: [.sortedKeys])
    }

    /// What a decoding error says about the value, in words rather than Swift's type names.
    static func reason(_ error: DecodingError) -> String {
        switch error {
        case let .typeMismatch(type, _):
            let name = "\(type)"
            if name.hasPrefix("Array") { return "expected a number or a list of numbers" }
            if name == "Bool" { return "expected true or false" }
            if name == "String" { return "expected a quoted name" }
            if name == "Int" { return "expected a whole number" }
            return "expected a number"
        case .valueNotFound, .keyNotFound: return "a value is missing"
        // JSONDecoder's only such case here: a number that does not fit its setting's type (3.5 or 1e30 for a count).
        case .dataCorrupted: return "expected a whole number that fits"
        @unknown default: return "the value has the wrong type"
        }
    }

    /// The JSON key of a property, for messages: `blockOutChannels` → `block_out_channels`.
    static func settingName(_ property: String) -> String {
        if let key = renamedSettings.first(where: { $0.value == property })?.key { return key }
        return property.reduce(into: "") { key, character in
            if character.isUppercase { key += "_" + character.lowercased() } else { key.append(character) }
        }
    }

    /// The property a JSON key names when it is not renamed: `block_out_channels` → `blockOutChannels`.
    static func propertyName(_ key: String) -> String {
        let words = key.split(separator: "_", omittingEmptySubsequences: false)
        guard let first = words.first else { return key }
        return String(first) + words.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
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
