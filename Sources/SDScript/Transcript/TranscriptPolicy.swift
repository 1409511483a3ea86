import Foundation

/// How the transcript keeps a command that ran, declared by each command (and each setting) in its
/// table, so that replaying the transcript from any folder makes the same images.
public enum TranscriptRule: Sendable {
    /// As typed.
    case asTyped
    /// The argument is an input path, recorded absolute as the command resolved it (a script's paths
    /// are relative to the script's folder). A first word in `except` (`model download`) keeps the
    /// line as typed.
    case inputPath(except: Set<String> = [])
    /// `set KEY VALUE` / `unset KEY`: as the key's own rule says.
    case setting
    /// May choose a random seed (`seed random`, `set seed -1`, `unset seed`): then written as a
    /// comment, since each `gen` records the concrete seed it drew.
    case seedChoice
    /// About the session itself (`transcript save PATH`): written as a comment, as replaying it
    /// would do nothing useful.
    case comment
    /// As the command resolved it (`LineRecord.replay`: `upscale` with its image number, the
    /// upscaler's absolute path and the scale), so a replay uses the same image and file.
    case resolved
}

/// What the transcript needs of the line being run, collected while it runs.
struct LineRecord {
    /// Lines that go into the transcript before the line (the seed a `gen` drew).
    var preamble: [String] = []
    /// Its result lines.
    var results: [ResultRecord] = []
    /// A `run` whose file's lines were written into the transcript one by one.
    var inlinedRun = false
    /// The line to record instead of the typed one (`TranscriptRule.resolved`).
    var replay: String?
    /// The lines to record instead of the line and its results (a sharded `gen`'s share).
    var expansion: [String]?
    /// The line that replays exactly what a stopped command made (`grid … --cells K`).
    var stoppedReplay: String?
}

/// Writes the lines that ran into the transcript file: a random seed as the concrete seed each `gen`
/// drew, input paths made absolute, and a `run FILE` as the lines of FILE that ran (recorded as each
/// runs), so the transcript needs neither the file nor its folder.
final class TranscriptLog {
    var recorder: TranscriptRecorder?
    var line = LineRecord()
    /// Shows a warning: the first failed write of the transcript file.
    var warn: (String) -> Void = { _ in }
    /// `quit` (or Ctrl-D) was refused once because the transcript is only in memory.
    private var refusedLeaving = false
    /// The model path of the last `# model` line recorded or replayed (`ScriptModelPin`).
    var lastModelComment: String?

    init(recorder: TranscriptRecorder?) {
        self.recorder = recorder
    }

    /// Records one line; the first write that fails is reported through `warn`, once.
    private func write(_ text: String) {
        guard let recorder, let failure = recorder.record(text) else { return }
        warn("transcript: cannot write \(recorder.path): \(failure); "
             + "the session is kept in memory: 'transcript save PATH' writes it elsewhere")
    }

    /// Why the session should not end yet: the transcript could not be written and was not saved
    /// elsewhere. Said once; asking again leaves.
    func leavingRefusal() -> ScriptError? {
        guard let recorder, let failure = recorder.failure, !refusedLeaving else { return nil }
        refusedLeaving = true
        return .notReady(command: "quit", reason: "the transcript is only in memory (writing \(recorder.path) failed: \(failure)); "
                         + "'transcript save PATH' writes it, 'quit' again leaves without it")
    }

    /// Records `text`, which ran with `outcome`; `resolve` resolves a path as the command did.
    func record(_ text: String, outcome: Outcome, at location: SourceLocation?,
                resolve: (String, SourceLocation?) -> String) {
        guard recorder != nil else { return }
        switch ScriptLine(text) {
        case .blank, .result, .malformedResult: return
        case .comment: write(text.trimmingWhitespace())
        case .command(let command):
            if line.inlinedRun {
                // Its lines, and any error among them, are in the transcript already.
                if outcome != .quit {
                    write("# end of run \(absolute(resolve(command.argument, location)))")
                }
                return
            }
            switch outcome {
            case .quit: return
            case .ok:
                line.preamble.forEach(write)
                if let expansion = line.expansion { return expansion.forEach(write) }
                write(replayable(command, typed: text, at: location, resolve: resolve))
            case .failed(let diagnostic):
                line.preamble.forEach(write)
                let firstLine = diagnostic.error.description.split(separator: "\n").first.map(String.init) ?? ""
                if let expansion = line.expansion {
                    // The images made before the failure, then the failure as a comment.
                    expansion.forEach(write)
                    return write("# error: \(text.trimmingWhitespace()): " + firstLine)
                }
                let made = line.results.filter { if case .image = $0 { return true } else { return false } }.count
                let stoppedReplay = line.stoppedReplay ?? (Command.named(command.name)?.name == "gen" ? "gen \(made)" : nil)
                if made > 0, let stoppedReplay {
                    // A gen or grid stopped part-way (Ctrl-C, a failed save): replay exactly the images it made.
                    write("\(stoppedReplay) # \(text.trimmingWhitespace()), stopped: \(firstLine)")
                } else {
                    write("# " + text.trimmingWhitespace())
                    write("# error: " + firstLine)
                    // Not replayable as they stand: kept for the reader, not for --check.
                    line.results.forEach { write("# " + $0.description) }
                    return
                }
            }
            line.results.forEach { write($0.description) }
        }
    }

    /// The command as the transcript keeps it, by the rule its table entry declares.
    private func replayable(_ command: CommandText, typed text: String, at location: SourceLocation?,
                            resolve: (String, SourceLocation?) -> String) -> String {
        let typed = text.trimmingWhitespace()
        guard let entry = Command.named(command.name) else { return typed }
        var rule = entry.transcript
        var name = entry.name
        var argument = command.argument
        if case .setting = rule {
            let setting = CommandText(command.argument)
            guard let key = SettingKey.named(setting.name) else { return typed }
            rule = key.transcript
            name = "\(entry.name) \(key.name)"
            argument = setting.argument
        }
        switch rule {
        case .asTyped, .setting:
            return typed
        case .comment:
            return "# " + typed
        case .resolved:
            return line.replay ?? typed
        case .seedChoice:
            let words = argument.droppingTrailingComment().lowercased().words
            let random = entry.name == "unset" || words == ["random"] || words == ["-1"]
            return random ? "# " + typed : typed
        case .inputPath(let except):
            // A history number (`init 3`): its saved file when the command gave one, else as typed
            // (the transcript makes the same images again).
            if Int(argument) != nil || isLastImage(argument) { return line.replay ?? typed }
            guard !argument.isEmpty, !except.contains(argument.words.first ?? "") else { return typed }
            return "\(name) \(absolute(resolve(argument, location)))"
        }
    }

    /// Records a comment line (session start, model given on the command line).
    func recordComment(_ text: String) { write("# " + text) }

    /// Records a line as if typed (`model PATH` from `--model`, `# run FILE`).
    func recordLine(_ text: String) { write(text) }
}

/// `path` made absolute against the current folder, `.` and `..` removed.
func absolute(_ path: String) -> String {
    URL(fileURLWithPath: path).standardizedFileURL.path
}
