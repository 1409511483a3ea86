import Foundation

/// What one axis of `grid` varies, as A1111's X/Y/Z plot axis types.
enum GridAxisKind: String, CaseIterable {
    case seed, cfg, steps, sampler, size, strength, lora, sr

    /// Other spellings (A1111's labels, the settings' aliases).
    static let aliases = ["prompt-sr": "sr", "s/r": "sr", "prompt": "sr", "guidance": "cfg", "cfg-scale": "cfg",
                          "denoising": "strength", "lora-weight": "lora", "sampler-name": "sampler"]

    static var names: [String] { allCases.map(\.rawValue) }

    static func named(_ name: String) -> GridAxisKind? {
        let key = name.lowercased().replacingOccurrences(of: "_", with: "-")
        return GridAxisKind(rawValue: aliases[key] ?? key)
    }

    /// A1111's label for the axis on the sheet.
    var label: String {
        switch self {
        case .seed: return "Seed"
        case .cfg: return "CFG Scale"
        case .steps: return "Steps"
        case .sampler: return "Sampler"
        case .size: return "Size"
        case .strength: return "Denoising"
        case .lora: return "LoRA weight"
        case .sr: return "Prompt S/R"
        }
    }

    /// How values are read: whole-number ranges, decimal ranges, or words.
    fileprivate enum Values { case integers, decimals, words }
    fileprivate var values: Values {
        switch self {
        case .seed, .steps: return .integers
        case .cfg, .strength, .lora: return .decimals
        case .sampler, .size, .sr: return .words
        }
    }
}

/// One axis of a grid: what it varies and its values, as text `set` accepts.
struct GridAxis: Equatable {
    let kind: GridAxisKind
    let values: [String]

    /// The label of value `i` on the sheet, as A1111's `format_value_add_label` (`Seed: 3`); the
    /// sampler and prompt S/R show the value alone, as A1111's `format_value`.
    func label(_ i: Int) -> String {
        kind == .sampler || kind == .sr ? values[i] : "\(kind.label): \(values[i])"
    }

    /// The axis's value list: comma-separated as a CSV line (a value with a comma is quoted, as
    /// A1111's Prompt S/R), each a value or, for numbers, a range expanded as A1111 does:
    /// `1-4` (step 1; downwards when the end is smaller), `5-9:2` or `5-9 (+2)` (a step),
    /// `1-2 [5]` (five values evenly spaced, ends included).
    /// - Throws: a one-line message for a range that does not read.
    static func parse(kind: GridAxisKind, text: String, axis: String) throws -> GridAxis {
        let fields = try splitCSV(text, axis: axis)
        guard !fields.isEmpty, !fields.allSatisfy(\.isEmpty) else {
            throw ScriptError.badArgument(command: "grid", argument: "\(axis)=\(kind.rawValue):",
                                          reason: "no values; expected e.g. \(axis)=\(kind.rawValue):\(example(kind)), got")
        }
        var values: [String] = []
        for field in fields {
            switch kind.values {
            case .words: values.append(field)
            case .integers, .decimals: values += try expand(field, integers: kind.values == .integers, axis: axis)
            }
        }
        return GridAxis(kind: kind, values: values)
    }

    static func example(_ kind: GridAxisKind) -> String {
        switch kind {
        case .seed: return "1-4"
        case .cfg: return "5-9:2"
        case .steps: return "10,20,30"
        case .sampler: return "euler,dpmpp-2m"
        case .size: return "512x512,512x768"
        case .strength: return "0.3,0.5,0.7"
        case .lora: return "0.25-1 [4]"
        case .sr: return "\"red fox\",grey wolf"
        }
    }

