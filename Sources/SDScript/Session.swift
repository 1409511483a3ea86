import Diffusion
import Foundation
import Imaging

/// An image made in this session, with the request that made it.
public struct SessionImage: Sendable {
    /// 1-based number in the session (`show N`, `#=> image N`).
    public let index: Int
    /// The resolved request (style applied, concrete seed).
    public let settings: GenerationSettings
    public let image: GeneratedImage
    /// SHA-256 of the RGB bytes, 64 hex digits.
    public let sha256: String
    public var savedPaths: [String]

    public var record: ResultRecord {
        .image(index: index, seed: settings.seed, width: image.pixels.width, height: image.pixels.height, sha256: sha256)
    }
}

/// What one line did.
public enum Outcome: Equatable {
    case ok
    case failed(Diagnostic)
    /// `quit`: the session should end.
    case quit
}

/// How a script file is replayed.
public struct ScriptOptions: Equatable, Sendable {
    /// Compare each `#=> image` line with the image regenerated (`run --check`).
    public var check = false
    /// Report errors and go on instead of stopping at the first.
    public var keepGoing = false

    public init(check: Bool = false, keepGoing: Bool = false) {
        self.check = check
        self.keepGoing = keepGoing
    }
}

/// What a replay found.
public struct ScriptSummary: Equatable, Sendable {
    /// Every error reported, in order (check mismatches included).
    public var errors: [Diagnostic] = []
    /// `image` result lines that matched.
    public var checked = 0
    /// The script said `quit`.
    public var quit = false

    public var succeeded: Bool { errors.isEmpty }
}

/// The REPL's state and its one processing loop, shared by interactive input and script files.
///
/// Each line is tokenised once (`ScriptLine`), dispatched through `Command.table`, and any error is
/// reported through `report`, which adds FILE:LINE when the line came from a file. The session goes on
/// after an error; a script stops unless `keepGoing`.
public final class Session {
    public var settings = SessionSettings()
    public let components: Components
    public let io: SessionIO
    /// Where interactive input is recorded; nil with `--no-record` and in scripts.
    public var transcript: TranscriptRecorder?
    public private(set) var images: [SessionImage] = []
    /// Indexes (into `images`) of the last `gen`'s images, for `save`.
    public private(set) var lastBatch: [Int] = []
    /// Draws the seed for `seed random` (0 ..< 2^32, as A1111 does).
    var drawSeed: () -> UInt64
    /// `run --check` replays without writing image files.
    var savingDisabled = false
    /// Nested `run` files may go this deep.
    public static let runDepthLimit = 8

    private var generator: (key: String, generator: ImageGenerator)?
    /// What the transcript needs of the line being run.
    private struct LineRecord {
        /// Lines that go into the transcript before the line (the seed a `gen` drew).
        var preamble: [String] = []
        /// Its result lines.
        var results: [ResultRecord] = []
        /// A `run` whose file's lines were written into the transcript one by one.
        var inlinedRun = false
    }
    private var line = LineRecord()
    private var frames: [Frame] = []

    /// One script file being run.
    private final class Frame {
        let path: String
        let options: ScriptOptions
        var summary = ScriptSummary()
        /// `images.count` when the current command started: its `#=> image` lines match from there.
        var commandStart = 0
        var resultCursor = 0

        init(path: String, options: ScriptOptions) {
            self.path = path
            self.options = options
        }
    }

    public init(components: Components = Components(), io: SessionIO, transcript: TranscriptRecorder? = nil,
                drawSeed: @escaping () -> UInt64 = { UInt64.random(in: 0..<(1 << 32)) }) {
        self.components = components
        self.io = io
        self.transcript = transcript
        self.drawSeed = drawSeed
    }

    // MARK: - Interactive input

    /// Runs one line typed by the user, records it in the transcript, and reports any error.
    public func execute(_ text: String) -> Outcome {
        line = LineRecord()
        let outcome = process(text, at: nil)
        record(text, outcome: outcome, at: nil)
        return outcome
    }

