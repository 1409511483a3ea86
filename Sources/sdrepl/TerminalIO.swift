import Foundation
import Glibc
import Diffusion
import Imaging
import SDScript

/// The session's output on the real terminal: lines on stdout, errors on stderr, a progress bar on a
/// stderr that is a terminal, and sixel images on a stdout that is one.
final class TerminalIO: SessionIO {
    /// Escape sequences may be written to stdout (it is a terminal and the mode allows it).
    let stdoutEscapes: Bool
    /// A redrawn progress bar may be written to stderr.
    let stderrEscapes: Bool
    /// Progress may be written as plain lines: stderr is a terminal that takes no escape sequences
    /// (TERM=dumb), where a bar cannot redraw itself but a long generation should still say it is alive.
    let plainProgress: Bool
    /// The work's elapsed seconds at the last plain progress line; nil before the first.
    private var lastPlainProgress: Double?
    /// Draws sixel bytes for an image, scaled to fit; nil where no image may be drawn (script mode).
    let sixelEncoder: SixelEncoder?
    private var capabilities: Terminal.Capabilities?
    private var warnedNoEncoder = false
    private var barShown = false

    /// - Parameter allowEscapes: false in script mode from standard input, where nothing but plain
    ///   text is written whatever the outputs are.
    init(allowEscapes: Bool, sixelEncoder: SixelEncoder?) {
        // A terminal that says it takes no escape sequences (TERM=dumb: Emacs' shell, some
        // consoles) gets plain lines: no queries, no bar drawn over itself, no images.
        let escapes = allowEscapes && !Self.isDumbTerminal
        stdoutEscapes = escapes && Terminal.isTerminal(STDOUT_FILENO)
        stderrEscapes = escapes && Terminal.isTerminal(STDERR_FILENO)
        plainProgress = allowEscapes && Self.isDumbTerminal && Terminal.isTerminal(STDERR_FILENO)
        self.sixelEncoder = sixelEncoder
    }

    static var isDumbTerminal: Bool { (ProcessInfo.processInfo.environment["TERM"] ?? "dumb") == "dumb" }

    /// Why images are not drawn when the output takes no escape sequences.
    private var noEscapesReason: String { Self.isDumbTerminal ? "TERM is dumb" : "stdout is not a terminal" }

    /// Renders one event: text lines on stdout or stderr, the progress bar and live preview, images.
    func emit(_ event: SessionEvent) {
        switch event {
        case .progress(let step, let index, let count, let preview):
            progress(step, index: index, count: count, mode: preview)
        case .upscaleProgress(let progress):
            upscaleProgress(progress)
        case .status(let line):
            status(line)
        case .progressDone:
            progressDone()
        case .image(let image, let preview):
            write(event)
            display(image.pixels, mode: preview)
        case .shown(let image, _, let preview):
            display(image.pixels, mode: preview)
            write(event)
        case .picture(let image, _, let preview):
            write(event)
            display(image, mode: preview)
        case .output, .warning, .error, .saved:
            write(event)
        case .command, .commandDone:
            break  // the terminal shows the line as it was typed already
        }
    }

    /// The event's plain text, on stderr for diagnostics.
    private func write(_ event: SessionEvent) {
        guard let text = event.text else { return }
        clearBar()
        let data = text.lines.map { $0 + "\n" }.joined()
        text.isDiagnostic ? Console.err(data) : Console.out(data)
    }

    func output(_ line: String) { write(.output(line)) }
    func diagnostic(_ line: String) { write(.warning(line)) }

    private func progress(_ progress: GenerationProgress, index: Int, count: Int, mode: PreviewMode) {
        if let preview = progress.preview,
           wantsLivePreview(step: progress.step, total: progress.total, mode: mode, decoded: progress.previewIsDecoded),
           let pixels = try? RGBImage(width: preview.width, height: preview.height, pixels: preview.rgb) {
            drawLivePreview(pixels)
            lastPreviewStep = progress.step
        }
        guard stderrEscapes || plainProgress, progress.total > 0 else { return }
        let perStep = progress.step > 0 ? progress.elapsed / Double(progress.step) : 0
        let head = count > 1 ? "image \(index)/\(count) " : ""
        // The whole command's ETA: this image's steps left and the images after it; unknown ("?")
        // until a step has been timed, rather than a 0s that reads as done.
        let stepsLeft = progress.total - progress.step + max(0, count - index) * progress.total
        let eta = progress.step > 0 ? perStep * Double(stepsLeft) : .nan
        let tail = " \(progress.step)/\(progress.total)  " + String(format: "%.2f s/step  ETA %@", perStep, formatDuration(eta))
        guard stderrEscapes else {
            // A line for the first timed step, then one every 10 s of work, and the last step's.
            if progress.step == 0 { lastPlainProgress = nil }
            let due = lastPlainProgress.map { progress.elapsed - $0 >= 10 } ?? true
            if progress.step > 0, due || progress.step == progress.total {
                Console.err(head + "step" + tail + "\n")
                lastPlainProgress = progress.elapsed
            }
            return
        }
        let bar = Self.bar(Double(progress.step) / Double(progress.total), besides: head.count + tail.count)
        Console.err("\r" + Self.fitted(head + bar + tail) + "\u{1B}[K")
        barShown = true
    }

