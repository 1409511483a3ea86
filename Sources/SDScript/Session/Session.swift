import Diffusion
import FileErrors
import Foundation
import Imaging

/// What one line did.
public enum Outcome: Equatable {
    case ok
    case failed(Diagnostic)
    /// `quit`: the session should end.
    case quit
}

/// The REPL's state and its one processing loop, shared by interactive input and script files.
///
/// Each line is tokenised once (`ScriptLine`), dispatched through `Command.table`, and any error is
/// reported through `report`, which adds FILE:LINE when the line came from a file. The session goes on
/// after an error; a script stops unless `keepGoing`. The parts: the settings and the image history
/// (data), `GenerationService` (model, engine, saving), `TranscriptLog` (what is recorded),
/// `ScriptFrames` (the files being run and `--check`); everything the user sees leaves as a
/// `SessionEvent` through `io`.
public final class Session {
    public var settings = SessionSettings()
    public internal(set) var history = ImageHistory()
    /// The front end's events, also kept by `page` (`SessionEventTee`).
    public let io: SessionIO
    /// Every command and what it showed, for `export` (`SessionPage`).
    public let page: SessionPageRecorder
    let generation: GenerationService
    let log: TranscriptLog
    let upscaling = UpscaleService()
    var frames = ScriptFrames()
    /// Draws the seed for `seed random` (0 ..< 2^32, as A1111 does).
    var drawSeed: () -> UInt64
    /// `run --check` replays without writing image files.
    var savingDisabled = false
    /// `run --shard K/N`: which images this run makes; nil for all.
    var sharding: ShardState?
    /// Under `set precision auto`: the precision the transcript last recorded for a generation.
    var recordedAutoPrecision: MatmulPrecision?

    public var components: Components { generation.components }
    public var images: [SessionImage] { history.images }
    public var lastBatch: [Int] { history.lastBatch }
    /// Where interactive input is recorded; nil with `--no-record` and in scripts.
    public var transcript: TranscriptRecorder? {
        get { log.recorder }
        set { log.recorder = newValue }
    }

    public init(components: Components = Components(), io: SessionIO, transcript: TranscriptRecorder? = nil,
                drawSeed: @escaping () -> UInt64 = { UInt64.random(in: 0..<(1 << 32)) }) {
        generation = GenerationService(components: components)
        page = SessionPageRecorder()
        let tee = SessionEventTee(frontEnd: io, recorder: page)
        self.io = tee
        log = TranscriptLog(recorder: transcript)
        self.drawSeed = drawSeed
        log.warn = { [tee] in tee.warning($0) }
        generation.loadedWithoutPath = { [unowned self] in recordDiscoveredModel($0, replayed: $1) }
    }

    // MARK: - Interactive input

    /// Runs one line typed by the user, records it in the transcript, and reports any error.
    public func execute(_ text: String) -> Outcome {
        log.line = LineRecord()
        let outcome = process(text, at: nil)
        log.record(text, outcome: outcome, at: nil, resolve: resolve)
        return outcome
    }

    /// Records a comment line in the transcript (session start, model given on the command line).
    public func recordComment(_ text: String) { log.recordComment(text) }

    /// Records a command line in the transcript as if typed (`model PATH` from `--model`).
    public func recordCommand(_ text: String) { log.recordLine(text) }

    /// Whether the session may end now (Ctrl-D): false once, with the reason shown, while the
    /// transcript could not be written and was not saved elsewhere.
    public func confirmLeave() -> Bool {
        guard let refusal = log.leavingRefusal() else { return true }
        report(refusal, at: nil)
        return false
    }

    // MARK: - The loop

    /// Tokenises and runs one line; reports an error through `report`.
    func process(_ text: String, at location: SourceLocation?) -> Outcome {
        switch ScriptLine(text) {
        case .blank, .comment:
            return .ok
        case .malformedResult(let line):
            guard frames.checking else { return .ok }
            return .failed(report(.checkMismatch("cannot read this result line: \(line)"), at: location))
        case .result(let record):
            guard frames.checking else { return .ok }
            if let mismatch = frames.check(record, against: history.images) {
                return .failed(report(.checkMismatch(mismatch), at: location))
            }
            return .ok
        case .command(let command):
            reportUnrecorded()
            frames.commandStarts(imageCount: history.images.count, at: location)
            io.emit(.command(text, at: location))
            let started = Date()
            let outcome = dispatch(command, at: location)
            var failed = false
            if case .failed = outcome { failed = true }
            io.emit(.commandDone(seconds: Date().timeIntervalSince(started), failed: failed))
            return outcome
        }
    }

    private func dispatch(_ text: CommandText, at location: SourceLocation?) -> Outcome {
        guard let command = Command.named(text.name) else {
            // A setting's name where a command goes (`steps 20`): the `set` line it stands for.
            let suggestion = SettingKey.named(text.name).map { "set \($0.name)" + (text.argument.isEmpty ? "" : " " + text.argument) }
                ?? closestWord(to: text.name, in: Command.table.map(\.name))
            return .failed(report(.unknownCommand(text.name, suggestion: suggestion), at: location))
        }
        let argument = command.kind == .words ? text.argument.droppingTrailingComment() : text.argument
        do {
            if try shardSkips(command.name, argument) { return .ok }
            return try command.handler(self, argument, location)
        } catch let error as ScriptError {
            return .failed(report(error, at: location))
        } catch let nested as NestedScriptFailure {
            return .failed(nested.diagnostic)
        } catch is QuitRequest {
            return .quit
        } catch {
            return .failed(report(.engine(EngineFailure(error), command: command.name), at: location))
        }
    }

