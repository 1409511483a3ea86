import FileErrors
import ArgumentParser
import HostCheck
import Diffusion
import Foundation
import ModelStore
import Glibc
import Imaging
import SDScript

/// Options shared by the interactive session and `run`.
struct SessionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The checkpoint to use (a .safetensors or .ckpt file, or a diffusers folder); default: discovery.",
                               valueName: "PATH"))
    var model: String?

    @Option(help: ArgumentHelp("Where interactive sessions are recorded.", valueName: "DIR"))
    var sessions: String = "sessions"

    @Flag(name: .customLong("no-record"), help: "Do not record the session, nor add its lines to the line-editing history file.")
    var noRecord = false

    @Flag(help: "In a script (run FILE, or standard input): report errors and go on; exit 1 at the end if there were any.")
    var keepGoing = false

    func validate() throws {
        if let model, !FileManager.default.fileExists(atPath: model.expandingTilde) {
            throw ValidationError("--model \(model.escapingControlCharacters): no such file or folder")
        }
    }

    /// A session on the terminal with `--model` applied.
    func makeSession(io: TerminalIO, transcript: TranscriptRecorder? = nil) -> Session {
        let session = Session(components: Wiring.components(io: io), io: io, transcript: transcript)
        if let model { session.settings.resources.model = model }
        return session
    }

    /// A session recorded under `--sessions` unless `--no-record` (the interactive REPL and `gen`):
    /// the transcript opens with when it started and how to replay it, then `model PATH` for
    /// `--model`. A transcript that cannot be created is reported and the session goes on unrecorded.
    /// - Parameter kind: what started, for the first comment ("session", "gen").
    func makeRecordedSession(io: TerminalIO, kind: String) -> Session {
        var transcript: TranscriptRecorder?
        if !noRecord {
            do {
                transcript = try TranscriptRecorder(directory: sessions)
            } catch {
                // Only a session has a prompt to type `transcript save` at; `gen` and a shard go on unrecorded.
                guard kind == "session" else {
                    io.diagnostic("\(error) (not recorded)")
                    return makeSession(io: io)
                }
                io.diagnostic("\(error) (this session is kept in memory: 'transcript save PATH' writes it)")
                var reason = "\(error)"
                if case let ScriptError.file(_, _, why) = error { reason = why }
                transcript = .inMemory(path: sessions, failure: reason)
            }
        }
        let session = makeSession(io: io, transcript: transcript)
        if let transcript {
            session.recordComment("sdrepl \(SDReplVersion.string) \(kind), started \(ISO8601DateFormatter().string(from: Date()))")
            if transcript.failure == nil {
                session.recordComment("replay: sdrepl run \(transcript.path); check: sdrepl run --check \(transcript.path)")
            }
            session.recordComment(ScriptNumerics.label + BLAS.numerics)
        }
        // Absolute, so the transcript replays from sessions/ or anywhere else.
        if let model { session.recordCommand("model \(URL(fileURLWithPath: model.expandingTilde).standardizedFileURL.path)") }
        return session
    }
}

@main
struct SDRepl: ParsableCommand {
    /// Checks the CPU and sets the engine's environment (see `HostCheck`, `EngineEnvironment`) before
    /// ArgumentParser runs any command.
    static func main() {
        HostCheck.exitIfUnsupported(program: "sdrepl")
        EngineEnvironment.restartWithEngineSettingsIfNeeded()
        // A process-wide allocator policy, chosen by the program rather than by opening a pipeline.
        MemoryMode.keepFreedBlocksForReuse()
        BusError.install()
        // Past a file-size limit (`ulimit -f`), a write fails with EFBIG instead of the process being
        // killed: the writers then say so and remove what they had written, as for a full disk.
        signal(SIGXFSZ, SIG_IGN)
        main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "sdrepl",
        abstract: "A notebook-style text-to-image REPL for the terminal (Stable Diffusion 1.5 on the CPU).",
        discussion: """
            With a terminal on standard input, starts an interactive session (type 'help'), recorded as \
            sessions/<timestamp>.sdscript. Otherwise reads commands from standard input as a script: \
            sdrepl < FILE.
            """,
        version: SDReplVersion.string,
        subcommands: [RunScript.self, OneShot.self, Info.self, ExportPage.self, MergeShards.self]
    )

    @OptionGroup var options: SessionOptions

    func run() throws {
        if Terminal.isTerminal(STDIN_FILENO) {
            // A user typing, even if the output goes to a pipe (`sdrepl | tee log`): recorded, but line
            // editing and images need stdout to be the terminal too.
            try interactive(lineEditing: Terminal.isTerminal(STDOUT_FILENO))
        } else {
            // Script mode: no prompt, no escape sequences, stop at the first error.
            let io = TerminalIO(allowEscapes: false, sixelEncoder: nil)
            let session = options.makeSession(io: io)
            let summary = session.runScript(lines: StandardInputLines(), name: "<stdin>", options: ScriptOptions(keepGoing: options.keepGoing))
            if !summary.succeeded { throw ExitCode(1) }
        }
    }

