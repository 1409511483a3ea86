import FileErrors
/// Where a line came from: a script file and a 1-based line number.
public struct SourceLocation: Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int

    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }

    public var description: String { "\(file):\(line)" }
}

/// What went wrong with one command. Every case names the command it came from.
///
/// The session reports these through `Diagnostic` (adds FILE:LINE in scripts) and goes on.
public enum ScriptError: Error, Equatable, Sendable {
    /// An unknown command word, with the closest known one.
    case unknownCommand(String, suggestion: String?)
    /// An argument that is not valid for `command`; `suggestion` is the closest valid word.
    case badArgument(command: String, argument: String, reason: String, suggestion: String? = nil)
    /// A command that needs an argument got none.
    case missingArgument(command: String, usage: String)
    /// A command that takes no argument got one.
    case unexpectedArgument(command: String, argument: String)
    /// A file could not be read or written.
    case file(command: String, path: String, reason: String)
    /// An image could not be written (`save`, or `gen`'s autosave); `reason` names the file and what
    /// to do. The image stays in the session.
    case imageNotSaved(command: String, reason: String)
    /// No usable model: the model store's message (where it looked and how to get one, or why the
    /// given path is not a model); `command` needed it (`gen`, `tokens`).
    case noModel(String, command: String = "gen")
    /// A model was found but this build has no engine to run it.
    case noEngine(model: String, command: String = "gen")
    /// The generator (or another part the command used) failed.
    case generation(String, command: String = "gen")
    /// The engine (or a library under it) threw: the error kept whole, not flattened into text.
    case engine(EngineFailure, command: String = "gen")
    /// Ctrl-C interrupted a generation.
    case cancelled(completed: Int, requested: Int)
    /// `run` files nest deeper than `limit`.
    case runTooDeep(path: String, limit: Int)
    /// A `run` file includes itself, directly or not; `chain` lists the files in order.
    case runCycle(chain: [String])
    /// A recorded result does not match the regenerated image (`run --check`).
    case checkMismatch(String)
    /// The command cannot run yet (`show` before any `gen`).
    case notReady(command: String, reason: String)
    /// The feature is provided by a part of sdrepl that is not in this build.
    case unavailable(command: String, reason: String)

    /// The command the error belongs to, for the message prefix.
    public var command: String? {
        switch self {
        case .unknownCommand: return nil
        case .badArgument(let command, _, _, _), .missingArgument(let command, _),
             .unexpectedArgument(let command, _), .file(let command, _, _), .unavailable(let command, _),
             .notReady(let command, _), .imageNotSaved(let command, _), .noModel(_, let command),
             .noEngine(_, let command), .generation(_, let command), .engine(_, let command):
            return command
        case .cancelled: return "gen"
        case .runTooDeep, .runCycle: return "run"
        case .checkMismatch: return "check"
        }
    }
}

extension ScriptError: CustomStringConvertible {
    public var description: String {
        let body: String
        switch self {
        case .unknownCommand(let name, let suggestion):
            return "unknown command '\(name)'" + didYouMean(suggestion) + "; type 'help' for the list"
        case .badArgument(_, let argument, let reason, let suggestion):
            body = "\(reason) '\(argument)'" + didYouMean(suggestion)
        case .missingArgument(_, let usage):
            body = "missing argument; usage: \(usage)"
        case .unexpectedArgument(let command, let argument):
            // `set mode final` is a setting's value: its help is the setting's.
            let topic = command.hasPrefix("set ") ? String(command.split(separator: " ").prefix(2).joined(separator: " ")) : command
            body = "takes no argument, got '\(argument)'; see 'help \(topic)'"
        case .file(_, let path, let reason):
            body = "\(path): \(reason)"
        case .imageNotSaved(_, let reason):
            body = reason + "; the image stays in the session"
        case .noModel(let message, _):
            body = message
        case .noEngine(let model, _):
            body = "found the model \(model), but this build of sdrepl has no generation engine wired in"
        case .engine(let failure, _):
            body = failure.description
        case .generation(let message, _):
            body = message
        case .cancelled(let completed, let requested):
            body = "cancelled (\(completed) of \(requested) image\(requested == 1 ? "" : "s") finished)"
        case .runTooDeep(let path, let limit):
            body = "\(path): 'run' files nest more than \(limit) deep"
        case .runCycle(let chain):
            body = "cycle: " + chain.joined(separator: " -> ")
        case .checkMismatch(let message):
            body = message
        case .unavailable(_, let reason), .notReady(_, let reason):
            body = reason
        }
        return "\(command ?? "sdrepl"): \(body)"
    }

    private func didYouMean(_ suggestion: String?) -> String {
        suggestion.map { " (did you mean '\($0)'?)" } ?? ""
    }
}

/// An error as shown to the user: with FILE:LINE when it came from a script.
public struct Diagnostic: Error, Equatable, Sendable, CustomStringConvertible {
    public var location: SourceLocation?
    public var error: ScriptError

    public init(_ error: ScriptError, at location: SourceLocation?) {
        self.error = error
        self.location = location
    }

    public var description: String {
        if let location { return "\(location): \(error)" }
        return error.description
    }
}

/// The closest word to `word` among `candidates`, by edit distance, if it is close enough to be a
/// plausible typo (at most a third of the word's length, and at least 1, off). Case-insensitive.
public func closestWord(to word: String, in candidates: [String]) -> String? {
    let target = Array(word.lowercased())
    var best: (word: String, distance: Int)?
    // At equal distance a word the typed text begins is the likelier: "of" is "off", not "on".
    func begins(_ candidate: String) -> Bool { candidate.lowercased().hasPrefix(word.lowercased()) }
    for candidate in candidates {
        let distance = editDistance(target, Array(candidate.lowercased()))
        if best == nil || distance < best!.distance || (distance == best!.distance && begins(candidate) && !begins(best!.word)) {
            best = (candidate, distance)
        }
    }
    guard let best else { return nil }
    let limit = max(1, min(3, (target.count + 2) / 3))
    // A prefix is a good guess too: "samp" -> "sampler".
    if best.distance > limit,
       let prefixed = candidates.first(where: { $0.lowercased().hasPrefix(word.lowercased()) && word.count >= 2 }) {
        return prefixed
    }
    return best.distance <= limit ? best.word : nil
}

/// Damerau–Levenshtein (optimal string alignment) distance: insertions, deletions, substitutions and
/// transpositions of neighbours each cost 1, so "stpes" is 1 away from "steps".
func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous2 = [Int](repeating: 0, count: b.count + 1)
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                current[j] = min(current[j], previous2[j - 2] + 1)
            }
        }
        (previous2, previous, current) = (previous, current, previous2)
    }
    return previous[b.count]
}

/// An error from the engine or a library, kept as the typed value (a caller can ask `error as?
/// LoRAError`) with the one line the user sees. Two failures are equal when they read the same.
public struct EngineFailure: Equatable, @unchecked Sendable, CustomStringConvertible {
    public let error: any Error
    public let description: String

    /// - Parameter hint: added to the message (a did-you-mean).
    public init(_ error: any Error, hint: String? = nil) {
        self.error = error
        description = FileErrorText.reason(error) + (hint.map { " (\($0))" } ?? "")
    }

    public static func == (a: EngineFailure, b: EngineFailure) -> Bool { a.description == b.description }
}
