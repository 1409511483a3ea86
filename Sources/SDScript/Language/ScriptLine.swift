/// One line of an `.sdscript` file or of interactive input, tokenised once.
///
/// The language is line-based: a command word, then the rest of the line verbatim as its argument.
/// Nothing needs quoting, so a prompt may contain commas, quotes, parentheses and `#`.
///
/// Comments:
/// - a line whose first non-blank character is `#` is a comment;
/// - a line starting `#=>` is a *result line* written by the transcript recorder (see `ResultRecord`);
/// - a trailing `  # …` after a command is a comment **only** for commands whose argument is a word or
///   a number (`seed`, `gen`, `set steps`, …; see `ArgumentKind`). For free-text arguments (`prompt`,
///   `negative`, paths) the `#` and everything after it belong to the argument.
public enum ScriptLine: Equatable, Sendable {
    case blank
    case comment(String)
    case result(ResultRecord)
    /// A malformed `#=>` line: kept so that `--check` can report it with its line number.
    case malformedResult(String)
    case command(CommandText)

    /// Tokenises one line (without its newline).
    public init(_ text: String) {
        let trimmed = text.trimmingWhitespace()
        if trimmed.isEmpty {
            self = .blank
        } else if trimmed.hasPrefix(ResultRecord.marker) {
            if let record = ResultRecord(line: trimmed) {
                self = .result(record)
            } else {
                self = .malformedResult(trimmed)
            }
        } else if trimmed.hasPrefix("#") {
            self = .comment(String(trimmed.dropFirst()).trimmingWhitespace())
        } else {
            self = .command(CommandText(trimmed))
        }
    }
}

/// A command word and its argument, as typed.
public struct CommandText: Equatable, Sendable {
    /// The command word, as typed (matching is case-insensitive).
    public var name: String
    /// The rest of the line, verbatim but for surrounding blanks.
    public var argument: String

    public init(name: String, argument: String) {
        self.name = name
        self.argument = argument
    }

    /// Splits `line` at its first run of blanks.
    public init(_ line: String) {
        let trimmed = line.trimmingWhitespace()
        if let space = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" }) {
            name = String(trimmed[..<space])
            argument = String(trimmed[space...]).trimmingWhitespace()
        } else {
            name = trimmed
            argument = ""
        }
    }
}

/// How a command's argument is read.
public enum ArgumentKind: Sendable {
    /// Free text, verbatim: `#` is part of it.
    case text
    /// Words or numbers: a trailing ` # comment` is dropped (the transcript writes `seed 42 # random`).
    case words
}

extension String {
    func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }

    /// The text before a trailing comment: a `#` at the start or after a blank, outside double quotes.
    func droppingTrailingComment() -> String {
        var previous: Character = " "
        var quoted = false
        for index in indices {
            let character = self[index]
            // Inside double quotes `#` is text (a grid's quoted value: X=sr:fox,"wolf #2").
            if character == "\"" { quoted.toggle() }
            if character == "#" && !quoted && (previous == " " || previous == "\t") {
                return String(self[..<index]).trimmingWhitespace()
            }
            previous = character
        }
        return self
    }

    /// Splits on runs of blanks.
    var words: [String] {
        split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    }
}
