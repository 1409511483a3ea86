import Foundation

/// A1111's "infotext": the text in a PNG's `parameters` chunk and a JPEG's EXIF UserComment,
/// read by A1111's "PNG Info" tab, civitai and prompt-reader tools.
///
/// Layout (A1111 `processing.create_infotext`):
///
///     a red fox in snow, highly detailed          <- prompt, possibly several lines
///     Negative prompt: blurry                      <- omitted when empty; may span lines
///     Steps: 25, Sampler: PLMS, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model hash: ..., Version: sdrepl 0.1.0
///
/// Values containing `,`, `:` or a newline are JSON-quoted (`infotext_utils.quote`); a key whose
/// value equals its name is written alone. Parsing follows `infotext_utils.parse_generation_parameters`.
public enum Infotext {
    /// Renders a recipe as A1111 does: prompt, `Negative prompt:` line if non-empty, parameters
    /// line; the whole text stripped of surrounding whitespace.
    public static func render(_ recipe: ImageRecipe) -> String {
        let params = parameters(of: recipe)
            .map { $0.key == $0.value ? $0.key : "\($0.key): \(quote($0.value))" }
            .joined(separator: ", ")
        let negative = recipe.negativePrompt.isEmpty ? "" : "\nNegative prompt: \(recipe.negativePrompt)"
        return pythonStrip("\(recipe.prompt)\(negative)\n\(params)")
    }

    /// The parameters line's fields in A1111's order: Steps, Sampler, CFG scale, Seed, Size,
    /// Model hash, Model, Clip skip (only when > 1), Style, the extra fields, Version.
    public static func parameters(of recipe: ImageRecipe) -> [ImageRecipe.Field] {
        var fields: [ImageRecipe.Field] = []
        func add(_ key: String, _ value: String?) {
            if let value { fields.append(.init(key, value)) }
        }
        add("Steps", recipe.steps.map(String.init))
        add("Sampler", recipe.sampler)
        add("CFG scale", recipe.cfgScale.map(formatNumber))
        add("Seed", recipe.seed.map(String.init))
        if let width = recipe.width, let height = recipe.height { add("Size", "\(width)x\(height)") }
        add("Model hash", recipe.modelHash)
        add("Model", recipe.modelName)
        if recipe.clipSkip > 1 { add("Clip skip", String(recipe.clipSkip)) }
        if let style = recipe.style, style != "none" { add("Style", style) }
        fields += recipe.extra
        add("Version", recipe.version)
        return fields
    }

    /// Parses an infotext the way A1111's `parse_generation_parameters` does.
    ///
    /// The last line is the parameters line if the `re_param` pattern finds at least three
    /// `Key: value` pairs in it; otherwise it belongs to the prompt. Lines from the first one
    /// starting `Negative prompt:` on are the negative prompt. Each line is stripped and lines are
    /// joined with `\n`. Quoted values are JSON-unquoted; `Size: WxH` gives width and height.
    /// Known keys fill the recipe's fields; a known key whose value does not parse, and every
    /// unknown key, goes to `extra` in order. Never fails: text that is not an infotext becomes
    /// a prompt.
    public static func parse(_ text: String) -> ImageRecipe {
        var lines = splitLines(pythonStrip(text))
        var lastLine = lines.removeLast()
        if fields(inParametersLine: lastLine).count < 3 {
            lines.append(lastLine)
            lastLine = ""
        }
        var prompt = ""
        var negative = ""
        var doneWithPrompt = false
        let marker = "Negative prompt:".unicodeScalars
        for rawLine in lines {
            var line = pythonStrip(rawLine)
            if line.unicodeScalars.starts(with: marker) {
                doneWithPrompt = true
                line = pythonStrip(String(line.unicodeScalars.dropFirst(marker.count)))
            }
            if doneWithPrompt {
                negative += (negative.isEmpty ? "" : "\n") + line
            } else {
                prompt += (prompt.isEmpty ? "" : "\n") + line
            }
        }

        var recipe = ImageRecipe(prompt: prompt, negativePrompt: negative)
        for field in fields(inParametersLine: lastLine) {
            let value = field.value
            let trimmed = value.trimmingCharacters(in: .whitespaces)
            var used = true
            switch field.key {
            case "Steps": used = assign(Int(trimmed), to: &recipe.steps)
            case "Sampler": recipe.sampler = value
            case "CFG scale": used = assign(Double(trimmed), to: &recipe.cfgScale)
            case "Seed": used = assign(UInt64(trimmed), to: &recipe.seed)
            case "Size":
                if let (w, h) = imageSize(value) {
                    recipe.width = w
                    recipe.height = h
                } else {
                    used = false
                }
            case "Model hash": recipe.modelHash = value
            case "Model": recipe.modelName = value
            case "Clip skip":
                if let n = Int(trimmed) { recipe.clipSkip = n } else { used = false }
            case "Style": recipe.style = value
            case "Version": recipe.version = value
            default: used = false
            }
            if !used { recipe.extra.append(field) }
        }
        return recipe
    }

