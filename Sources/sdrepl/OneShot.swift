import ArgumentParser
import FileErrors
import Foundation
import Diffusion
import Imaging
import SDScript

/// `sdrepl gen PROMPT [--KEY VALUE …] [-n N] [-o PATH]`: one generation from the shell, as
/// stable-diffusion.cpp's `sd -p` gives it. The command line becomes the REPL lines it stands for
/// (`set KEY VALUE` …, `prompt PROMPT`, `gen N`, `save PATH`), run one by one through a recorded
/// `Session` as if typed: the same checks, the same one-line errors, the same transcript.
///
/// The settings flags are not declared one by one: every key of `SettingKey.all` is a flag, so a
/// setting added to the table is a flag without touching this file. ArgumentParser declares options
/// statically (property wrappers), so the prompt and the `--KEY VALUE` pairs are collected with
/// `.allUnrecognized` and read here; the options it does know (`--model`, `-o`, `-n`, `--sessions`,
/// `--no-record`) are still its own, wherever they appear on the line.
struct OneShot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen",
        abstract: "Generate from the command line: sdrepl gen \"a prompt\" --seed 5 --steps 20 -o out.png",
        discussion: settingsHelp
    )

    @OptionGroup var options: SessionOptions

    @Option(name: .shortAndLong,
            help: ArgumentHelp("Save as PATH.png/PATH.jpg, or both for a PATH without an extension, as 'save PATH' does (-1, -2 … for several images); the images are then not autosaved too.",
                               valueName: "PATH"))
    var output: String?

    @Option(name: [.customShort("n"), .long], help: ArgumentHelp("How many images ('gen N'): seeds s … s+N-1.", valueName: "N"))
    var count: Int?

    @Argument(parsing: .allUnrecognized,
              help: ArgumentHelp("The prompt (one argument: quote it), and any setting as --KEY VALUE or --KEY=VALUE.",
                                 valueName: "PROMPT"))
    var words: [String] = []

    /// The keys with their values and defaults, from the settings table.
    static var settingsHelp: String {
        let keys = SettingKey.all.filter { $0.name != "model" }  // --model is the shared option
        let width = keys.map(\.name.count).max() ?? 0
        let lines = keys.map { key in
            "  --" + key.name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + key.values
                + "   (default: \(key.defaultValue))"
        }
        return "Any key of 'set' is a flag, applied in the order given, before the prompt:\n"
            + lines.joined(separator: "\n")
            + "\nRecorded as sessions/<time>.sdscript like the REPL; exits 1 at the first error."
    }

    /// The command line read: the prompt and the settings in the order given.
    struct Request {
        var prompt: String
        var settings: [(key: SettingKey, value: String)]
    }

    private var request: Request {
        get throws { try Self.read(words) }
    }

    func validate() throws {
        let request = try request
        // `-n N`, else the last `--batch N`: several images are saved as PATH-1, PATH-2, …
        let images = count ?? request.settings.last(where: { $0.key.name == "batch" }).flatMap { Int($0.value) } ?? 1
        if let output { try Self.checkOutput(output, images: images) }
    }

    /// What can be told about `-o PATH` before minutes of work: a format sdrepl writes, and no
    /// folder or file in the way (files are never overwritten). What only writing can tell (a full
    /// disk, no permission) falls back to outdir after the generation (`run`).
    static func checkOutput(_ path: String, images: Int) throws {
        guard !path.isEmpty else { throw ValidationError("-o needs a file name or a folder, got ''") }
        let expanded = path.expandingTilde
        let ext = (expanded as NSString).pathExtension
        if !ext.isEmpty, ImageFormat(path: expanded) == nil {
            throw ValidationError("-o \(path): sdrepl writes .png or .jpg (or both, for a name without an extension), not .\(ext)")
        }
        var isFolder: ObjCBool = false
        if expanded.hasSuffix("/") || (FileManager.default.fileExists(atPath: expanded, isDirectory: &isFolder) && isFolder.boolValue) {
            return  // into that folder, named as outdir's images are
        }
        let stem = (expanded as NSString).deletingPathExtension
        let stems = images > 1 ? (1...min(images, RequestLimits.batch.upperBound)).map { "\(stem)-\($0)" } : [stem]
        let names = stems.flatMap { stem in (ext.isEmpty ? ["png", "jpg"] : [ext]).map { stem + "." + $0 } }
        if let taken = names.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            throw ValidationError("-o \(path): \(taken) exists already and images are never overwritten; give another name")
        }
        // The nearest folder that exists must take new files (save makes the missing ones).
        if let reason = FileErrorText.unwritableFolderReason(Self.folder(of: expanded)) {
            throw ValidationError("-o \(path): \(reason); give a path in a writable folder")
        }
    }

    /// The path without its last component ("" for a bare name). Foundation's
    /// `deletingLastPathComponent` traps on a one-character name such as `x` from `expandingTildeInPath`.
    static func folder(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Reads the words ArgumentParser did not know: one prompt, and `--KEY VALUE` / `--KEY=VALUE`
    /// pairs whose KEY is a setting (or one of `set`'s aliases). Everything after `--` is positional.
    /// - Throws: `ValidationError` for an unknown flag (with the closest one), a flag without its
    ///   value, a second prompt, or none. Values are left to `set`, which checks them.
    static func read(_ words: [String]) throws -> Request {
        var prompt: String?
        var settings: [(key: SettingKey, value: String)] = []
        var rest = words[...]
        var positionalOnly = false
        while let word = rest.popFirst() {
            if !positionalOnly, word == "--" {
                positionalOnly = true
            } else if !positionalOnly, word.hasPrefix("-"), word.count > 1 {
                let flag = word.split(separator: "=", maxSplits: 1).map(String.init)
                let name = flag[0].drop(while: { $0 == "-" })
                guard word.hasPrefix("--"), let key = SettingKey.named(String(name)) else {
                    let flags = SettingKey.names + ["model", "output", "count", "sessions", "no-record", "keep-going", "help"]
                    let guess = closestWord(to: String(name), in: flags).map { "; did you mean '--\($0)'?" } ?? "; see 'sdrepl gen --help'"
                    throw ValidationError("unknown option '\(flag[0])'\(guess)")
                }
                if flag.count == 2 {
                    settings.append((key, flag[1]))
                } else if let value = rest.popFirst() {
                    settings.append((key, value))
                } else {
                    throw ValidationError("'\(word)' needs a value: \(key.values)")
                }
            } else if let first = prompt {
                throw ValidationError("one prompt only, got '\(first)' and '\(word)'; quote a prompt of several words")
            } else {
                prompt = word
            }
        }
        if let prompt, settings.contains(where: { $0.key.name == "prompt" }) {
            throw ValidationError("one prompt only, got '\(prompt)' and a --prompt; give it as the argument or as --prompt")
        }
        if prompt == nil, let index = settings.lastIndex(where: { $0.key.name == "prompt" }) {
            prompt = settings.remove(at: index).value
        }
        guard let prompt else { throw ValidationError("missing the prompt: sdrepl gen \"a prompt\"") }
        return Request(prompt: prompt, settings: settings)
    }

    /// The REPL lines the command line stands for.
    func lines(for request: Request) -> [String] {
        var lines: [String] = []
        // -o names the file wanted; autosave would write a second copy under outdir (--autosave on
        // still asks for it).
        if output != nil { lines.append("set autosave off") }
        lines += request.settings.map { "set \($0.key.name) \($0.value)" }
        lines.append("prompt \(request.prompt)")
        lines.append(count.map { "gen \($0)" } ?? "gen")
        if let output { lines.append("save \(output)") }
        return lines
    }

    func run() throws {
        // Ctrl-C, SIGTERM or SIGHUP stops the generation and leaves the images made so far recorded.
        Interrupt.install()
        let io = TerminalIO(allowEscapes: true, sixelEncoder: Wiring.sixelEncoder)
        let session = options.makeRecordedSession(io: io, kind: "gen")
        var failed = false, interrupted = false
        for line in lines(for: try request) {
            guard case .failed = session.execute(line) else { continue }
            failed = true
            interrupted = Interrupt.take()
            if interrupted || Interrupt.endingStatus != nil {
                // Stopped: the images finished are autosaved, or saved as -o asked (else in outdir).
                if let output, line.hasPrefix("gen"), !session.images.isEmpty, case .failed = session.execute("save \(output)") {
                    _ = session.execute("save")
                }
                break
            }
            // The images are made; where -o cannot take them, outdir does, rather than losing them.
            if let output, line == "save \(output)" {
                io.output("sdrepl gen: -o \(output) could not be written; saving in outdir instead")
                _ = session.execute("save")
            }
            if !options.keepGoing { break }
        }
        if let transcript = session.transcript, transcript.failure == nil { io.output("recorded to \(transcript.path)") }
        try SDRepl.leaveIfAsked()
        if failed { throw ExitCode(interrupted ? 128 + SIGINT : 1) }
    }
}
