import Diffusion
import FileErrors
import Foundation

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
    /// Images made that no result line recorded, and the reports of them among `errors`.
    public var unrecorded = 0
    public var unrecordedReports = 0
    /// `#=> image` lines after the error a check stopped at (without `--keep-going`): never compared.
    public var unreached = 0
    /// The script said `quit`.
    public var quit = false

    public var succeeded: Bool { errors.isEmpty }
}

/// The script files being run, innermost last, and the `--check` bookkeeping of each: which image
/// the next `#=> image` line is compared with.
struct ScriptFrames {
    final class Frame {
        let path: String
        let options: ScriptOptions
        var summary = ScriptSummary()
        /// `images.count` when the current command started: its `#=> image` lines match from there.
        var commandStart = 0
        var resultCursor = 0
        /// The current command's line, for images it made that no result line records.
        var commandLocation: SourceLocation?

        init(path: String, options: ScriptOptions) {
            self.path = path
            self.options = options
        }
    }

    private(set) var stack: [Frame] = []
    /// Nested `run` files may go this deep.
    static let depthLimit = 8

    var innermost: Frame? { stack.last }
    var checking: Bool { stack.last?.options.check ?? false }

    mutating func push(_ frame: Frame) { stack.append(frame) }
    mutating func pop() { stack.removeLast() }

    func commandStarts(imageCount: Int, at location: SourceLocation?) {
        stack.last?.commandStart = imageCount
        stack.last?.resultCursor = 0
        stack.last?.commandLocation = location
    }

    /// When checking, what the current command made that no `#=> image` line recorded (a transcript
    /// cut short, or edited), to report before the next command starts and at the end; nil when
    /// every image was checked.
    func unrecorded(in images: [SessionImage]) -> (message: String, location: SourceLocation?, count: Int)? {
        guard let frame = stack.last, frame.options.check else { return nil }
        let made = images.count - frame.commandStart
        guard made > frame.resultCursor else { return nil }
        let missing = images[(frame.commandStart + frame.resultCursor)...].map { "\($0.index)" }
        let list = missing.count == 1 ? "image \(missing[0]) has" : "images \(missing.joined(separator: ", ")) have"
        return ("\(list) no '#=> image' line to check against (the command made \(made), \(frame.resultCursor) recorded); "
                + "the transcript was cut short or edited", frame.commandLocation, missing.count)
    }

    /// Compares a recorded `#=> image` line with the image the command before it made; returns what
    /// differs, or nil when it matches (and counts it).
    func check(_ record: ResultRecord, against images: [SessionImage]) -> String? {
        guard let frame = stack.last, case .image(let index, let seed, let width, let height, let sha256) = record else { return nil }
        let position = frame.commandStart + frame.resultCursor
        frame.resultCursor += 1
        guard position < images.count else {
            let made = images.count - frame.commandStart
            return "image \(index): recorded, but the command before made \(made) image\(made == 1 ? "" : "s")"
        }
        let image = images[position]
        var differences: [String] = []
        let replayedSeed = image.request.engine.seed
        if replayedSeed != seed { differences.append("seed recorded \(seed), replayed \(replayedSeed)") }
        if image.pixels.width != width || image.pixels.height != height {
            differences.append("size recorded \(width)x\(height), replayed \(image.pixels.width)x\(image.pixels.height)")
        }
        if image.sha256 != sha256 { differences.append("sha256 recorded \(sha256), replayed \(image.sha256)") }
        guard differences.isEmpty else { return "image \(index) differs: " + differences.joined(separator: "; ") }
        frame.summary.checked += 1
        return nil
    }
}

extension Session {
    /// Nested `run` files may go this deep.
    public static var runDepthLimit: Int { ScriptFrames.depthLimit }

    /// Replays the script at `path` (`sdrepl run FILE`, the `run` command).
    public func runScript(at path: String, options: ScriptOptions = ScriptOptions()) -> ScriptSummary {
        do {
            return runScript(lines: try Self.readScript(at: path), name: path, options: options)
        } catch let error as ScriptError {
            var summary = ScriptSummary()
            summary.errors.append(report(error, at: nil))
            return summary
        } catch {
            preconditionFailure("readScript throws ScriptError only")
        }
    }

    /// The lines of the script at `path`.
    /// - Throws: `ScriptError.file` saying why it cannot be read (no such file, a folder, not UTF-8).
    static func readScript(at path: String) throws -> [String] {
        if let reason = FileErrorText.specialFileReason(path) {
            throw ScriptError.file(command: "run", path: path, reason: reason + "; a script is a text file of commands")
        }
        do {
            return lines(of: try String(contentsOfFile: path, encoding: .utf8))
        } catch {
            var reason = FileErrorText.reason(error)
            if reason == "not UTF-8 text" { reason += "; a script is a text file of commands" }
            throw ScriptError.file(command: "run", path: path, reason: reason)
        }
    }

