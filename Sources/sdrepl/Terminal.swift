import CEditline
import Foundation
import Glibc

/// What the terminal can do, found by asking it. Nothing here writes to a terminal that is not one.
enum Terminal {
    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// The answers to one round of queries.
    struct Capabilities: Equatable {
        /// The DA1 reply listed attribute 4 (sixel graphics).
        var sixel: Bool
        /// The text area in pixels, when the terminal reported it.
        var pixelWidth: Int?
        var pixelHeight: Int?
        /// The terminal answered DA1 at all.
        var answered: Bool
    }

    /// How long the terminal has to answer: a second locally, three over SSH, where the round trip
    /// of a slow link can pass a second and a reply that comes after the wait would be read as the
    /// user's first command. A terminal that answers ends the wait at once either way.
    static var defaultQueryTimeout: Double {
        let environment = ProcessInfo.processInfo.environment
        return environment["SSH_TTY"] != nil || environment["SSH_CONNECTION"] != nil ? 3.0 : 1.0
    }

    /// Asks the controlling terminal for its pixel size (`ESC [ 14 t`) and its attributes (DA1,
    /// `ESC [ c`), with the terminal in raw mode for at most `timeout` seconds, restored on every path.
    /// Terminals answer in order, so the DA1 reply ends the exchange; one that does not answer (or does
    /// not exist) is given up on after `timeout`.
    static func query(timeout: Double = defaultQueryTimeout) -> Capabilities {
        var result = Capabilities(sixel: false, pixelWidth: nil, pixelHeight: nil, answered: false)
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY)
        guard fd >= 0 else { return result }
        defer { close(fd) }
        var saved = termios()
        guard tcgetattr(fd, &saved) == 0 else { return result }
        var raw = saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        guard tcsetattr(fd, TCSANOW, &raw) == 0 else { return result }
        defer { tcsetattr(fd, TCSANOW, &saved) }

        let question = "\u{1B}[14t\u{1B}[c"
        _ = question.withCString { write(fd, $0, strlen($0)) }
        var reply: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let wait = Int32(max(1, deadline.timeIntervalSinceNow * 1000))
            guard poll(&poller, 1, wait) > 0 else { break }
            var buffer = [UInt8](repeating: 0, count: 256)
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            reply += buffer[0..<count]
            if parseDA1(reply) != nil { break }
        }
        if let attributes = parseDA1(reply) {
            result.answered = true
            result.sixel = attributes.contains(4)
        }
        if let size = parsePixelSize(reply) {
            result.pixelWidth = size.width
            result.pixelHeight = size.height
        }
        Typeahead.pending += withoutReplies(reply)
        return result
    }

    /// `bytes` less the query replies: what the user typed meanwhile.
    static func withoutReplies(_ bytes: [UInt8]) -> [UInt8] {
        var text = String(decoding: bytes, as: UTF8.self)
        for pattern in ["\u{1B}\\[\\?[0-9;]*c", "\u{1B}\\[4;[0-9;]*t"] {
            text = text.replacingOccurrences(of: pattern, with: "", options: .regularExpression)
        }
        return Array(text.utf8)
    }

    /// The attributes of a DA1 reply `ESC [ ? 62 ; 4 ; 22 c` anywhere in `bytes`.
    static func parseDA1(_ bytes: [UInt8]) -> [Int]? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let start = text.range(of: "\u{1B}[?") else { return nil }
        let rest = text[start.upperBound...]
        guard let end = rest.firstIndex(of: "c") else { return nil }
        return rest[..<end].split(separator: ";").compactMap { Int($0) }
    }

    /// The text area size of a `ESC [ 4 ; HEIGHT ; WIDTH t` reply.
    static func parsePixelSize(_ bytes: [UInt8]) -> (width: Int, height: Int)? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let start = text.range(of: "\u{1B}[4;") else { return nil }
        let rest = text[start.upperBound...]
        guard let end = rest.firstIndex(of: "t") else { return nil }
        let numbers = rest[..<end].split(separator: ";").compactMap { Int($0) }
        guard numbers.count == 2, numbers[0] > 0, numbers[1] > 0 else { return nil }
        return (numbers[1], numbers[0])
    }

    /// The window of `fd` in cells and, when the terminal fills them in, pixels.
    static func windowSize(_ fd: Int32 = STDOUT_FILENO) -> winsize? {
        var size = winsize()
        guard sdrepl_window_size(fd, &size) == 0 else { return nil }
        return size
    }
}

/// Keys the user typed while a terminal query was reading: the line editor reads them first.
enum Typeahead {
    nonisolated(unsafe) static var pending: [UInt8] = []
}
