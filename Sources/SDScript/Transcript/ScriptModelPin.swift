import Foundation

/// A transcript's `# model` line: the checkpoint that discovery found when the session first
/// needed one (no `model` command or `--model`), recorded before the command that loaded it:
///
///     # model (./models, hash 6ce0161689): /home/me/models/v1-5-pruned-emaonly.safetensors
///
/// Discovery depends on the folder sdrepl runs in, the environment and what has been downloaded
/// since, so without this line a replay elsewhere, or after another model arrives, could make its
/// pictures with another model. A replay takes the recorded file while it is there and no `model`
/// was given; where it is not, it says so and uses what discovery finds. The hash is the model's
/// A1111 short hash when it was known without reading the file (the hash cache), else left out.
struct ScriptModelPin: Equatable {
    var path: String
    var source: String
    var hash: String?

    static let prefix = "# model ("
    private static let separator = "): "
    private static let hashLabel = ", hash "

    /// The comment's text without the leading "# " (`recordComment` adds it).
    var comment: String {
        let hashPart = hash.map { Self.hashLabel + $0 } ?? ""
        return "model (\(source)\(hashPart)\(Self.separator)\(path)"
    }

    /// Reads a line written from `comment`; nil for any other line.
    init?(line: String) {
        let text = line.trimmingWhitespace()
        guard text.hasPrefix(Self.prefix), let end = text.range(of: Self.separator) else { return nil }
        var inside = String(text[text.index(text.startIndex, offsetBy: Self.prefix.count)..<end.lowerBound])
        let path = String(text[end.upperBound...])
        guard path.hasPrefix("/") else { return nil }
        var hash: String?
        if let label = inside.range(of: Self.hashLabel, options: .backwards) {
            let value = String(inside[label.upperBound...])
            if !value.isEmpty && value.allSatisfy(\.isHexDigit) {
                hash = value.lowercased()
                inside = String(inside[..<label.lowerBound])
            }
        }
        self.init(path: path, source: inside, hash: hash)
    }

    init(path: String, source: String, hash: String?) {
        self.path = path
        self.source = source
        self.hash = hash
    }
}

extension Session {
    /// Called for each line a script replays: a `# model` line makes its file the model of the rest
    /// of the replay, unless a `model` was given, and says why when it cannot.
    func applyModelPin(_ line: String, at location: SourceLocation) {
        guard let pin = ScriptModelPin(line: line) else { return }
        log.lastModelComment = pin.path
        let models = components.models
        func differs(from other: String?) -> String? {
            guard let recorded = pin.hash, let other, other != recorded else { return nil }
            return "recorded with model hash \(recorded), replayed with \(other): the images are expected to differ"
        }
        if let given = settings.resources.model {
            // The user's choice stands; say so only where the pictures will show it.
            if let note = differs(from: models.shortHash(explicit: given)) {
                io.warning("\(location): \(note) (\(given), given by 'model' or --model)")
            }
            return
        }
        if FileManager.default.fileExists(atPath: pin.path) {
            settings.resources.replayedModel = pin.path
            // The file was replaced since (the hash cache knows its new contents' hash).
            if let note = differs(from: models.shortHash(explicit: pin.path)) { io.warning("\(location): \(note) (\(pin.path))") }
            return
        }
        settings.resources.replayedModel = nil
        let found = try? models.locate(explicit: nil)
        let foundHash = models.shortHash(explicit: nil)
        // The same model, kept elsewhere on this machine: nothing to say.
        if found != nil, let recorded = pin.hash, foundHash == recorded { return }
        let instead = found.map { "uses \($0.path) (\($0.source))" } ?? "finds no model"
        var note = "\(location): the transcript's model \(pin.path) is not here; discovery \(instead)"
        if found != nil, let differ = differs(from: foundHash) { note += "; " + differ }
        io.warning(note + "; 'model PATH' or --model names the model to use")
    }

    /// Records which model discovery (or a replayed `# model` line) loaded, before the command that
    /// loaded it, when it is not the one recorded last.
    func recordDiscoveredModel(_ location: ModelLocation, replayed: Bool) {
        guard log.lastModelComment != location.path else { return }
        log.lastModelComment = location.path
        let pin = ScriptModelPin(path: location.path, source: replayed ? "as recorded" : location.source,
                                 hash: components.models.shortHash(explicit: location.path))
        log.line.preamble.append("# " + pin.comment)
    }
}
