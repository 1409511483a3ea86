/// A prompt whose text changes while sampling: AUTOMATIC1111's prompt editing and alternation
/// (`modules/prompt_parser.py`, `get_learned_conditioning_prompt_schedules`, its current form with
/// `use_old_scheduling` off and no hires pass).
///
/// - `[from:to:when]` is `from` up to step `when`, then `to`; `[to:when]` adds `to` after `when`;
///   `[from::when]` removes `from` after `when`. They nest: `a[b:[c:d:2]:1]e`.
/// - `when` with a decimal point is a fraction of the steps (`0.25` of 20 is step 5); without one it is
///   a step number (`10`); either is truncated toward zero and capped at `steps`. A `when` below 1 means
///   the `to` text from the first step.
/// - `[a|b|c]` alternates `a`, `b`, `c`, `a`, … from step to step; options may be empty (`[fe|]male`).
/// - Anything else is the text as written: emphasis `(…)`, `[…]`, `(…:1.2)` and escapes pass through
///   to `PromptParser`, which applies them to each scheduled text.
/// - A prompt that does not fit A1111's grammar (a `|` outside `[…|…]`, a backslash at the very end or
///   before a line break) is not scheduled at all: it stays one text, as A1111 leaves it.
///
/// Entries are A1111's `[end_at_step, text]` pairs: the text serves up to and including
/// `endAtStep`. The last entry always ends at `steps`.
public struct PromptSchedule: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        /// The last step (1-based, as A1111 counts them here) this text serves.
        public var endAtStep: Int
        public var prompt: String

        public init(endAtStep: Int, prompt: String) {
            self.endAtStep = endAtStep
            self.prompt = prompt
        }
    }

    /// At least one entry, in increasing `endAtStep`.
    public let entries: [Entry]

    /// Schedules `prompt` over `steps` sampling steps.
    ///
    /// - Parameters:
    ///   - prompt: a prompt in A1111 syntax.
    ///   - steps: the number of sampling steps (at least 1).
    public init(_ prompt: String, steps: Int) {
        let steps = max(steps, 1)
        guard let tree = ScheduleGrammar(prompt).parse() else {
            entries = [Entry(endAtStep: steps, prompt: prompt)]
            return
        }
        var ends: Set<Int> = [steps]
        Self.collectSteps(tree, steps: steps, into: &ends)
        entries = ends.sorted().map { Entry(endAtStep: $0, prompt: Self.render(tree, atStep: $0, steps: steps)) }
    }

    /// True when the text changes during sampling.
    public var isScheduled: Bool { entries.count > 1 }

    /// The distinct texts, in order of first use.
    public var prompts: [String] {
        var seen: Set<String> = []
        return entries.map(\.prompt).filter { seen.insert($0).inserted }
    }

    /// The entry for the model evaluation `index` (0-based), as A1111's `reconstruct_cond_batch`
    /// picks it with its step counter: the first entry with `index <= endAtStep`. So the text of an
    /// entry ending at step k serves evaluations 0 … k, one more than k, exactly as in A1111.
    public func entryIndex(forEvaluation index: Int) -> Int {
        entries.firstIndex { index <= $0.endAtStep } ?? entries.count - 1
    }

    // MARK: - Steps and texts

    /// A1111's `when`: fraction of `steps` with a decimal point, else a step; truncated, at most `steps`.
    static func step(of number: String, steps: Int) -> Int {
        guard var value = Double(number) else { return steps }
        if number.contains(".") { value *= Double(steps) }
        // Every value below 1 acts alike (the `to` text from the first step), so clamping at 0 changes
        // nothing and keeps the conversion in range.
        let truncated = value.rounded(.towardZero)
        return truncated >= Double(steps) ? steps : Int(max(truncated, 0))
    }

    private static func collectSteps(_ nodes: [ScheduleNode], steps: Int, into ends: inout Set<Int>) {
        for node in nodes {
            switch node {
            case .text: break
            case .group(let children): collectSteps(children, steps: steps, into: &ends)
            case .scheduled(let before, let after, let when):
                let step = Self.step(of: when, steps: steps)
                if step >= 1 { ends.insert(step) }
                collectSteps(before, steps: steps, into: &ends)
                collectSteps(after, steps: steps, into: &ends)
            case .alternate(let options):
                ends.formUnion(1...steps)
                options.forEach { collectSteps($0, steps: steps, into: &ends) }
            }
        }
    }

    private static func render(_ nodes: [ScheduleNode], atStep step: Int, steps: Int) -> String {
        var text = ""
        for node in nodes {
            switch node {
            case .text(let piece): text += piece
            case .group(let children): text += render(children, atStep: step, steps: steps)
            case .scheduled(let before, let after, let when):
                text += render(step <= Self.step(of: when, steps: steps) ? before : after, atStep: step, steps: steps)
            case .alternate(let options):
                text += render(options[(step - 1) % options.count], atStep: step, steps: steps)
            }
        }
        return text
    }
}