    /// Writes a line that has run into the transcript, so that replaying the transcript anywhere
    /// makes the same images: a random seed as the concrete seed each `gen` drew, input paths
    /// (`model`, `load`, `set model`, `set styles`, `set lora-dir`) made absolute, and a `run FILE` as the lines of
    /// FILE that ran (recorded as each runs), so the transcript needs neither the file nor its folder.
    private func record(_ text: String, outcome: Outcome, at location: SourceLocation?) {
        guard let transcript else { return }
        switch ScriptLine(text) {
        case .blank, .result, .malformedResult: return
        case .comment: transcript.record(text.trimmingWhitespace())
        case .command(let command):
            if line.inlinedRun {
                // Its lines, and any error among them, are in the transcript already.
                if outcome != .quit {
                    transcript.record("# end of run \(Self.absolute(resolve(command.argument, relativeTo: location)))")
                }
                return
            }
            switch outcome {
            case .quit: return
            case .ok:
                line.preamble.forEach(transcript.record)
                if Self.choosesRandomSeed(command) {
                    // Replays use the concrete seed each `gen` drew, written just before it.
                    transcript.record("# " + text.trimmingWhitespace())
                } else {
                    transcript.record(replayable(command, typed: text, at: location))
                }
            case .failed(let diagnostic):
                line.preamble.forEach(transcript.record)
                let firstLine = diagnostic.error.description.split(separator: "\n").first.map(String.init) ?? ""
                let made = line.results.filter { if case .image = $0 { return true } else { return false } }.count
                if made > 0 && Command.named(command.name)?.name == "gen" {
                    // A gen stopped part-way (Ctrl-C, a failed save): replay exactly the images it made.
                    transcript.record("gen \(made) # \(text.trimmingWhitespace()), stopped: \(firstLine)")
                } else {
                    transcript.record("# " + text.trimmingWhitespace())
                    transcript.record("# error: " + firstLine)
                    // Not replayable as they stand: kept for the reader, not for --check.
                    line.results.forEach { transcript.record("# " + $0.description) }
                    return
                }
            }
            line.results.forEach { transcript.record($0.description) }
        }
    }

    /// The command as the transcript keeps it: input paths absolute, resolved as the command resolved
    /// them (a script's `model` and `load` relative to the script's folder), so a replay from
    /// `sessions/` or any other folder reads the same files.
    private func replayable(_ command: CommandText, typed text: String, at location: SourceLocation?) -> String {
        let name = Command.named(command.name)?.name
        let argument = command.argument
        switch name {
        case "model" where argument.words.first != "download", "load":
            return "\(name ?? command.name) \(Self.absolute(resolve(argument, relativeTo: location)))"
        case "set":
            let setting = CommandText(argument)
            if let key = SettingKey.named(setting.name), ["model", "styles", "lora-dir", "embeddings"].contains(key.name),
               !setting.argument.isEmpty {
                return "set \(key.name) \(Self.absolute(NSString(string: setting.argument).expandingTildeInPath))"
            }
        default:
            break
        }
        return text.trimmingWhitespace()
    }