    private func upscaleProgress(_ progress: UpscaleProgress) {
        guard stderrEscapes, progress.tiles > 0 else { return }
        let perTile = progress.done > 0 ? progress.elapsed / progress.done : 0
        let tail = " tile \(progress.tile)/\(progress.tiles)  " + String(format: "%.1f s/tile  ETA %@", perTile, formatDuration(progress.eta))
        let bar = Self.bar(progress.done / Double(progress.tiles), besides: "upscale ".count + tail.count)
        Console.err("\r" + Self.fitted("upscale " + bar + tail) + "\u{1B}[K")
        barShown = true
    }

    private func status(_ line: String) {
        guard stderrEscapes else { return }
        Console.err("\r" + Self.fitted(line.escapingControlCharacters) + "\u{1B}[K")
        barShown = true
    }

    /// The width of the terminal on stderr, when it tells one worth fitting to.
    private static var stderrColumns: Int? {
        Terminal.windowSize(STDERR_FILENO).map { Int($0.ws_col) }.flatMap { $0 > 10 ? $0 : nil }
    }

    /// `[####....]` for `fraction` done: 24 wide, narrower (down to 5) where the terminal's width
    /// less the `besides` characters around it leaves less.
    static func bar(_ fraction: Double, besides: Int) -> String {
        let width = stderrColumns.map { max(5, min(24, $0 - 1 - besides - 2)) } ?? 24
        let filled = max(0, min(width, Int(fraction * Double(width))))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }

    /// A progress line cut to the terminal's width less one column: a longer one wraps, and each
    /// `\r` update then starts a new row. The longest word (a file name) is shortened in its middle
    /// first, so the counts, speed and ETA after it stay in view.
    static func fitted(_ line: String) -> String {
        guard let columns = stderrColumns, line.count > columns - 1 else { return line }
        let excess = line.count - (columns - 1)
        var words = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        if let longest = words.indices.max(by: { words[$0].count < words[$1].count }), words[longest].count - excess - 1 >= 4 {
            let word = words[longest], keep = word.count - excess - 1
            words[longest] = String(word.prefix(keep - keep / 2)) + "…" + String(word.suffix(keep / 2))
            return words.joined(separator: " ")
        }
        return String(line.prefix(columns - 2)) + "…"
    }

    private func progressDone() {
        clearBar()
        if livePreviewRows > 0 {
            // The live preview has served: back to the top of its area and clear it, so the finished
            // image (or the next message) takes its place instead of leaving it in the scrollback.
            Console.out("\u{1B}8\u{1B}[J")
        }
        livePreviewRows = 0
        lastPreviewStep = 0
    }

    // MARK: - Live previews during a generation

    /// Rows reserved above the progress bar for the current image's live preview (0: none yet).
    private var livePreviewRows = 0
    private var lastPreviewStep = 0
    /// A live preview every this many steps, and at the last.
    private let livePreviewInterval = 5
    private let livePreviewSize = 128

    /// A TAESD preview (`decoded`) is drawn whenever it comes: the engine spaces those out itself.
    private func wantsLivePreview(step: Int, total: Int, mode: PreviewMode, decoded: Bool) -> Bool {
        guard stdoutEscapes, sixelEncoder != nil, mode != .off else { return false }
        if mode == .auto && !terminalCapabilities().sixel { return false }
        return decoded || step - lastPreviewStep >= livePreviewInterval || step == total
    }

