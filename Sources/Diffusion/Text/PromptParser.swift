/// A prompt that cannot be parsed.
public enum PromptError: Error, CustomStringConvertible, Equatable {
    /// `(text:weight)` whose weight is not a number, such as `(cat:1.2.3)` or `(cat:.)`.
    /// `offset` counts Unicode scalars from the start of the prompt to the colon.
    case invalidWeight(String, offset: Int)

    public var description: String {
        switch self {
        case .invalidWeight(let weight, let offset):
            return "\"\(weight)\" at character \(offset + 1) is not a weight; write (text:1.2), or escape the brackets as \\( \\)"
        }
    }
}

/// One piece of a parsed prompt: text with its attention weight, or a `BREAK`.
public enum PromptFragment: Equatable, Sendable {
    /// Text whose tokens are multiplied by `weight` (1 for plain text).
    case text(String, weight: Double)
    /// `BREAK`: the tokens after it start a new 75-token chunk.
    case chunkBreak
}

/// AUTOMATIC1111's prompt-attention syntax (`modules/prompt_parser.py`, `parse_prompt_attention`).
///
/// - `(text)` multiplies the weight of `text` by 1.1, `[text]` divides it by 1.1; they nest, so
///   `((text))` is 1.21.
/// - `(text:1.3)` multiplies by 1.3 (spaces are allowed around the number: `(text: 1.3 )`).
/// - `\(`, `\)`, `\[`, `\]`, `\\` are the literal characters; a backslash before anything else is
///   dropped.
/// - A bracket that never closes applies from where it opens to the end of the prompt; a closing
///   bracket with nothing to close is literal text, as is `:` outside `(text:weight)`.
/// - `BREAK` in capitals, as a word of its own, starts a new chunk; the white space around it is
///   dropped.
/// - Runs of equal weight are merged, as A1111 merges them.
///
/// Weights are computed in `Double` with the same multiplications in the same order as A1111, so
/// `(((house:1.3))` is 1.5730000000000004 exactly as Python prints it.
///
/// One deliberate difference: A1111 marks `BREAK` with the weight −1, which brackets then multiply,
/// so `(a BREAK b)` there feeds the word "break" with weight −1.1 to the encoder instead of breaking.
/// Here `BREAK` always breaks, inside brackets or not.
public enum PromptParser {
    /// Parses `prompt` into weighted text and breaks.
    ///
    /// - Parameter prompt: a prompt in A1111 syntax.
    /// - Returns: the fragments in order; `[.text("", weight: 1)]` for an empty prompt.
    /// - Throws: `PromptError.invalidWeight` when `(text:weight)` inside round brackets has a weight
    ///   that is not a number (A1111 fails on the same prompts with a Python `ValueError`).
    public static func parse(_ prompt: String) throws -> [PromptFragment] {
        let s = Array(prompt.unicodeScalars)
        // A1111's `res`: text and weight, with `nil` text standing for BREAK.
        var result: [(text: String?, weight: Double)] = []
        var roundBrackets: [Int] = []
        var squareBrackets: [Int] = []

        func multiply(from start: Int, by multiplier: Double) {
            for p in start..<result.count where result[p].text != nil { result[p].weight *= multiplier }
        }

        var i = 0
        while i < s.count {
            let c = s[i]
            switch c {
            case "\\":
                // `\(` `\)` `\[` `\]` `\\` are literals; a lone backslash contributes "".
                if i + 1 < s.count, "()[]\\".unicodeScalars.contains(s[i + 1]) {
                    result.append((String(s[i + 1]), 1))
                    i += 2
                } else {
                    result.append(("", 1))
                    i += 1
                }
            case "(":
                roundBrackets.append(result.count)
                i += 1
            case "[":
                squareBrackets.append(result.count)
                i += 1
            case ":":
                if let (weightText, end) = weightSuffix(s, colon: i) {
                    if let start = roundBrackets.popLast() {
                        guard let weight = parseNumber(weightText) else {
                            throw PromptError.invalidWeight(String(String.UnicodeScalarView(weightText)), offset: i)
                        }
                        multiply(from: start, by: weight)
                    } else {
                        // `:1.3)` with no open round bracket is literal text (A1111's last branch).
                        appendText(s[i..<end], to: &result)
                    }
                    i = end
                } else {
                    appendText(s[i..<(i + 1)], to: &result)
                    i += 1
                }
            case ")":
                if let start = roundBrackets.popLast() {
                    multiply(from: start, by: roundMultiplier)
                } else {
                    appendText(s[i..<(i + 1)], to: &result)
                }
                i += 1
            case "]":
                if let start = squareBrackets.popLast() {
                    multiply(from: start, by: squareMultiplier)
                } else {
                    appendText(s[i..<(i + 1)], to: &result)
                }
                i += 1
            default:
                var end = i + 1
                while end < s.count, !"\\()[]:".unicodeScalars.contains(s[end]) { end += 1 }
                appendText(s[i..<end], to: &result)
                i = end
            }
        }
        // Unclosed brackets apply to the end, innermost last, as A1111's final loops do.
        for start in roundBrackets { multiply(from: start, by: roundMultiplier) }
        for start in squareBrackets { multiply(from: start, by: squareMultiplier) }

        if result.isEmpty { result = [("", 1)] }

        var fragments: [PromptFragment] = []
        for (text, weight) in result {
            guard let text else {
                fragments.append(.chunkBreak)
                continue
            }
            if case .text(let previous, let previousWeight)? = fragments.last, previousWeight == weight {
                fragments[fragments.count - 1] = .text(previous + text, weight: weight)
            } else {
                fragments.append(.text(text, weight: weight))
            }
        }
        return fragments
    }