    /// Replays lines read from anywhere (`sdrepl < FILE` reads standard input lazily); `name` is used
    /// for FILE:LINE and for `run` cycle detection.
    public func runScript<Lines: Sequence>(lines: Lines, name: String, options: ScriptOptions = ScriptOptions())
        -> ScriptSummary where Lines.Element == String {
        let frame = ScriptFrames.Frame(path: name, options: options)
        // A nested file's result lines are checked from its own first image, not the session's.
        frame.commandStart = history.images.count
        if options.check { savingDisabled = true }
        frames.push(frame)
        // A `# model` line pins the model for the rest of this file only, and a recorded
        // transcript's header its engine numerics.
        let pinnedBefore = settings.resources.replayedModel, numericsBefore = Tensor.numerics
        defer {
            frames.pop()
            settings.resources.replayedModel = pinnedBefore
            if Tensor.numerics != numericsBefore {
                Tensor.numerics = numericsBefore
                // In a session's transcript the file's lines are inlined: the numerics after them.
                log.recordComment(ScriptNumerics.label + BLAS.numerics)
            }
        }
        var number = 0
        var remaining = lines.makeIterator()
        while let text = remaining.next() {
            number += 1
            let location = SourceLocation(file: name, line: number)
            // In an interactive session, a `run` file's lines go into the transcript one by one.
            let outer = log.line
            log.line = LineRecord()
            let line = number == 1 ? Self.droppingByteOrderMark(text) : text
            if let numerics = ScriptNumerics.engineNumerics(asked: line) { Tensor.numerics = numerics }
            if options.check, let note = ScriptNumerics.note(line, at: location) { io.warning(note) }
            applyModelPin(line, at: location)
            let outcome = process(line, at: location)
            log.record(line, outcome: outcome, at: location, resolve: resolve)
            log.line = outer
            switch outcome {
            case .ok: continue
            case .quit:
                reportUnrecorded()
                frame.summary.quit = true
                return frame.summary
            case .failed(let diagnostic):
                frame.summary.errors.append(diagnostic)
                if case .checkMismatch = diagnostic.error { continue }
                if !options.keepGoing {
                    if options.check {
                        while let rest = remaining.next() { if case .image? = ResultRecord(line: rest) { frame.summary.unreached += 1 } }
                    }
                    return frame.summary
                }
            }
        }
        reportUnrecorded()
        return frame.summary
    }

    /// Reports the images of the command that just ended that no result line checked.
    func reportUnrecorded() {
        guard let (message, location, count) = frames.unrecorded(in: history.images) else { return }
        frames.innermost?.summary.errors.append(report(.checkMismatch(message), at: location))
        frames.innermost?.summary.unrecorded += count
        frames.innermost?.summary.unrecordedReports += 1
        // Once: the images count as reported.
        frames.innermost?.resultCursor = history.images.count - (frames.innermost?.commandStart ?? 0)
    }

    /// The lines of a script file: LF or CRLF endings (Swift reads "\r\n" as one character, so it
    /// is matched as such), without a trailing empty line.
    static func lines(of text: String) -> [String] {
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    /// A UTF-8 byte-order mark at the start of a file is not part of its first command.
    static func droppingByteOrderMark(_ line: String) -> String {
        line.hasPrefix("\u{FEFF}") ? String(line.dropFirst()) : line
    }

    /// Runs a nested script for the `run` command.
    func runNested(_ path: String, at location: SourceLocation?) throws {
        let resolved = resolve(path, relativeTo: location)
        let canonical = URL(fileURLWithPath: resolved).standardizedFileURL.resolvingSymlinksInPath().path
        let chain = frames.stack.map { URL(fileURLWithPath: $0.path).standardizedFileURL.resolvingSymlinksInPath().path }
        if chain.contains(canonical) {
            throw ScriptError.runCycle(chain: frames.stack.map(\.path) + [resolved])
        }
        if frames.stack.count >= ScriptFrames.depthLimit {
            throw ScriptError.runTooDeep(path: resolved, limit: ScriptFrames.depthLimit)
        }
        let lines = try Self.readScript(at: resolved)
        let options = frames.innermost?.options ?? ScriptOptions()
        if transcript != nil {
            log.recordLine("# run \(absolute(resolved))")
            log.line.inlinedRun = true
        }
        let summary = runScript(lines: lines, name: resolved, options: options)
        // The nested file's own result lines checked its images.
        frames.innermost?.commandStart = history.images.count
        frames.innermost?.summary.checked += summary.checked
        frames.innermost?.summary.unrecorded += summary.unrecorded
        frames.innermost?.summary.unrecordedReports += summary.unrecordedReports
        frames.innermost?.summary.unreached += summary.unreached
        if summary.quit { throw QuitRequest() }
        guard let last = summary.errors.last else { return }
        // The last error becomes the `run` command's own failure; the others are counted here.
        frames.innermost?.summary.errors += summary.errors.dropLast()
        throw NestedScriptFailure(diagnostic: last)
    }
}

/// `quit` inside a nested `run`.
struct QuitRequest: Error {}

/// A nested script failed; its error was reported already, with its own FILE:LINE.
struct NestedScriptFailure: Error {
    let diagnostic: Diagnostic
}