    /// Draws the engine's small preview in a fixed area, redrawn in place at each update: the area is
    /// reserved once per image (newlines, then back up) so drawing never scrolls the saved position.
    private func drawLivePreview(_ pixels: RGBImage) {
        // The engine's preview has one pixel per latent (64x64 for 512x512): scaled up by a whole
        // factor, nearest neighbour, so it fills the area instead of a corner of it.
        let factor = max(1, livePreviewSize / max(pixels.width, pixels.height, 1))
        guard let sixelEncoder, let scaled = try? pixels.scaledUp(by: factor),
              let bytes = try? sixelEncoder(scaled, livePreviewSize, livePreviewSize) else { return }
        clearBar()
        var cellHeight = 20
        if let size = Terminal.windowSize(), size.ws_row > 0, size.ws_ypixel > 0 {
            cellHeight = max(1, Int(size.ws_ypixel) / Int(size.ws_row))
        }
        let rows = (livePreviewSize + cellHeight - 1) / cellHeight + 1
        var prefix = ""
        if livePreviewRows == 0 {
            prefix = String(repeating: "\n", count: rows) + "\u{1B}[\(rows)A\u{1B}7"
            livePreviewRows = rows
        } else {
            prefix = "\u{1B}8"
        }
        Console.out(prefix)
        Console.out(bytes)
        // Back to the top of the area, then below it, where the bar and the final image go.
        Console.out("\u{1B}8\u{1B}[\(livePreviewRows)B\r")
    }

    private func clearBar() {
        guard barShown else { return }
        Console.err("\r\u{1B}[K")
        barShown = false
    }

    @discardableResult
    func display(_ image: RGBImage, mode: PreviewMode) -> Bool {
        guard stdoutEscapes, mode != .off else { return false }
        if mode == .auto && !terminalCapabilities().sixel { return false }
        guard let sixelEncoder else {
            if !warnedNoEncoder {
                diagnostic("preview: no sixel encoder in this mode")
                warnedNoEncoder = true
            }
            return false
        }
        let (maxWidth, maxHeight) = previewBox()
        do {
            let bytes = try sixelEncoder(image, maxWidth, maxHeight)
            Console.out(bytes)
            Console.out("\n")
            return true
        } catch {
            diagnostic("preview: \(error)")
            return false
        }
    }

    /// The largest image that fits: the window's pixel size less two text lines, or 512x512 when the
    /// terminal does not say.
    private func previewBox() -> (Int, Int) {
        var width = 0, height = 0, rows = 0
        if let size = Terminal.windowSize() {
            width = Int(size.ws_xpixel)
            height = Int(size.ws_ypixel)
            rows = Int(size.ws_row)
        }
        if width == 0 || height == 0, let reported = terminalCapabilities().pixelWidth {
            width = reported
            height = terminalCapabilities().pixelHeight ?? reported
        }
        guard width > 0, height > 0 else { return (512, 512) }
        let lineHeight = rows > 0 ? height / rows : 20
        return (width, max(64, height - 2 * lineHeight))
    }

    /// The terminal's width on stdout; nil when stdout is not a terminal (a pipe keeps whole lines).
    var outputColumns: Int? {
        Terminal.windowSize(STDOUT_FILENO).map { Int($0.ws_col) }.flatMap { $0 >= 20 ? $0 : nil }
    }

    func previewStatus(_ mode: PreviewMode) -> String {
        switch mode {
        case .off: return "off"
        case .sixel: return stdoutEscapes ? "sixel" : "sixel (not drawn: \(noEscapesReason))"
        case .auto:
            guard stdoutEscapes else { return "auto (off: \(noEscapesReason))" }
            let found = terminalCapabilities()
            if found.sixel { return "auto (sixel: the terminal lists attribute 4)" }
            return found.answered ? "auto (off: the terminal does not list sixel)" : "auto (off: the terminal did not answer)"
        }
    }

    /// Asks the terminal now (interactive sessions do, before the first prompt).
    func prepareTerminal() {
        _ = terminalCapabilities()
    }

    /// Asks the terminal once, on first need.
    private func terminalCapabilities() -> Terminal.Capabilities {
        if let capabilities { return capabilities }
        let found = stdoutEscapes ? Terminal.query()
                                  : Terminal.Capabilities(sixel: false, pixelWidth: nil, pixelHeight: nil, answered: false)
        capabilities = found
        return found
    }

    var isInterrupted: Bool { Interrupt.isSet }

    func clearInterrupt() { Interrupt.clear() }

    /// A yes/no question on a terminal; no answer (a pipe, Ctrl-C, Ctrl-D) is no.
    func confirm(_ question: String) -> Bool {
        guard Terminal.isTerminal(STDIN_FILENO) else { return false }
        clearBar()
        // A Ctrl-C from before the question does not answer it.
        Interrupt.clear()
        Interrupt.drainWakeups()
        Console.out(question)
        guard case let .line(answer) = TerminalLines.next() else {
            // The terminal echoed ^C or nothing: end the question's line before the answer's message.
            Console.out("\n")
            return false
        }
        let word = answer.trimmingCharacters(in: .whitespaces).lowercased()
        return word == "y" || word == "yes"
    }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let total = Int(seconds.rounded())
    return total >= 60 ? "\(total / 60)m\(String(format: "%02d", total % 60))s" : "\(total)s"
}