    /// `path` made absolute against the current folder, `.` and `..` removed.
    static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }

    /// `seed random`, `set seed random`, `unset seed`: written as a comment, since each `gen` records
    /// the seed it drew.
    private static func choosesRandomSeed(_ command: CommandText) -> Bool {
        let words = command.argument.droppingTrailingComment().lowercased().words
        switch command.name.lowercased() {
        case "seed": return words == ["random"] || words == ["-1"]
        case "set": return words == ["seed", "random"] || words == ["seed", "-1"]
        case "unset": return words == ["seed"]
        default: return false
        }
    }

    /// Records a comment line in the transcript (session start, model given on the command line).
    public func recordComment(_ text: String) {
        transcript?.record("# " + text)
    }

    /// Records a command line in the transcript as if typed (`model PATH` from `--model`).
    public func recordCommand(_ text: String) {
        transcript?.record(text)
    }

    // MARK: - Scripts

    /// Replays the script at `path` (`sdrepl run FILE`, the `run` command).
    public func runScript(at path: String, options: ScriptOptions = ScriptOptions()) -> ScriptSummary {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let diagnostic = report(.file(command: "run", path: path, reason: FileManager.default.fileExists(atPath: path) ? "cannot read it" : "no such file"), at: nil)
            var summary = ScriptSummary()
            summary.errors.append(diagnostic)
            return summary
        }
        return runScript(lines: lines(of: text), name: path, options: options)
    }

    /// Replays lines read from anywhere (`sdrepl < FILE` reads standard input lazily); `name` is used
    /// for FILE:LINE and for `run` cycle detection.
    public func runScript<Lines: Sequence>(lines: Lines, name: String, options: ScriptOptions = ScriptOptions())
        -> ScriptSummary where Lines.Element == String {
        let frame = Frame(path: name, options: options)
        if options.check { savingDisabled = true }
        frames.append(frame)
        defer { frames.removeLast() }
        var number = 0
        for text in lines {
            number += 1
            let location = SourceLocation(file: name, line: number)
            // In an interactive session, a `run` file's lines go into the transcript one by one.
            let outer = line
            line = LineRecord()
            let outcome = process(text, at: location)
            record(text, outcome: outcome, at: location)
            line = outer
            switch outcome {
            case .ok: continue
            case .quit:
                frame.summary.quit = true
                return frame.summary
            case .failed(let diagnostic):
                frame.summary.errors.append(diagnostic)
                if case .checkMismatch = diagnostic.error { continue }
                if !options.keepGoing { return frame.summary }
            }
        }
        return frame.summary
    }

    private func lines(of text: String) -> [String] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    // MARK: - The loop

    /// Tokenises and runs one line; reports an error through `report`.
    func process(_ text: String, at location: SourceLocation?) -> Outcome {
        switch ScriptLine(text) {
        case .blank, .comment:
            return .ok
        case .malformedResult(let line):
            guard let frame = frames.last, frame.options.check else { return .ok }
            return .failed(report(.checkMismatch("cannot read this result line: \(line)"), at: location))
        case .result(let record):
            return check(record, at: location)
        case .command(let command):
            if let frame = frames.last {
                frame.commandStart = images.count
                frame.resultCursor = 0
            }
            return dispatch(command, at: location)
        }
    }

    private func dispatch(_ text: CommandText, at location: SourceLocation?) -> Outcome {
        guard let command = Command.named(text.name) else {
            let suggestion = closestWord(to: text.name, in: Command.table.map(\.name))
            return .failed(report(.unknownCommand(text.name, suggestion: suggestion), at: location))
        }
        let argument = command.kind == .words ? text.argument.droppingTrailingComment() : text.argument
        do {
            return try command.handler(self, argument, location)
        } catch let error as ScriptError {
            return .failed(report(error, at: location))
        } catch let nested as NestedScriptFailure {
            return .failed(nested.diagnostic)
        } catch is QuitRequest {
            return .quit
        } catch {
            return .failed(report(.generation("\(error)"), at: location))
        }
    }

    /// The one place errors are shown: prefixed with FILE:LINE when the line came from a file.
    @discardableResult
    func report(_ error: ScriptError, at location: SourceLocation?) -> Diagnostic {
        let diagnostic = Diagnostic(error, at: location)
        io.diagnostic(diagnostic.description)
        return diagnostic
    }

    private func check(_ record: ResultRecord, at location: SourceLocation?) -> Outcome {
        guard let frame = frames.last, frame.options.check,
              case .image(let index, let seed, let width, let height, let sha256) = record else { return .ok }
        let position = frame.commandStart + frame.resultCursor
        frame.resultCursor += 1
        guard position < images.count else {
            let made = images.count - frame.commandStart
            return .failed(report(.checkMismatch(
                "image \(index): recorded, but the command before made \(made) image\(made == 1 ? "" : "s")"), at: location))
        }
        let image = images[position]
        var differences: [String] = []
        if image.settings.seed != seed { differences.append("seed recorded \(seed), replayed \(image.settings.seed)") }
        if image.image.pixels.width != width || image.image.pixels.height != height {
            differences.append("size recorded \(width)x\(height), replayed \(image.image.pixels.width)x\(image.image.pixels.height)")
        }
        if image.sha256 != sha256 { differences.append("sha256 recorded \(sha256), replayed \(image.sha256)") }
        guard differences.isEmpty else {
            return .failed(report(.checkMismatch("image \(index) differs: " + differences.joined(separator: "; ")), at: location))
        }
        frame.summary.checked += 1
        return .ok
    }

    // MARK: - What the commands use

    /// Runs a nested script for the `run` command.
    func runNested(_ path: String, at location: SourceLocation?) throws {
        let resolved = resolve(path, relativeTo: location)
        let canonical = URL(fileURLWithPath: resolved).standardizedFileURL.resolvingSymlinksInPath().path
        let chain = frames.map { URL(fileURLWithPath: $0.path).standardizedFileURL.resolvingSymlinksInPath().path }
        if chain.contains(canonical) {
            throw ScriptError.runCycle(chain: frames.map(\.path) + [resolved])
        }
        if frames.count >= Self.runDepthLimit {
            throw ScriptError.runTooDeep(path: resolved, limit: Self.runDepthLimit)
        }
        guard FileManager.default.isReadableFile(atPath: resolved) else {
            throw ScriptError.file(command: "run", path: resolved, reason: "no such file, or not readable")
        }
        let options = frames.last?.options ?? ScriptOptions()
        if let transcript {
            transcript.record("# run \(Self.absolute(resolved))")
            line.inlinedRun = true
        }
        let summary = runScript(at: resolved, options: options)
        frames.last?.summary.checked += summary.checked
        if summary.quit { throw QuitRequest() }
        guard let last = summary.errors.last else { return }
        // The last error becomes the `run` command's own failure; the others are counted here.
        frames.last?.summary.errors += summary.errors.dropLast()
        throw NestedScriptFailure(diagnostic: last)
    }

    /// A path in a script is relative to that script's folder; typed at the prompt, to the current one.
    func resolve(_ path: String, relativeTo location: SourceLocation?) -> String {
        let expanded = NSString(string: path).expandingTildeInPath
        guard !expanded.hasPrefix("/"), let location, location.file != "<stdin>" else { return expanded }
        let folder = URL(fileURLWithPath: location.file).deletingLastPathComponent().path
        return folder == "." ? expanded : folder + "/" + expanded
    }

    /// The generator for the current model, loaded on first use and kept for the session, told
    /// where the LoRAs and embeddings are now.
    func loadedGenerator() throws -> ImageGenerator {
        let generator = try modelGenerator()
        generator.useLoRADirectories(loraDirectories())
        generator.useEmbeddingDirectories(embeddingDirectories())
        return generator
    }

    private func modelGenerator() throws -> ImageGenerator {
        let location: ModelLocation
        do {
            location = try components.models.locate(explicit: settings.model)
        } catch {
            throw ScriptError.noModel("\(error)")
        }
        let key = location.path + "|" + settings.memory.rawValue
        if let generator, generator.key == key { return generator.generator }
        guard let loader = components.generatorLoader else { throw ScriptError.noEngine(model: location.path) }
        io.output("loading \(location.path) (\(location.source)) …")
        let loaded: ImageGenerator
        do {
            loaded = try loader.load(model: location, memory: settings.memory)
        } catch {
            throw ScriptError.file(command: "model", path: location.path, reason: "\(error)")
        }
        loaded.loadWarnings.forEach(io.diagnostic)
        generator = (key, loaded)
        return loaded
    }

    /// The request with the style applied.
    func resolvedRequest(seed: UInt64) throws -> GenerationSettings {
        var request = settings.request(seed: seed)
        guard let styled = components.styles.apply(settings.style, prompt: settings.prompt, negative: settings.negative) else {
            throw ScriptError.badArgument(command: "gen", argument: settings.style, reason: "unknown style",
                                          suggestion: closestWord(to: settings.style, in: components.styles.names))
        }
        if styled.prompt != request.prompt || styled.negative != request.negative {
            request.typedPrompt = request.prompt
            request.typedNegative = request.negative
        }
        request.prompt = styled.prompt
        request.negative = styled.negative
        return request
    }

    /// Where `<lora:NAME>` looks: `lora-dir` when set, then `models/Lora` in the current folder and
    /// `Lora` beside the model's folder (A1111 keeps checkpoints in `models/Stable-diffusion` and
    /// LoRAs in `models/Lora`).
    func loraDirectories() -> [URL] {
        folders(chosen: settings.loraDir, here: "models/Lora", besideModels: "Lora")
    }

    /// Where textual-inversion embeddings are found: `embeddings` when set, then `embeddings`
    /// in the current folder and beside the models folder (A1111's `embeddings/` next to `models/`).
    func embeddingDirectories() -> [URL] {
        folders(chosen: settings.embeddingsDir, here: "embeddings", besideModels: "../embeddings")
    }

    /// `chosen`, then `here` in the current folder, then `besideModels` relative to the folder that
    /// holds the model (`models/` for `models/Stable-diffusion/x.safetensors`), without repeats.
    private func folders(chosen: String?, here: String, besideModels: String) -> [URL] {
        var folders: [URL] = []
        if let chosen { folders.append(URL(fileURLWithPath: NSString(string: chosen).expandingTildeInPath)) }
        folders.append(URL(fileURLWithPath: here))
        if let model = try? components.models.locate(explicit: settings.model) {
            let url = URL(fileURLWithPath: model.path)
            let folder = (model.path.hasSuffix(".safetensors") ? url.deletingLastPathComponent() : url).deletingLastPathComponent()
            folders.append(folder.appendingPathComponent(besideModels))
        }
        var seen = Set<String>()
        return folders.map(\.standardizedFileURL).filter { seen.insert($0.path).inserted }
    }

    /// Generates `count` images with seeds base … base+count-1.
    func generate(count: Int) throws {
        let generator = try loadedGenerator()
        let base: UInt64
        switch settings.seed {
        case .fixed(let seed): base = seed
        case .random:
            base = drawSeed()
            line.preamble.append("seed \(base) # random")
        }
        lastBatch = []
        io.clearInterrupt()
        for offset in 0..<count {
            let request = try resolvedRequest(seed: base &+ UInt64(offset))
            let image: GeneratedImage
            do {
                image = try generator.generate(request, progress: { [io, settings] in
                                                   io.progress($0, index: offset + 1, count: count, mode: settings.preview)
                                               },
                                               isCancelled: { [io] in io.isInterrupted })
                io.progressDone()
            } catch {
                io.progressDone()
                if io.isInterrupted { throw ScriptError.cancelled(completed: offset, requested: count) }
                if case LoRAError.notFound(let name, _) = error,
                   let near = closestWord(to: name, in: LoRALibrary.names(in: loraDirectories())) {
                    throw ScriptError.generation("\(error) (did you mean '\(near)'?)")
                }
                throw ScriptError.generation("\(error)")
            }
            let pixels = image.pixels
            guard pixels.width == request.width, pixels.height == request.height else {
                throw ScriptError.generation("the engine returned \(pixels.width)x\(pixels.height) for \(request.width)x\(request.height)")
            }
            var entry = SessionImage(index: images.count + 1, settings: request, image: image,
                                     sha256: pixelHash(pixels), savedPaths: [])
            images.append(entry)
            lastBatch.append(images.count - 1)
            line.results.append(entry.record)
            var line = "image \(entry.index): seed \(request.seed), \(pixels.width)x\(pixels.height), sha256 \(entry.sha256.prefix(16))…"
            var saveError: ScriptError?
            if settings.autosave, !savingDisabled, components.saver != nil {
                do {
                    entry.savedPaths = try save(images.count - 1, to: nil)
                    line += ", saved " + entry.savedPaths.joined(separator: " ")
                } catch let error as ScriptError {
                    saveError = error
                }
            }
            io.output(line)
            io.display(pixels, mode: settings.preview)
            if let saveError { throw saveError }
            if io.isInterrupted && offset + 1 < count {
                throw ScriptError.cancelled(completed: offset + 1, requested: count)
            }
        }
    }

    /// Saves image `position` (index into `images`); records `#=> saved` lines.
    @discardableResult
    func save(_ position: Int, to path: String?) throws -> [String] {
        // `run --check` verifies a transcript; it writes no image files (its `save` lines included).
        if savingDisabled { return [] }
        guard let saver = components.saver else {
            throw ScriptError.unavailable(command: "save", reason: "this session has no image writer")
        }
        let image = images[position]
        let paths: [String]
        do {
            paths = try saver.save(image.image, settings: image.settings, to: path, directory: settings.outdir,
                                   jpegQuality: settings.jpegQuality)
        } catch let error as ScriptError {
            throw error
        } catch {
            throw ScriptError.file(command: "save", path: path ?? settings.outdir,
                                   reason: "\(error); the image stays in the session, try 'save PATH' elsewhere")
        }
        images[position].savedPaths += paths
        line.results += paths.map { .saved(index: image.index, path: $0) }
        return paths
    }
}

/// `quit` inside a nested `run`.
struct QuitRequest: Error {}

/// A nested script failed; its error was reported already, with its own FILE:LINE.
struct NestedScriptFailure: Error {
    let diagnostic: Diagnostic
}