    static let roundMultiplier = 1.1
    static let squareMultiplier = 1 / 1.1

    /// Appends a run of plain text, split at `BREAK` as A1111's `re.split(r"\s*\bBREAK\b\s*", text)`:
    /// the parts with weight 1, a break between each two.
    private static func appendText(_ text: ArraySlice<Unicode.Scalar>, to result: inout [(text: String?, weight: Double)]) {
        var partStart = text.startIndex
        var i = text.startIndex
        let breakWord = Array("BREAK".unicodeScalars)
        while i < text.endIndex {
            let end = i + breakWord.count
            let isWordStart = i == text.startIndex || !isWordCharacter(text[i - 1])
            if isWordStart, end <= text.endIndex, text[i..<end].elementsEqual(breakWord),
               end == text.endIndex || !isWordCharacter(text[end]) {
                // `\s*` on both sides belongs to the separator.
                var before = i
                while before > partStart, isPythonSpace(text[before - 1]) { before -= 1 }
                var after = end
                while after < text.endIndex, isPythonSpace(text[after]) { after += 1 }
                result.append((String(String.UnicodeScalarView(text[partStart..<before])), 1))
                result.append((nil, 1))
                partStart = after
                i = after
            } else {
                i += 1
            }
        }
        result.append((String(String.UnicodeScalarView(text[partStart...])), 1))
    }

    /// Matches A1111's `:\s*([+-]?[.\d]+)\s*\)` at `colon`: returns the number's scalars and the
    /// index after `)`.
    private static func weightSuffix(_ s: [Unicode.Scalar], colon: Int) -> (ArraySlice<Unicode.Scalar>, Int)? {
        var i = colon + 1
        while i < s.count, isPythonSpace(s[i]) { i += 1 }
        let numberStart = i
        if i < s.count, s[i] == "+" || s[i] == "-" { i += 1 }
        let digitsStart = i
        while i < s.count, s[i] == "." || s[i].properties.generalCategory == .decimalNumber { i += 1 }
        guard i > digitsStart else { return nil }
        let numberEnd = i
        while i < s.count, isPythonSpace(s[i]) { i += 1 }
        guard i < s.count, s[i] == ")" else { return nil }
        return (s[numberStart..<numberEnd], i + 1)
    }

    /// Python's `float()` of `[+-]?[.\d]+`: any decimal digits (Unicode Nd, as Python accepts), at
    /// most one point, at least one digit. Correctly rounded, like Python.
    private static func parseNumber(_ text: ArraySlice<Unicode.Scalar>) -> Double? {
        var ascii = ""
        var points = 0
        var digits = 0
        for c in text {
            if c == "." {
                points += 1
                ascii.append(".")
            } else if c == "+" || c == "-" {
                ascii.append(Character(c))
            } else if let value = c.properties.numericValue, c.properties.generalCategory == .decimalNumber {
                digits += 1
                ascii += String(Int(value))
            } else {
                return nil
            }
        }
        guard points <= 1, digits > 0 else { return nil }
        return Double(ascii)
    }

    /// Python's `\w` on `str`: letters (L*), anything with a numeric value, and `_`.
    private static func isWordCharacter(_ c: Unicode.Scalar) -> Bool {
        if c == "_" || c.properties.numericType != nil { return true }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// Python's `\s` on `str` (`str.isspace`): Unicode White_Space plus the separators U+001C…U+001F.
    static func isPythonSpace(_ c: Unicode.Scalar) -> Bool {
        c.properties.isWhitespace || (0x1C...0x1F).contains(c.value)
    }
}
