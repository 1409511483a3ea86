import Diffusion
import Foundation
import Imaging

/// What a session tells its front end. The terminal renders these as text, a progress bar and
/// sixel images; a page export or a server can render the same stream.
public enum SessionEvent {
    /// A line of normal output (listings, confirmations).
    case output(String)
    /// Something the user should know that did not stop the command (a model's leftover tensors).
    case warning(String)
    /// A command failed; the diagnostic carries FILE:LINE when it came from a script.
    case error(Diagnostic)
    /// Progress of image `index` (1-based) of `count` in this `gen`; `preview` says whether the
    /// engine's small latent preview (`progress.preview`) may be drawn.
    case progress(GenerationProgress, index: Int, count: Int, preview: PreviewMode)
    /// Progress of an `upscale` over its tiles.
    case upscaleProgress(UpscaleProgress)
    /// A transient one-line status (a download's bytes, rate and ETA; hashing), redrawn in place.
    case status(String)
    /// The current progress or status is over (clear the bar).
    case progressDone
    /// A new image was made (and maybe saved at once): show its summary and the picture.
    case image(SessionImage, preview: PreviewMode)
    /// `show N`: an earlier image, with its recipe.
    case shown(SessionImage, recipe: String, preview: PreviewMode)
    /// `save`: image `index` was written to `paths`.
    case saved(index: Int, paths: [String])
    /// A command line starts, as typed (or as line `location` of a script holds it); the events
    /// until its `commandDone` are its own. Nested `run` lines start and finish inside their `run`.
    case command(String, at: SourceLocation?)
    /// The command started last (and not yet done) finished after `seconds`; `failed` when it
    /// reported an error.
    case commandDone(seconds: Double, failed: Bool)
    /// A picture that is not one of the session's images (a grid's sheet, `history sheet`), with a line about it.
    case picture(RGBImage, caption: String, preview: PreviewMode)

    /// The event as plain text: what a front end without pictures or a progress bar prints, with
    /// `isDiagnostic` for what goes to standard error. Nil for events that are only transient.
    /// Control characters are escaped (`escapingControlCharacters`): the text echoes what the user
    /// typed and what files hold, which must not drive the terminal.
    public var text: (lines: [String], isDiagnostic: Bool)? {
        guard let raw = rawText else { return nil }
        return (raw.lines.map(\.escapingControlCharacters), raw.isDiagnostic)
    }

    private var rawText: (lines: [String], isDiagnostic: Bool)? {
        switch self {
        case .output(let line): return ([line], false)
        case .warning(let line): return ([line], true)
        case .error(let diagnostic): return ([diagnostic.description], true)
        case .progress, .upscaleProgress, .status, .progressDone, .command, .commandDone: return nil
        case .image(let image, _): return ([image.summary(withSavedPaths: true)], false)
        case .shown(let image, let recipe, _):
            return (["image \(image.index): " + image.description] + recipe.split(separator: "\n").map { "  " + $0 }, false)
        case .saved(let index, let paths): return (["image \(index): saved " + paths.joined(separator: " ")], false)
        case .picture(_, let caption, _): return ([caption], false)
        }
    }
}

extension SessionImage: CustomStringConvertible {
    /// One line for `history` and `show`: the settings that decide the picture, and where it was saved.
    public var description: String {
        let r = request.engine
        var text = "seed \(r.seed), \(r.width)x\(r.height), \(r.sampler), \(r.steps) step\(r.steps == 1 ? "" : "s"), cfg \(formatNumber(r.guidanceScale))"
        if request.style != "none" { text += ", style \(request.style)" }
        text += ", prompt \"\(r.prompt)\""
        if !r.negativePrompt.isEmpty { text += ", negative \"\(r.negativePrompt)\"" }
        if let upscale {
            text += ", upscaled x\(formatNumber(Float(upscale.factor))) from image \(upscale.source) by \(upscale.upscaler) to \(pixels.width)x\(pixels.height)"
        }
        if !savedPaths.isEmpty { text += ", saved " + savedPaths.joined(separator: " ") }
        return text
    }

    /// The line printed when the image is made.
    func summary(withSavedPaths: Bool) -> String {
        var line = "image \(index): seed \(request.engine.seed), \(pixels.width)x\(pixels.height), "
            + String(format: "%.2f s", seconds) + ", sha256 \(sha256.prefix(16))…"
        if let upscale { line += ", upscaled x\(formatNumber(Float(upscale.factor))) from image \(upscale.source) by \(upscale.upscaler)" }
        if withSavedPaths && !savedPaths.isEmpty { line += ", saved " + savedPaths.joined(separator: " ") }
        return line
    }
}

/// Where the session's events go: the terminal in the executable, a buffer in tests.
public protocol SessionIO: AnyObject {
    func emit(_ event: SessionEvent)
    /// What `preview auto` resolves to here, for the `set` listing ("sixel", "off: stdout is not a terminal").
    func previewStatus(_ mode: PreviewMode) -> String
    /// True once the user pressed Ctrl-C during the current long command.
    var isInterrupted: Bool { get }
    /// Forgets an earlier Ctrl-C; called as each long command starts.
    func clearInterrupt()
    /// Asks the user a yes/no question (a large grid); false where nobody can answer.
    func confirm(_ question: String) -> Bool
    /// The width output lines are read in (a terminal's), for text that wraps (help); nil: no width.
    var outputColumns: Int? { get }
}

extension SessionIO {
    public func confirm(_ question: String) -> Bool { false }
    public var outputColumns: Int? { nil }
    public func output(_ line: String) { emit(.output(line)) }
    public func warning(_ line: String) { emit(.warning(line)) }
    public func status(_ line: String) { emit(.status(line)) }
    public func progressDone() { emit(.progressDone) }
}

extension String {
    /// The text with control characters made visible, so that echoing it cannot drive a terminal
    /// (retitle the window, clear the screen, ring the bell, overwrite the line): ESC as `\e`, the
    /// other C0 characters and DEL as `\xHH`, the C1 controls (U+0080–U+009F, which some terminals
    /// read as ESC sequences: U+009B is CSI) as `\u{HH}`. Tabs and line feeds stay: they only move
    /// the cursor on, and multi-line output (`tokens`) uses them.
    public var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: Self.needsEscape) else { return self }
        var out = String.UnicodeScalarView()
        for scalar in unicodeScalars {
            guard Self.needsEscape(scalar) else {
                out.append(scalar)
                continue
            }
            let hex = String(scalar.value, radix: 16, uppercase: true)
            let escaped = scalar == "\u{1B}" ? "\\e" : scalar.value < 0x80 ? "\\x" + (hex.count == 1 ? "0" + hex : hex) : "\\u{\(hex)}"
            out.append(contentsOf: escaped.unicodeScalars)
        }
        return String(out)
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09, 0x0A: return false
        case 0x00..<0x20, 0x7F...0x9F: return true
        default: return false
        }
    }
}

/// 7.5 -> "7.5", 7 -> "7".
func formatNumber(_ value: Float) -> String {
    value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : String(value)
}
