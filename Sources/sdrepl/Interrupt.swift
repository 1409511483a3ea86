import Glibc
import Synchronization

/// Ctrl-C: a SIGINT handler that only sets a flag. A generation polls it through `isCancelled`; at the
/// prompt the line editor's reader turns it into a ^C key that clears the line.
enum Interrupt {
    private static let flag = Atomic<Bool>(false)
    private static let resized = Atomic<Bool>(false)
    /// The write end of a pipe the handler writes a byte to, so a reader blocked in poll(2) wakes even
    /// when the signal came between its check of the flag and its wait (the self-pipe trick).
    private static let wakeWriter = Atomic<Int32>(-1)
    /// The read end: poll it beside the input.
    nonisolated(unsafe) private(set) static var wakeReader: Int32 = -1

    /// Installs the handler, without SA_RESTART so a blocked read(2) returns EINTR and the line editor
    /// sees the key at once.
    static func install() {
        // Initialise the globals before a signal can touch them.
        _ = flag.load(ordering: .relaxed)
        _ = resized.load(ordering: .relaxed)
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) == 0 {
            for end in ends {
                _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
                _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            }
            wakeReader = ends[0]
            wakeWriter.store(ends[1], ordering: .relaxed)
        }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            Interrupt.flag.store(true, ordering: .relaxed)
            var byte: UInt8 = 3
            let writer = Interrupt.wakeWriter.load(ordering: .relaxed)
            if writer >= 0 { _ = write(writer, &byte, 1) }
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGINT, &action, nil)
        // The window size too: libedit is told at the next key (it is not given signals of its own).
        action.__sigaction_handler.sa_handler = { _ in Interrupt.resized.store(true, ordering: .relaxed) }
        sigaction(SIGWINCH, &action, nil)
    }

    /// Empties the wake-up pipe.
    static func drainWakeups() {
        guard wakeReader >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeReader, &buffer, buffer.count) > 0 {}
    }

    /// Reads and clears the window-resized flag.
    static func takeResize() -> Bool { resized.exchange(false, ordering: .relaxed) }

    static var isSet: Bool { flag.load(ordering: .relaxed) }

    static func clear() { flag.store(false, ordering: .relaxed) }

    /// Reads and clears the flag.
    static func take() -> Bool { flag.exchange(false, ordering: .relaxed) }
}