    private func interactive(lineEditing: Bool) throws {
        Interrupt.install()
        let io = TerminalIO(allowEscapes: true, sixelEncoder: Wiring.sixelEncoder)
        let session = options.makeRecordedSession(io: io, kind: "session")

        // Ask the terminal about sixel now, before the user types: keys typed during the query would be
        // read as part of its answer (they are handed back to the line editor, but not echoed).
        if lineEditing { io.prepareTerminal() }
        io.output("sdrepl \(SDReplVersion.string): type 'help' for the commands, Ctrl-D or 'quit' to leave.")
        // Not when its first lines could not be written: that was reported instead.
        if let transcript = session.transcript, transcript.failure == nil { io.output("recording this session to \(transcript.path)") }
        guard lineEditing else {
            while true {
                try Self.leaveIfAsked()
                Interrupt.clear()
                switch TerminalLines.next() {
                case let .line(line):
                    if session.execute(line) == .quit { return }
                case .interrupted:
                    // Ctrl-C at the (invisible) prompt: drop the line, go on.
                    continue
                case .end:
                    // Ctrl-D leaves, unless the transcript is only in memory (said once).
                    if session.confirmLeave() { return }
                }
            }
        }
        // libedit turns its wide-character buffer back into bytes with the locale's encoding: make it
        // UTF-8 even when LANG is unset, so a prompt like "café ☕" survives editing.
        if setlocale(LC_CTYPE, "") == nil || String(cString: nl_langinfo(nl_item(CODESET))) != "UTF-8" {
            _ = setlocale(LC_CTYPE, "C.UTF-8")
        }
        // `--no-record` keeps nothing on disk: the line history lives for this session only.
        guard let editor = LineEditor(historyPath: options.noRecord ? nil : historyFile(), complete: session.complete) else {
            throw ValidationError("cannot start the line editor (libedit)")
        }
        while true {
            try Self.leaveIfAsked()
            Interrupt.clear()  // a Ctrl-C that ended a generation is not meant for the prompt
            switch editor.read() {
            case .endOfInput:
                io.output("")
                if !session.confirmLeave() { continue }
                return
            case .interrupted:
                io.output("")
                continue
            case .line(let line):
                editor.remember(line)
                if session.execute(line) == .quit { return }
            }
        }
    }

    /// Ends the process, with the status asked for, once an ending signal or lost output has stopped
    /// the command under way (which the transcript recorded as stopped).
    static func leaveIfAsked() throws {
        if let status = Interrupt.endingStatus { throw ExitCode(status) }
    }

    /// `$XDG_STATE_HOME/sdrepl/history`, by default `~/.local/state/sdrepl/history`; nil if the folder
    /// cannot be made.
    private func historyFile() -> String? {
        let folder = XDGDirectories().state + "/sdrepl"
        guard (try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)) != nil
        else { return nil }
        return folder + "/history"
    }
}

/// `sdrepl run [--check] [--keep-going] FILE`.
struct RunScript: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Replay an .sdscript file non-interactively.",
        discussion: "Stops at the first error with exit status 1 unless --keep-going. With --check, each '#=> image' line's hash is compared with the regenerated image's, and no image files are written. With --shard K/N, every image of every gen gets a number 0, 1, 2 … in script order and this run makes those whose number is K-1 modulo N (other commands run in every shard; random seeds come from the script's hash, so all shards draw the same); its transcript goes to --sessions DIR for 'sdrepl merge'."
    )

    @OptionGroup var options: SessionOptions

    @Flag(help: "Verify each recorded image hash; name FILE:LINE of any mismatch and exit 1.")
    var check = false

    @Option(help: ArgumentHelp("Make only the K-th of N shares of the script's images and record the run under --sessions, for 'sdrepl merge'.",
                               valueName: "K/N"))
    var shard: String?

    @Argument(help: ArgumentHelp("The script to run.", valueName: "FILE"))
    var file: String

    func validate() throws {
        guard let shard else { return }
        do {
            _ = try Shard(parsing: shard)
        } catch {
            throw ValidationError("\(error)".escapingControlCharacters)
        }
        if check { throw ValidationError("--shard and --check: check the merged transcript instead (sdrepl merge, then run --check)") }
    }

    func run() throws {
        if let shard { return try runShard(try Shard(parsing: shard)) }
        let io = TerminalIO(allowEscapes: true, sixelEncoder: Wiring.sixelEncoder)
        let session = options.makeSession(io: io)
        let summary = session.runScript(at: file, options: ScriptOptions(check: check, keepGoing: options.keepGoing))
        if check {
            let mismatches = summary.errors.filter { if case .checkMismatch = $0.error { return true } else { return false } }
            let mismatched = mismatches.count - summary.unrecordedReports
            io.diagnostic("check: \(summary.checked) image\(summary.checked == 1 ? "" : "s") matched, \(mismatched) mismatched"
                          + (summary.unrecorded > 0 ? ", \(summary.unrecorded) not recorded" : "")
                          + (summary.errors.count > mismatches.count ? ", \(summary.errors.count - mismatches.count) other error(s)" : "")
                          + (summary.unreached > 0 ? "; \(summary.unreached) recorded image\(summary.unreached == 1 ? "" : "s") not reached "
                                + "(the check stops at the first error; --keep-going goes on past it)" : ""))
        }
        if !summary.succeeded { throw ExitCode(1) }
    }
}

/// `sdrepl info FILE`.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the recipe stored in a PNG or JPEG.")

    @Argument(help: ArgumentHelp("The image.", valueName: "FILE"))
    var file: String

    func run() throws {
        do {
            let stored = try readStoredRecipe(at: file.expandingTilde, shownAs: file, command: "sdrepl info")
            print(describeStoredRecipe(stored).escapingControlCharacters)
        } catch {
            Console.err("\(error)\n".escapingControlCharacters)
            throw ExitCode(1)
        }
    }

}

/// Standard input, one line at a time, read as it comes (a pipe may still be writing).
struct StandardInputLines: Sequence, IteratorProtocol {
    mutating func next() -> String? { readLine(strippingNewline: true) }
}