    /// The one place errors are shown: prefixed with FILE:LINE when the line came from a file.
    @discardableResult
    func report(_ error: ScriptError, at location: SourceLocation?) -> Diagnostic {
        let diagnostic = Diagnostic(error, at: location)
        io.emit(.error(diagnostic))
        return diagnostic
    }

    /// A path in a script is relative to that script's folder; typed at the prompt, to the current one.
    func resolve(_ path: String, relativeTo location: SourceLocation?) -> String {
        let expanded = path.expandingTilde
        guard !expanded.hasPrefix("/"), let location, location.file != "<stdin>" else { return expanded }
        let folder = URL(fileURLWithPath: location.file).deletingLastPathComponent().path
        return folder == "." ? expanded : folder + "/" + expanded
    }

    // MARK: - What the commands use

    /// The generator for the current model, loaded on first use and kept; errors name `command`.
    func loadedGenerator(for command: String = "gen") throws -> ImageGenerator {
        try generation.generator(for: settings.resources, io: io, command: command)
    }

    /// The request of the next `gen` with the style applied; errors name `command`.
    func resolvedRequest(seed: UInt64, count: Int = 1, for command: String = "gen") throws -> StyledRequest {
        try generation.resolve(settings.request, seed: seed, count: count, command: command, history: history.images,
                               note: { [io] in io.output($0) })
    }

    func loraDirectories() -> [URL] { generation.loraDirectories(settings.resources) }
    func embeddingDirectories() -> [URL] { generation.embeddingDirectories(settings.resources) }
    func folders() -> ResourceFolders { generation.folders(for: settings.resources) }

    /// Generates `count` images with seeds base … base+count-1, in one engine batch: the text is
    /// encoded once. Each image is kept, autosaved and shown as it is finished.
    func generate(count: Int) throws {
        let base: UInt64
        switch settings.request.seed {
        case .fixed(let seed): base = seed
        case .random:
            base = drawSeed()
            log.line.preamble.append("seed \(base) # random")
        }
        let size = settings.request.hiresFix.map { ($0.width, $0.height) } ?? (settings.request.width, settings.request.height)
        _ = try settleVAETiling(settings.request.vaeTiling, width: size.0, height: size.1, command: "gen")
        if let sharding { return try generateShare(count: count, base: base, in: sharding) }
        history.startBatch()
        try renderGen(try resolvedRequest(seed: base, count: count), base: base)
    }

    /// `gen`'s images of `own`, the request with the user's own settings: in draft mode the draft of
    /// it, keeping `own` for `final N`.
    func renderGen(_ own: StyledRequest, base: UInt64) throws {
        let draft = settings.resources.draft
        var request = draft.map { $0.applied(to: own) } ?? own
        request.engine.precision = settledPrecision(settings.request.precision, drafting: draft != nil)
        try render(request, base: base, settings: settings, own: draft == nil ? nil : own, command: "gen")
    }

    /// Runs `request` (seeds from `base`) and keeps each image in the current batch as it is
    /// finished; `own` is the request with the user's own settings when `request` is a draft of it.
    func render(_ request: StyledRequest, base: UInt64, settings: SessionSettings, own: StyledRequest?, command: String) throws {
        let vae = generation.vaeFile(settings.resources)
        try generation.generate(request, settings: settings, io: io, command: command) { result, pixels, model in
            let offset = Int(result.request.seed &- base)
            var entry = SessionImage(index: history.nextIndex, request: request.image(offset), pixels: pixels, model: model,
                                     loras: result.loras, seconds: result.seconds, decoder: result.decoder,
                                     sha256: pixelHash(pixels))
            entry.vae = vae
            entry.finalRequest = own?.image(offset)
            try keep(entry, command: command)
        }
    }

    /// Adds a finished image to the history (in the current batch) and the transcript's results,
    /// autosaves it when that is on, and shows it.
    /// - Throws: the autosave's error, after the image is kept and shown.
    func keep(_ image: SessionImage, command: String) throws {
        var entry = image
        let position = history.append(entry)
        log.line.results.append(entry.record)
        var saveError: ScriptError?
        if settings.output.autosave, !savingDisabled, components.saver != nil {
            do {
                entry.savedPaths = try save(position, to: nil)
            } catch ScriptError.imageNotSaved(_, let reason) {
                saveError = .imageNotSaved(command: command, reason: "autosave: " + reason)
            } catch let error as ScriptError {
                saveError = error
            }
        }
        io.emit(.image(entry, preview: settings.output.preview))
        if let saveError { throw saveError }
    }

    /// Saves image `position` (index into `images`); records `#=> saved` lines.
    @discardableResult
    func save(_ position: Int, to path: String?) throws -> [String] {
        // `run --check` verifies a transcript; it writes no image files (its `save` lines included).
        if savingDisabled { return [] }
        let image = history.images[position]
        let saved = try generation.save(image, to: path, output: settings.output)
        saved.warnings.forEach(io.warning)
        let paths = saved.paths
        history.addSavedPaths(paths, at: position)
        log.line.results += paths.map { .saved(index: image.index, path: $0) }
        return paths
    }
}
