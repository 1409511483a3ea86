/// AUTOMATIC1111's composable diffusion (`modules/prompt_parser.py`, `get_multicond_prompt_list`;
/// Liu et al. 2022, "Compositional Visual Generation with Composable Diffusion Models").
///
/// `a castle AND a dragon:0.7` is two prompts, each denoised on its own, whose guidance adds up:
///
///     noise = uncond + Σᵢ (condᵢ − uncond) · (weightᵢ · guidance scale)
///
/// - The prompt is split at `AND` in capitals, as a word of its own (`\bAND\b`).
/// - Each part may end in `:weight` (`\s*:\s*[-+]?(\d+\.?|\d*\.\d+)`, spaces allowed around the
///   colon); the default weight is 1. As in A1111 this applies without `AND` too: `a cat:1.5` is the
///   prompt `a cat` with 1.5 times the guidance.
/// - Each part keeps its own emphasis and prompt editing. A part's trailing white space is dropped
///   (it never makes tokens).
///
/// Only the prompt is composable; in the negative prompt `AND` is text, as in A1111.
public enum PromptComposition {
    public struct Part: Equatable, Sendable {
        public var text: String
        public var weight: Double

        public init(text: String, weight: Double = 1) {
            self.text = text
            self.weight = weight
        }
    }

    /// The parts of `prompt`, at least one.
    public static func parts(of prompt: String) -> [Part] {
        split(prompt).map(weighted)
    }

    /// True when the prompt is one part of weight 1: plain classifier-free guidance.
    public static func isPlain(_ parts: [Part]) -> Bool {
        parts.count == 1 && parts[0].weight == 1
    }

    /// `re.split(r"\bAND\b", prompt)`.
    static func split(_ prompt: String) -> [String] {
        let s = Array(prompt.unicodeScalars)
        // Python's `\w` on str: letters, digits and the underscore (any script).
        func isWord(_ c: Unicode.Scalar) -> Bool {
            c == "_" || c.properties.isAlphabetic || c.properties.numericType != nil
        }
        var parts: [String] = []
        var start = 0
        var i = 0
        while i + 3 <= s.count {
            if s[i] == "A", s[i + 1] == "N", s[i + 2] == "D",
               i == 0 || !isWord(s[i - 1]), i + 3 == s.count || !isWord(s[i + 3]) {
                parts.append(String(String.UnicodeScalarView(s[start..<i])))
                i += 3
                start = i
            } else {
                i += 1
            }
        }
        parts.append(String(String.UnicodeScalarView(s[start...])))
        return parts
    }

    /// A1111's `re_weight`, `^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$`: the shortest
    /// text that leaves an optional `:weight` and white space.
    static func weighted(_ part: String) -> Part {
        var s = Array(part.unicodeScalars)
        while let last = s.last, isSpace(last) { s.removeLast() }
        func text(_ end: Int) -> String { String(String.UnicodeScalarView(s[..<end])) }
        // The number at the end: digits and at most one point, with a digit somewhere.
        var i = s.count
        while i > 0, s[i - 1] == "." || ("0"..."9").contains(s[i - 1]) { i -= 1 }
        let number = s[i...]
        guard number.contains(where: { ("0"..."9").contains($0) }), number.filter({ $0 == "." }).count <= 1,
              // `\d+\.?` or `\d*\.\d+`: a point may end the number only after digits.
              !(number.first == "." && number.count == 1) else { return Part(text: text(s.count)) }
        var sign = ""
        if i > 0, s[i - 1] == "-" || s[i - 1] == "+" {
            i -= 1
            sign = String(s[i])
        }
        var colon = i
        while colon > 0, isSpace(s[colon - 1]) { colon -= 1 }
        guard colon > 0, s[colon - 1] == ":" else { return Part(text: text(s.count)) }
        var end = colon - 1
        while end > 0, isSpace(s[end - 1]) { end -= 1 }
        var digits = String(String.UnicodeScalarView(number))
        if digits.hasSuffix(".") { digits += "0" }
        if digits.hasPrefix(".") { digits = "0" + digits }
        guard let weight = Double(sign + digits) else { return Part(text: text(s.count)) }
        return Part(text: text(end), weight: weight)
    }

    /// Python's `\s`: Unicode white space and the separators U+001C…U+001F.
    static func isSpace(_ c: Unicode.Scalar) -> Bool {
        c.properties.isWhitespace || (0x1C...0x1F).contains(c.value)
    }
}
