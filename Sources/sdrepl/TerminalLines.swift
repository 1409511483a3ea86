import Glibc

/// Lines typed on the terminal when the line editor is not reading them: the answer to a yes/no
/// question, and every line when stdout is not a terminal (`sdrepl | tee log`).
///
/// Read with read(2) rather than Swift's `readLine`: that one retries forever once an interrupted
/// read has set stdin's error flag (Ctrl-C makes reads fail with EINTR on purpose, see `Interrupt`),
/// and glibc's end-of-file flag would answer every later question at once.
enum TerminalLines {
    enum Result: Equatable {
        case line(String)
        /// Ctrl-C while waiting: what was typed of the line is dropped.
        case interrupted
        /// Ctrl-D at the start of a line.
        case end
    }

    /// Bytes read past the last line returned (a paste of several lines).
    nonisolated(unsafe) private static var pending: [UInt8] = []

    static func next(from fd: Int32 = STDIN_FILENO) -> Result {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[..<newline]
                pending.removeSubrange(...newline)
                return .line(text(line))
            }
            // Wait on the input and on the interrupt's wake-up pipe, so a Ctrl-C that came before the
            // wait is seen now, not at the next key.
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            if Interrupt.wakeReader >= 0 { fds.append(pollfd(fd: Interrupt.wakeReader, events: Int16(POLLIN), revents: 0)) }
            _ = poll(&fds, nfds_t(fds.count), -1)
            if Interrupt.take() {
                Interrupt.drainWakeups()
                pending.removeAll()
                return .interrupted
            }
            guard fds[0].revents != 0 else {
                Interrupt.drainWakeups()  // a wake-up left from an earlier Ctrl-C, or another signal
                continue
            }
            let count = read(fd, &buffer, buffer.count)
            if count > 0 {
                pending += buffer[..<count]
            } else if count < 0 && errno == EINTR {
                // Another signal (a window resize) leaves the read going.
                guard Interrupt.take() else { continue }
                Interrupt.drainWakeups()
                pending.removeAll()
                return .interrupted
            } else if pending.isEmpty {
                return .end
            } else {
                // Ctrl-D after some text ends that text as a line, as a shell's read does.
                defer { pending.removeAll() }
                return .line(text(pending[...]))
            }
        }
    }

    /// The bytes read past the last line returned, given up to another reader: after a yes/no
    /// answer, the lines pasted with it go to the line editor rather than to the next question.
    static func takePending() -> [UInt8] {
        defer { pending.removeAll() }
        return pending
    }

    private static func text(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.last == UInt8(ascii: "\r") ? bytes.dropLast() : bytes, as: UTF8.self)
    }
}
