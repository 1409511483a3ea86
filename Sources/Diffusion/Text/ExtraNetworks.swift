import Foundation

/// A `<lora:NAME:…>` tag of a prompt: which LoRA, and how strongly it changes each model.
public struct LoRAReference: Equatable, Hashable, Sendable {
    /// The file's name without `.safetensors`, possibly with sub-folders (`styles/ink`).
    public var name: String
    /// Scales the LoRA's change to the text encoder.
    public var textEncoderMultiplier: Double
    /// Scales the LoRA's change to the UNet.
    public var unetMultiplier: Double

    public init(name: String, textEncoderMultiplier: Double = 1, unetMultiplier: Double? = nil) {
        self.name = name
        self.textEncoderMultiplier = textEncoderMultiplier
        self.unetMultiplier = unetMultiplier ?? textEncoderMultiplier
    }
}

/// AUTOMATIC1111's extra-network tags (`modules/extra_networks.py`, `parse_prompt`, and the LoRA
/// arguments of `extensions-builtin/Lora/extra_networks_lora.py`).
///
/// Every `<KIND:ARGS>` (`<(\w+):([^>]+)>`) is removed from the prompt before anything else reads it,
/// prompt editing included. `ARGS` split at `:`; an argument with `=` is named. For `lora` (and its
/// old alias `lyco`): `<lora:NAME>`, `<lora:NAME:M>` (both models at M), `<lora:NAME:TE:UNET>`, or the
/// named `te=` / `unet=`; the default multiplier is 1.
public enum ExtraNetworks {
    /// The prompt without its tags, and the LoRAs they name, in order.
    /// - Throws: `LoRAError.badTag` for a LoRA tag without a name or with a multiplier that is not a
    ///   number; `.unsupportedNetwork` for other kinds (`hypernet`).
    public static func parse(_ prompt: String) throws -> (prompt: String, loras: [LoRAReference]) {
        var text = String.UnicodeScalarView()
        var loras: [LoRAReference] = []
        let s = Array(prompt.unicodeScalars)
        var i = 0
        while i < s.count {
            if s[i] == "<", let (kind, arguments, end) = tag(in: s, at: i) {
                let written = String(String.UnicodeScalarView(s[i..<end]))
                switch kind {
                case "lora", "lyco": loras.append(try lora(arguments, tag: written))
                default: throw LoRAError.unsupportedNetwork(tag: written, kind: kind)
                }
                i = end
            } else {
                text.append(s[i])
                i += 1
            }
        }
        return (String(text), loras)
    }

    /// The tags in `prompt`, as written, for a message.
    public static func tags(in prompt: String) -> [String] {
        let s = Array(prompt.unicodeScalars)
        var found: [String] = []
        var i = 0
        while i < s.count {
            if s[i] == "<", let (_, _, end) = tag(in: s, at: i) {
                found.append(String(String.UnicodeScalarView(s[i..<end])))
                i = end
            } else {
                i += 1
            }
        }
        return found
    }

    /// `<(\w+):([^>]+)>` at `start`: the kind, the argument text and the index after `>`.
    private static func tag(in s: [Unicode.Scalar], at start: Int) -> (String, String, Int)? {
        var i = start + 1
        while i < s.count, isWord(s[i]) { i += 1 }
        guard i > start + 1, i < s.count, s[i] == ":" else { return nil }
        let kind = String(String.UnicodeScalarView(s[(start + 1)..<i]))
        var end = i + 1
        while end < s.count, s[end] != ">" { end += 1 }
        guard end < s.count, end > i + 1 else { return nil }
        return (kind, String(String.UnicodeScalarView(s[(i + 1)..<end])), end + 1)
    }

    private static func isWord(_ c: Unicode.Scalar) -> Bool {
        c == "_" || c.properties.isAlphabetic || c.properties.numericType != nil
    }

    private static func lora(_ arguments: String, tag: String) throws -> LoRAReference {
        var positional: [String] = []
        var named: [String: String] = [:]
        for item in arguments.split(separator: ":", omittingEmptySubsequences: false).map(String.init) {
            if let equals = item.firstIndex(of: "=") {
                named[String(item[..<equals]).trimmingCharacters(in: .whitespaces)] =
                    String(item[item.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            } else {
                positional.append(item)
            }
        }
        guard let name = positional.first?.trimmingCharacters(in: .whitespaces), !name.isEmpty else {
            throw LoRAError.badTag(tag: tag, reason: "it names no LoRA; write <lora:NAME> or <lora:NAME:0.8>")
        }
        func number(_ text: String) throws -> Double {
            guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
                throw LoRAError.badTag(tag: tag, reason: "'\(text)' is not a multiplier; write a number such as 0.8")
            }
            return value
        }
        var te = positional.count > 1 ? try number(positional[1]) : 1
        if let value = named["te"] { te = try number(value) }
        var unet = positional.count > 2 ? try number(positional[2]) : te
        if let value = named["unet"] { unet = try number(value) }
        return LoRAReference(name: name, textEncoderMultiplier: te, unetMultiplier: unet)
    }
}