    /// Python's `csv.reader(..., skipinitialspace=True)` on one line, each field stripped, as A1111's
    /// `csv_string_to_list_strip`: quotes group a field with commas, `""` inside quotes is a quote.
    static func splitCSV(_ text: String, axis: String) throws -> [String] {
        var fields: [String] = []
        var field = ""
        var quoted = false, inQuotes = false, atFieldStart = true
        var characters = Array(text)[...]
        while let c = characters.popFirst() {
            if inQuotes {
                if c == "\"" {
                    if characters.first == "\"" { field.append("\""); characters.removeFirst() } else { inQuotes = false }
                } else {
                    field.append(c)
                }
            } else if c == "," {
                fields.append(quoted ? field : field.trimmingWhitespace())
                field = ""
                quoted = false
                atFieldStart = true
            } else if c == "\"" && field.allSatisfy({ $0 == " " }) && atFieldStart {
                field = ""
                inQuotes = true
                quoted = true
            } else {
                if c != " " { atFieldStart = false }
                field.append(c)
            }
        }
        guard !inQuotes else {
            throw ScriptError.badArgument(command: "grid", argument: "\(axis)=…\(text)",
                                          reason: "a quote is not closed in the values", suggestion: nil)
        }
        fields.append(quoted ? field : field.trimmingWhitespace())
        return fields.map { $0.trimmingWhitespace() }
    }

    /// One field: a number as it is, or a range's numbers.
    static func expand(_ field: String, integers: Bool, axis: String) throws -> [String] {
        // start-end, then a step (`:S` or A1111's `(+S)`) or a count (A1111's `[N]`).
        let range = #/^\s*([+-]?\d+(?:\.\d*)?)\s*-\s*([+-]?\d+(?:\.\d*)?)\s*(?::\s*([+-]?\d+(?:\.\d*)?)|\(\s*([+-]\d+(?:\.\d*)?)\s*\)|\[\s*(\d+)\s*\])?\s*$/#
        guard let match = field.wholeMatch(of: range) else { return [field] }
        let steps = [match.output.3, match.output.4].compactMap { $0 }.first.map(String.init)
        let counted = match.output.5.map(String.init)
        let bad = { (reason: String) in
            ScriptError.badArgument(command: "grid", argument: field, reason: reason, suggestion: nil)
        }
        guard let start = Double(match.output.1), let end = Double(match.output.2) else { return [field] }
        guard start.isFinite, end.isFinite, abs(start) < 1e38, abs(end) < 1e38 else { throw bad("a number too large in") }
        if integers && (start != start.rounded() || end != end.rounded()) { throw bad("expected a range of whole numbers, got") }
        if let count = counted.flatMap({ Int($0) }) {
            // A1111's `[N]`: numpy.linspace(start, end, N), whole numbers truncated as `astype(int)`.
            guard (1...1000).contains(count) else { throw bad("expected from 1 to 1000 values in [N], got") }
            let numbers = (0..<count).map { count == 1 ? start : start + (end - start) * Double($0) / Double(count - 1) }
            return numbers.map { integers ? String(Int128($0.rounded(.towardZero))) : formatDecimal($0) }
        }
        if integers {
            // Whole numbers exactly, in 128 bits: seeds go up to 2^64 − 1, past what a Double holds.
            func whole(_ text: Substring?) throws -> Int128? {
                guard var digits = text.map(String.init) else { return nil }
                if let dot = digits.firstIndex(of: ".") { digits = String(digits[..<dot]) }  // `7.0`: whole, checked above
                guard let value = Int128(digits) else { throw bad("a number too large in") }
                return value
            }
            guard let first = try whole(match.output.1), let last = try whole(match.output.2) else { return [field] }
            if let text = steps, Double(text).map({ $0 != $0.rounded() }) ?? true { throw bad("expected a whole-number step in") }
            let step = try whole(steps.map { Substring($0) }) ?? (last >= first ? 1 : -1)
            guard step != 0, (last - first).signum() * step.signum() >= 0 else { throw bad("the step goes away from the range's end in") }
            let count = (last - first) / step + 1
            guard count <= 1000 else { throw bad("more than 1000 values in the range") }
            return (0..<Int(count)).map { String(first + Int128($0) * step) }
        }
        let step = Double(steps ?? "") ?? (end >= start ? 1 : -1)
        guard step != 0, step.isFinite, (end - start) / step >= 0 else { throw bad("the step goes away from the range's end in") }
        let span = ((end - start) / step + 1e-9).rounded(.down)
        guard span < 1000 else { throw bad("more than 1000 values in the range") }
        // Each value from the start, not by adding steps, so 0.1 steps do not drift.
        return (0...Int(span)).map { formatDecimal(start + Double($0) * step) }
    }