    private static func assign<T>(_ value: T?, to target: inout T?) -> Bool {
        guard let value else { return false }
        target = value
        return true
    }

    // MARK: - The parameters line

    /// The `Key: value` pairs of a parameters line, as A1111's loop over `re_param.findall` keeps
    /// them: quoted values unquoted, pairs with an empty value dropped (A1111's `v[0]` raises on
    /// them and the pair is skipped), a repeated key keeping its first position and last value.
    ///
    /// The pattern is A1111's `re_param`, matched over Unicode scalars as Python matches code
    /// points (with grapheme semantics a comma followed by a combining mark would not be a comma).
    public static func fields(inParametersLine line: String) -> [ImageRecipe.Field] {
        let pattern = #/\s*(\w[\w \-\/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/#
        var result: [ImageRecipe.Field] = []
        for match in line.matches(of: pattern.matchingSemantics(.unicodeScalar)) {
            let key = String(match.output.1)
            var value = String(match.output.2)
            guard !value.isEmpty else { continue }
            if value.unicodeScalars.first == "\"" && value.unicodeScalars.last == "\"" {
                value = unquote(value)
            }
            if let index = result.firstIndex(where: { $0.key == key }) {
                result[index].value = value
            } else {
                result.append(.init(key, value))
            }
        }
        return result
    }

    /// `re_imagesize`: `^(\d+)x(\d+)$`.
    static func imageSize(_ value: String) -> (Int, Int)? {
        let parts = value.split(separator: "x", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
            let w = Int(parts[0]), let h = Int(parts[1])
        else { return nil }
        return (w, h)
    }

    // MARK: - Quoting

    /// A1111's `quote`: text without `,`, `:` or `\n` is returned as is; otherwise
    /// `json.dumps(text, ensure_ascii=False)`: wrapped in `"`, with `"` and `\` escaped, `\n`,
    /// `\r`, `\t`, `\b`, `\f` as two-character escapes, other control characters below U+0020 as
    /// `\u00xx`, and everything else (non-ASCII included) written as is.
    public static func quote(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == ":" }) || text.unicodeScalars.contains("\n") else {
            return text
        }
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// A1111's `unquote`: `json.loads` of a text that starts and ends with `"`, or the text
    /// unchanged if it is not exactly one valid JSON string (Python's strict decoder: raw control
    /// characters are invalid; `\uXXXX` surrogate pairs are combined).
    public static func unquote(_ text: String) -> String {
        let scalars = Array(text.unicodeScalars)
        guard scalars.count >= 2, scalars.first == "\"", scalars.last == "\"" else { return text }
        var out = String.UnicodeScalarView()
        var i = 1
        let end = scalars.count - 1
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= end else { return nil }
            return UInt32(String(String.UnicodeScalarView(scalars[at..<at + 4])), radix: 16)
        }
        while i < end {
            let c = scalars[i]
            if c == "\"" || c.value < 0x20 { return text }  // an inner quote ends the string early
            if c != "\\" {
                out.append(c)
                i += 1
                continue
            }
            guard i + 1 < end else { return text }
            let e = scalars[i + 1]
            i += 2
            switch e {
            case "\"": out.append("\"")
            case "\\": out.append("\\")
            case "/": out.append("/")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            case "u":
                guard let unit = hex4(i) else { return text }
                i += 4
                var value = unit
                if (0xD800..<0xDC00).contains(unit), i + 1 < end, scalars[i] == "\\", scalars[i + 1] == "u",
                    let low = hex4(i + 2), (0xDC00..<0xE000).contains(low)
                {
                    value = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                }
                out.append(Unicode.Scalar(value) ?? "\u{FFFD}")  // a lone surrogate
            default:
                return text
            }
        }
        return String(out)
    }

    // MARK: - Python string semantics

    /// CFG scale as A1111 usually shows it: `7` for whole numbers, otherwise the shortest
    /// round-tripping decimal (`7.5`), which is also Python's `repr`.
    static func formatNumber(_ value: Double) -> String {
        if value.isFinite, value == value.rounded(), abs(value) < 1e15 {
            return String(Int64(value))
        }
        return String(value)
    }

    /// Python's `str.split("\n")`: splits on U+000A only (a `\r\n` keeps its `\r`).
    static func splitLines(_ text: String) -> [String] {
        text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
    }

    /// Python's `str.strip()`: removes leading and trailing characters for which `isspace()` holds.
    static func pythonStrip(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isPythonSpace($0) }),
            let last = scalars.lastIndex(where: { !isPythonSpace($0) })
        else { return "" }
        return String(scalars[first...last])
    }

    static func isPythonSpace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }
}