/// A parsed piece of a schedulable prompt.
indirect enum ScheduleNode: Equatable {
    /// Text kept as written (plain text, white space, brackets of emphasis, stray brackets).
    case text(String)
    /// Emphasis `(…)`, `(…:…)`, `[…]`: its brackets are `.text` children.
    case group([ScheduleNode])
    /// `[before:after:when]`; `before` is empty for `[after:when]`. `when` is the number as written.
    case scheduled(before: [ScheduleNode], after: [ScheduleNode], when: String)
    /// `[a|b|…]`, at least two options.
    case alternate([[ScheduleNode]])
}

/// A recursive-descent reading of A1111's Lark grammar for schedules:
///
///     start:       (prompt | /[][():]/+)*
///     prompt:      (emphasized | scheduled | alternate | plain | WHITESPACE)*
///     emphasized:  "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
///     scheduled:   "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
///     alternate:   "[" prompt ("|" [prompt])+ "]"
///     plain:       /([^\\\[\]():|]|\\.)+/
///
/// Inside brackets the next character after each inner prompt decides the rule (`]`, `)`, `|` or
/// `:`), so no backtracking is needed there. At the top level a bracket that does not close as one of
/// the rules is a stray character, as `start` allows; where both readings exist the structured one is
/// taken, as A1111's parser does (`a [b:3]` is scheduled). A `|` that is not inside an alternation,
/// or a backslash with nothing after it on its line, fits no rule: the whole prompt is then not
/// scheduled.
struct ScheduleGrammar {
    private let s: [Unicode.Scalar]

    init(_ prompt: String) {
        s = Array(prompt.unicodeScalars)
    }

    /// The prompt's pieces, or nil when it does not fit the grammar.
    func parse() -> [ScheduleNode]? {
        var nodes: [ScheduleNode] = []
        var i = 0
        while true {
            let (prompt, end) = parsePrompt(from: i)
            nodes += prompt
            i = end
            guard i < s.count else { return nodes }
            // What stopped the prompt: a stray bracket or colon, or something no rule takes.
            guard "[]():".unicodeScalars.contains(s[i]) else { return nil }
            nodes.append(.text(String(s[i])))
            i += 1
        }
    }

    /// The longest run of prompt items from `i`: stops at `:`, `|`, `]`, `)`, at a bracket that does not
    /// close as a rule, at a backslash with nothing after it, or at the end.
    private func parsePrompt(from start: Int) -> ([ScheduleNode], Int) {
        var nodes: [ScheduleNode] = []
        var i = start
        var plain = String.UnicodeScalarView()
        func flush() {
            if !plain.isEmpty { nodes.append(.text(String(plain))); plain = String.UnicodeScalarView() }
        }
        while i < s.count {
            let c = s[i]
            if c == "[" || c == "(" {
                guard let (node, end) = parseBracket(at: i) else { break }
                flush()
                nodes.append(node)
                i = end
            } else if c == ":" || c == "|" || c == "]" || c == ")" {
                break
            } else if c == "\\" {
                // `\\.`: any character but a line break ('.' in Python's re), kept with its backslash.
                guard i + 1 < s.count, s[i + 1] != "\n" else { break }
                plain.append(c)
                plain.append(s[i + 1])
                i += 2
            } else {
                plain.append(c)
                i += 1
            }
        }
        flush()
        return (nodes, i)
    }

