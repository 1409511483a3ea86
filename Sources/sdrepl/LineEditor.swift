import CEditline
import Foundation
import Glibc
import SDScript

/// libedit, set up for sdrepl: emacs keys, history kept in a file, tab completion from the session,
/// and Ctrl-C clearing the line.
final class LineEditor {
    enum Input: Equatable {
        case line(String)
        /// Ctrl-C: the line typed so far was dropped.
        case interrupted
        /// Ctrl-D on an empty line.
        case endOfInput
    }

    private let editLine: OpaquePointer
    private let history: OpaquePointer
    private let historyPath: String?
    fileprivate let complete: (String) -> Completion
    fileprivate var interrupted = false

    /// The editor whose callbacks libedit calls (C callbacks cannot capture context; there is one).
    fileprivate nonisolated(unsafe) static var current: LineEditor?
    private static let prompt: UnsafeMutablePointer<CChar> = strdup("sd> ")

    /// - Parameters:
    ///   - historyPath: the history file, read now and rewritten after each line; nil keeps none.
    ///   - complete: the completions for the text left of the cursor.
    init?(historyPath: String?, complete: @escaping (String) -> Completion) {
        guard let editLine = el_init("sdrepl", stdin, stdout, stderr), let history = history_init() else { return nil }
        self.editLine = editLine
        self.history = history
        self.historyPath = historyPath
        self.complete = complete
        LineEditor.current = self

        sdrepl_history_setsize(history, 1000)
        sdrepl_history_setunique(history, 1)
        if let historyPath { sdrepl_history_load(history, historyPath) }
        sdrepl_el_set_history(editLine, history)
        sdrepl_el_set_editor(editLine, "emacs")
        sdrepl_el_set_prompt(editLine) { _ in LineEditor.prompt }
        sdrepl_el_set_getcfn(editLine, readCharacter)
        sdrepl_el_addfn(editLine, "sdrepl-complete", "complete a command, setting, value or path", completeKey)
        sdrepl_el_bind(editLine, "^I", "sdrepl-complete")
        sdrepl_el_addfn(editLine, "sdrepl-interrupt", "drop the line", interruptKey)
        sdrepl_el_bind(editLine, "^C", "sdrepl-interrupt")
        // Read ~/.editrc, as other libedit programs do, for users' own bindings.
        el_source(editLine, nil)
    }

    deinit {
        el_end(editLine)
        history_end(history)
    }

    /// Reads one line with the prompt.
    func read() -> Input {
        interrupted = false
        // What was typed or pasted past a yes/no answer is read as the next lines, in order.
        Typeahead.pending = TerminalLines.takePending() + Typeahead.pending
        if !Typeahead.pending.isEmpty {
            el_push(editLine, String(decoding: Typeahead.pending, as: UTF8.self))
            Typeahead.pending = []
        }
        var count: Int32 = 0
        guard let text = el_gets(editLine, &count), count > 0 else {
            if interrupted { return .interrupted }
            return .endOfInput
        }
        if interrupted {
            return .interrupted
        }
        var line = String(cString: text)
        if line.hasSuffix("\n") { line.removeLast() }
        return .line(line)
    }

    /// Adds a line to the history and rewrites the history file.
    func remember(_ line: String) {
        guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { return }
        sdrepl_history_enter(history, line)
        if let historyPath { sdrepl_history_save(history, historyPath) }
    }
}

/// libedit's reader: bytes from stdin decoded as UTF-8, with a SIGINT that interrupted read(2)
/// delivered as the ^C key.
private func readCharacter(_ editLine: OpaquePointer?, _ character: UnsafeMutablePointer<wchar_t>?) -> Int32 {
    guard let character else { return -1 }
    var bytes: [UInt8] = []
    var needed = 1
    while bytes.count < needed {
        // A Ctrl-C that came at any time since the last key: checked before waiting, and the handler's
        // byte on the wake-up pipe ends a wait it interrupted too late to make read(2) fail.
        if bytes.isEmpty && Interrupt.take() {
            Interrupt.drainWakeups()
            character.pointee = 3
            return 1
        }
        if Interrupt.takeContinue(), let editLine { sdrepl_el_resume(editLine) }
        var waits = [pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0),
                     pollfd(fd: Interrupt.wakeReader, events: Int16(POLLIN), revents: 0)]
        if poll(&waits, Interrupt.wakeReader >= 0 ? 2 : 1, -1) < 0 {
            if errno == EINTR {
                if Interrupt.takeResize(), let editLine { el_resize(editLine) }
                continue
            }
            return -1
        }
        if waits[1].revents != 0 {
            Interrupt.drainWakeups()
            if waits[0].revents == 0 { continue }
        }
        guard waits[0].revents != 0 else { continue }
        var byte: UInt8 = 0
        let count = read(STDIN_FILENO, &byte, 1)
        if count == 0 { return 0 }
        if count < 0 {
            if errno == EINTR || errno == EAGAIN { continue }
            return -1
        }
        if bytes.isEmpty {
            switch byte {
            case 0xC0...0xDF: needed = 2
            case 0xE0...0xEF: needed = 3
            case 0xF0...0xF7: needed = 4
            default: needed = 1
            }
        }
        bytes.append(byte)
    }
    let scalar = String(decoding: bytes, as: UTF8.self).unicodeScalars.first?.value ?? 0xFFFD
    character.pointee = wchar_t(bitPattern: scalar)
    return 1
}

/// Tab: inserts the completion, or lists the candidates when they share nothing more.
private func completeKey(_ editLine: OpaquePointer?, _ key: Int32) -> UInt8 {
    guard let editLine, let editor = LineEditor.current, let info = el_line(editLine) else { return UInt8(CC_ERROR) }
    let length = info.pointee.cursor - info.pointee.buffer
    let prefix = info.pointee.buffer.withMemoryRebound(to: UInt8.self, capacity: length) {
        String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
    }
    let completion = editor.complete(prefix)
    guard !completion.candidates.isEmpty else { return UInt8(CC_REFRESH_BEEP) }
    let insertion = completion.insertion
    if !insertion.isEmpty {
        el_insertstr(editLine, insertion)
        return UInt8(CC_REFRESH)
    }
    let names = completion.displayCandidates.map(\.escapingControlCharacters)
    let width = (names.map(\.count).max() ?? 0) + 2
    let columns = max(1, 80 / width)
    var text = "\n"
    for (number, name) in names.enumerated() {
        text += name.padding(toLength: width, withPad: " ", startingAt: 0)
        if number % columns == columns - 1 || number == names.count - 1 { text += "\n" }
    }
    Console.out(text)
    return UInt8(CC_REDISPLAY)
}

/// Ctrl-C at the prompt: end the line here and drop it.
private func interruptKey(_ editLine: OpaquePointer?, _ key: Int32) -> UInt8 {
    LineEditor.current?.interrupted = true
    Console.out("^C")
    return UInt8(CC_NEWLINE)
}