    /// A decimal as `set` would be given it: `7`, `7.5`, `0.3` (six places at most).
    static func formatDecimal(_ value: Double) -> String {
        let rounded = (value * 1e6).rounded() / 1e6
        if rounded == rounded.rounded() && abs(rounded) < 1e15 { return String(Int(rounded)) }
        return String(rounded)
    }
}

/// `grid X=AXIS:VALUES [Y=…] [Z=…] [--yes] [--cells K]`, read.
struct GridSpec: Equatable {
    /// Each `-1` or `random` on a seed axis made a seed of its own, as A1111's `fix_axis_seeds`
    /// does (`X=seed:-1,-1,-1` is three variations); the grid's transcript line then carries them.
    mutating func drawRandomSeeds(_ draw: () -> UInt64) {
        func fixed(_ axis: GridAxis) -> GridAxis {
            guard axis.kind == .seed else { return axis }
            return GridAxis(kind: .seed, values: axis.values.map { ["-1", "random"].contains($0.lowercased()) ? String(draw()) : $0 })
        }
        x = fixed(x)
        y = y.map(fixed)
        z = z.map(fixed)
    }

    static let usage = "grid X=AXIS:VALUES [Y=…] [Z=…] [--yes]"

    /// `help grid`, after the usage and summary.
    static let help = [
        "  axes: " + GridAxisKind.allCases.map { "\($0.rawValue) (\($0.label))" }.joined(separator: ", "),
        "  values: a comma-separated list; numbers also as ranges: 1-4, 5-9:2 (a step), 1-10 (+3), 1-2 [5] (five values)",
        "  sr: the first value is the text to find in the prompt and negative prompt; each value replaces it; quote a value",
        "      with a comma or a ' #' (else a comment): X=sr:fox,\"grey wolf, old\",\"wolf #2\"",
        "  lora: the weight of the prompt's one <lora:NAME:W> tag; strength needs an init image ('init FILE')",
        "  cells go X fastest, then Y, then Z; each is kept and autosaved as gen's images; Z makes sub-grids side by side",
        "  on one sheet, shown as one picture; 'save PATH.png' right after saves the sheet with every cell's recipe",
        "  more than \(confirmationLimit) cells asks first at the prompt, and needs --yes in a script; Ctrl-C keeps the cells made",
    ]
    /// More cells than this ask for confirmation (the REPL) or `--yes` (scripts).
    static let confirmationLimit = 16
    static let maximumCells = 1000

    var x: GridAxis
    var y: GridAxis?
    var z: GridAxis?
    /// `--yes`: no confirmation for a large grid.
    var confirmed = false
    /// `--cells K`: only the first K cells (a transcript's record of a stopped grid).
    var cellLimit: Int?

    var axes: [(letter: String, axis: GridAxis)] {
        [("X", x)] + (y.map { [("Y", $0)] } ?? []) + (z.map { [("Z", $0)] } ?? [])
    }

    var cellCount: Int { x.values.count * (y?.values.count ?? 1) * (z?.values.count ?? 1) }

    /// The line as the transcript replays it (`--yes`: it was confirmed when it ran).
    func replayLine(cells: Int? = nil) -> String {
        var parts = ["grid"]
        for (letter, axis) in axes {
            let values = axis.values.map { value -> String in
                // Quoted when the line's own splitting would cut it: at a comma, an option (` --`) or another axis (` Y=`).
                let cut = [" --", " x=", " y=", " z="].contains { value.lowercased().contains($0) }
                return cut || value.contains(",") || value.contains("\"") || value.hasPrefix(" ") || value.hasSuffix(" ") || value.contains("#")
                    ? "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : value
            }
            parts.append("\(letter)=\(axis.kind.rawValue):" + values.joined(separator: ","))
        }
        parts.append("--yes")
        if let cells = cells ?? cellLimit { parts.append("--cells \(cells)") }
        return parts.joined(separator: " ")
    }

    /// What Tab offers for the word being typed: `X=`, `Y=`, `Z=`, `--yes`, then after `X=` the
    /// axis names (`X=seed:`).
    static func completions(for word: String) -> [String] {
        if let letter = word.first, "XYZxyz".contains(letter), word.dropFirst().first == "=" {
            return GridAxisKind.names.map { String(word.prefix(2)) + $0 + ":" }
        }
        return ["X=", "Y=", "Z=", "--yes"]
    }