    /// One bracketed rule starting at `i` (`[` or `(`) and the index after it, or nil.
    private func parseBracket(at i: Int) -> (ScheduleNode, Int)? {
        let (first, j) = parsePrompt(from: i + 1)
        guard j < s.count else { return nil }
        if s[i] == "(" {
            // "(" prompt ")" | "(" prompt ":" prompt ")"
            if s[j] == ")" { return (.group([.text("(")] + first + [.text(")")]), j + 1) }
            guard s[j] == ":" else { return nil }
            let (second, k) = parsePrompt(from: j + 1)
            guard k < s.count, s[k] == ")" else { return nil }
            return (.group([.text("(")] + first + [.text(":")] + second + [.text(")")]), k + 1)
        }
        switch s[j] {
        case "]":
            return (.group([.text("[")] + first + [.text("]")]), j + 1)
        case "|":
            var options = [first]
            var k = j
            while k < s.count, s[k] == "|" {
                let (option, end) = parsePrompt(from: k + 1)
                options.append(option)
                k = end
            }
            guard k < s.count, s[k] == "]" else { return nil }
            return (.alternate(options), k + 1)
        case ":":
            // "[" prompt ":" NUMBER "]" (add after), else "[" prompt ":" prompt ":" NUMBER "]".
            if let (when, end) = parseWhen(at: j + 1) {
                return (.scheduled(before: [], after: first, when: when), end)
            }
            let (second, k) = parsePrompt(from: j + 1)
            guard k < s.count, s[k] == ":", let (when, end) = parseWhen(at: k + 1) else { return nil }
            return (.scheduled(before: first, after: second, when: when), end)
        default:
            return nil
        }
    }

    /// `[WHITESPACE] NUMBER [WHITESPACE] "]"` from `i`: the number as written and the index after `]`.
    private func parseWhen(at start: Int) -> (String, Int)? {
        var i = skipWhitespace(from: start)
        guard let end = numberEnd(from: i) else { return nil }
        let number = String(String.UnicodeScalarView(s[i..<end]))
        i = skipWhitespace(from: end)
        guard i < s.count, s[i] == "]" else { return nil }
        return (number, i + 1)
    }

    private func skipWhitespace(from start: Int) -> Int {
        var i = start
        // Python's `\s`: Unicode white space and the separators U+001C…U+001F.
        while i < s.count, s[i].properties.isWhitespace || (0x1C...0x1F).contains(s[i].value) { i += 1 }
        return i
    }

    /// Lark's SIGNED_NUMBER: `[+-]? (INT | INT "." INT? | "." INT) ([eE] [+-]? INT)?`, matched as
    /// Python's `re` does (first alternative that matches, each part greedy).
    private func numberEnd(from start: Int) -> Int? {
        func digits(from index: Int) -> Int {
            var i = index
            while i < s.count, ("0"..."9").contains(s[i]) { i += 1 }
            return i
        }
        var i = start
        if i < s.count, s[i] == "+" || s[i] == "-" { i += 1 }
        let integerEnd = digits(from: i)
        var end: Int
        if integerEnd > i {
            end = integerEnd
            if end < s.count, s[end] == "." { end = digits(from: end + 1) }
        } else {
            guard i < s.count, s[i] == ".", digits(from: i + 1) > i + 1 else { return nil }
            end = digits(from: i + 1)
        }
        // An exponent only counts when it is complete: `1e` is the number 1 followed by `e`.
        if end < s.count, s[end] == "e" || s[end] == "E" {
            var k = end + 1
            if k < s.count, s[k] == "+" || s[k] == "-" { k += 1 }
            let exponentEnd = digits(from: k)
            if exponentEnd > k { end = exponentEnd }
        }
        return end
    }
}
