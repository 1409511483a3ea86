import Foundation

/// A session as a document: each command as it was typed (or as its script holds it), in order, with
/// what it showed. Built from the session's events by `SessionPageRecorder`, never from terminal
/// text; `PageHTML` and `PageMarkdown` render it.
public struct SessionPage: Sendable {
    /// One command and what it showed.
    public struct Entry: Sendable {
        public var line: String
        /// FILE:LINE when the line came from a script; nil when typed.
        public var location: SourceLocation?
        /// How long it took; nil while it runs.
        public var seconds: Double?
        public var failed = false
        /// How many `run` commands it is inside.
        public var depth: Int
        public var items: [Item] = []
    }

    /// What a command showed, in order.
    public enum Item: Sendable {
        case output(String)
        case warning(String)
        case error(String)
        /// A new image, with the files it was saved to as it was made (autosave).
        case image(SessionImage)
        /// `show N`: image N again.
        case shown(index: Int)
        case saved(index: Int, paths: [String])
    }

    /// What was shown before the first command (a styles file's problem at start).
    public var preamble: [Item] = []
    public var entries: [Entry] = []

    /// What a page draws: a run of consecutive output lines as one block, any other item alone.
    enum Block {
        case output([String])
        case item(Item)
    }

    /// `items` with consecutive output lines grouped.
    static func blocks(_ items: [Item]) -> [Block] {
        var blocks: [Block] = []
        for item in items {
            if case .output(let line) = item {
                if case .output(let lines)? = blocks.last {
                    blocks[blocks.count - 1] = .output(lines + [line])
                } else {
                    blocks.append(.output([line]))
                }
            } else {
                blocks.append(.item(item))
            }
        }
        return blocks
    }

    /// The images made, in order.
    public var images: [SessionImage] {
        (preamble + entries.flatMap(\.items)).compactMap { if case .image(let image) = $0 { return image } else { return nil } }
    }
}

/// Collects a session's events into a `SessionPage`.
public final class SessionPageRecorder {
    public private(set) var page = SessionPage()
    /// Positions in `page.entries` of the commands started and not yet done, innermost last.
    private var running: [Int] = []

    public init() {}

    public func record(_ event: SessionEvent) {
        switch event {
        case .command(let line, let location):
            running.append(page.entries.count)
            page.entries.append(SessionPage.Entry(line: line, location: location, depth: running.count - 1))
        case .commandDone(let seconds, let failed):
            guard let position = running.popLast() else { return }
            page.entries[position].seconds = seconds
            page.entries[position].failed = failed
        case .output(let line): add(.output(line))
        case .warning(let line): add(.warning(line))
        case .error(let diagnostic): add(.error(diagnostic.description))
        case .image(let image, _): add(.image(image))
        case .shown(let image, _, _): add(.shown(index: image.index))
        case .saved(let index, let paths): add(.saved(index: index, paths: paths))
        // A grid's sheet or the history's thumbnails: its line (the page shows every cell already).
        case .picture(_, let caption, _): add(.output(caption))
        case .progress, .upscaleProgress, .status, .progressDone: break
        }
    }

    /// The page so far without the command running now (`export` leaves itself out; the `run`
    /// around it, and what that run did so far, stay).
    public var pageBeforeCurrentCommand: SessionPage {
        var copy = page
        if let current = running.last { copy.entries.removeSubrange(current...) }
        return copy
    }

    private func add(_ item: SessionPage.Item) {
        if let position = running.last {
            page.entries[position].items.append(item)
        } else {
            page.preamble.append(item)
        }
    }
}

/// Passes every event to the front end and to the page recorder, so that whatever the terminal
/// shows, the page can show too.
final class SessionEventTee: SessionIO {
    let frontEnd: SessionIO
    let recorder: SessionPageRecorder

    init(frontEnd: SessionIO, recorder: SessionPageRecorder) {
        self.frontEnd = frontEnd
        self.recorder = recorder
    }

    func emit(_ event: SessionEvent) {
        recorder.record(event)
        frontEnd.emit(event)
    }

    func previewStatus(_ mode: PreviewMode) -> String { frontEnd.previewStatus(mode) }
    var isInterrupted: Bool { frontEnd.isInterrupted }
    func clearInterrupt() { frontEnd.clearInterrupt() }
    func confirm(_ question: String) -> Bool { frontEnd.confirm(question) }
    var outputColumns: Int? { frontEnd.outputColumns }
}