    /// Reads the argument of `grid`. The axes are split where a blank is followed by `X=`, `Y=`,
    /// `Z=` or `--` outside quotes, so a value may hold blanks (`X=sr:red fox,grey wolf`).
    static func parse(_ argument: String) throws -> GridSpec {
        var axes: [String: GridAxis] = [:]
        var confirmed = false
        var cellLimit: Int?
        var parts = split(argument)[...]
        guard !parts.isEmpty else { throw ScriptError.missingArgument(command: "grid", usage: usage) }
        while let part = parts.popFirst() {
            if part == "--yes" { confirmed = true; continue }
            if part.hasPrefix("--cells") {
                let number = String(part.dropFirst("--cells".count)).trimmingWhitespace()
                guard let count = Int(number), count >= 1 else {
                    throw ScriptError.badArgument(command: "grid", argument: part, reason: "expected --cells N (a number of cells), got")
                }
                cellLimit = count
                continue
            }
            if part.hasPrefix("--") {
                throw ScriptError.badArgument(command: "grid", argument: part, reason: "unknown option",
                                              suggestion: closestWord(to: part, in: ["--yes", "--cells"]))
            }
            let letter = part.prefix(1).uppercased()
            guard part.count > 2, ["X", "Y", "Z"].contains(letter), part.dropFirst().first == "=" else {
                throw ScriptError.badArgument(command: "grid", argument: part,
                                              reason: "expected X=AXIS:VALUES (Y=, Z= too), e.g. X=seed:1-4; got")
            }
            guard axes[letter] == nil else {
                throw ScriptError.badArgument(command: "grid", argument: part, reason: "\(letter) is given twice; got")
            }
            let body = part.dropFirst(2)
            let name = String(body.prefix { $0 != ":" })
            guard let kind = GridAxisKind.named(name) else {
                throw ScriptError.badArgument(command: "grid", argument: name, reason: "unknown axis (\(GridAxisKind.names.joined(separator: ", ")))",
                                              suggestion: closestWord(to: name, in: GridAxisKind.names + GridAxisKind.aliases.keys.sorted())
                                                  .flatMap { GridAxisKind.named($0)?.rawValue })
            }
            guard body.count > name.count else {
                throw ScriptError.badArgument(command: "grid", argument: part,
                                              reason: "no values; expected \(letter)=\(kind.rawValue):\(GridAxis.example(kind)), got")
            }
            axes[letter] = try GridAxis.parse(kind: kind, text: String(body.dropFirst(name.count + 1)), axis: letter)
        }
        guard let x = axes["X"] else {
            throw ScriptError.badArgument(command: "grid", argument: argument, reason: "no X axis; expected X=AXIS:VALUES first, got")
        }
        if axes["Z"] != nil && axes["Y"] == nil {
            throw ScriptError.badArgument(command: "grid", argument: argument, reason: "a Z axis needs a Y axis; got")
        }
        let kinds = [x, axes["Y"], axes["Z"]].compactMap { $0?.kind }
        if let twice = kinds.first(where: { kind in kinds.filter { $0 == kind }.count > 1 }) {
            throw ScriptError.badArgument(command: "grid", argument: twice.rawValue, reason: "the same axis twice:")
        }
        let spec = GridSpec(x: x, y: axes["Y"], z: axes["Z"], confirmed: confirmed, cellLimit: cellLimit)
        guard spec.cellCount <= maximumCells else {
            throw ScriptError.badArgument(command: "grid", argument: "\(spec.cellCount) cells",
                                          reason: "a grid makes at most \(maximumCells) cells, got")
        }
        return spec
    }

    /// The argument cut before each blank followed by `X=`, `Y=`, `Z=` or `--`, outside quotes.
    private static func split(_ argument: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var inQuotes = false
        let characters = Array(argument)
        for (i, c) in characters.enumerated() {
            if c == "\"" { inQuotes.toggle() }
            if !inQuotes && (c == " " || c == "\t") && i + 2 < characters.count {
                let next = characters[i + 1], after = characters[i + 2]
                if ("XYZxyz".contains(next) && after == "=") || (next == "-" && after == "-") {
                    parts.append(current)
                    current = ""
                    continue
                }
            }
            current.append(c)
        }
        parts.append(current)
        return parts.map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
    }
}
