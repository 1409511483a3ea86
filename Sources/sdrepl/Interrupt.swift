import Glibc
import Synchronization

/// Ctrl-C: a SIGINT handler that only sets a flag. A generation polls it through `isCancelled`; at the
/// prompt the line editor's reader turns it into a ^C key that clears the line.
///
/// SIGHUP (an SSH link dropping), SIGTERM and SIGQUIT (Ctrl-\) take the same path and also ask the
/// session to end: the command under way stops as after Ctrl-C and is recorded with the images it
/// finished, then the process leaves with 128 + the signal's number. Killed outright instead, the
/// transcript would miss images already saved.
enum Interrupt {
    private static let flag = Atomic<Bool>(false)
    private static let resized = Atomic<Bool>(false)
    private static let continued = Atomic<Bool>(false)
    /// The exit status an ending signal (or lost output) asks for; 0: none.
    private static let ending = Atomic<Int32>(0)
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
        _ = continued.load(ordering: .relaxed)
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
        action.__sigaction_handler.sa_handler = { signal in
            if signal != SIGINT { _ = Interrupt.ending.compareExchange(expected: 0, desired: 128 + signal, ordering: .relaxed) }
            Interrupt.flag.store(true, ordering: .relaxed)
            var byte: UInt8 = 3
            let writer = Interrupt.wakeWriter.load(ordering: .relaxed)
            if writer >= 0 { _ = write(writer, &byte, 1) }
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        // SIGQUIT too replaces the Swift runtime's handler, which printed a crash report.
        for signal in [SIGINT, SIGHUP, SIGTERM, SIGQUIT] { sigaction(signal, &action, nil) }
        // A reader gone is an error of the write (EPIPE), which `Console` handles, not a kill.
        signal(SIGPIPE, SIG_IGN)
        // The window size too: libedit is told at the next key (it is not given signals of its own).
        action.__sigaction_handler.sa_handler = { _ in Interrupt.resized.store(true, ordering: .relaxed) }
        sigaction(SIGWINCH, &action, nil)
        // `fg` after Ctrl-Z: the line editor sets its terminal mode again and redraws (`takeContinue`).
        action.__sigaction_handler.sa_handler = { _ in
            Interrupt.continued.store(true, ordering: .relaxed)
            var byte: UInt8 = 0
            let writer = Interrupt.wakeWriter.load(ordering: .relaxed)
            if writer >= 0 { _ = write(writer, &byte, 1) }
        }
        sigaction(SIGCONT, &action, nil)
    }

    /// Reads and clears the resumed-after-a-stop flag.
    static func takeContinue() -> Bool { continued.exchange(false, ordering: .relaxed) }

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

    /// Asks the session to end as an ending signal does, with this exit status.
    static func requestEnd(status: Int32) {
        _ = ending.compareExchange(expected: 0, desired: status, ordering: .relaxed)
        flag.store(true, ordering: .relaxed)
    }

    /// The exit status an ending signal or lost output asked for, or nil.
    static var endingStatus: Int32? {
        let status = ending.load(ordering: .relaxed)
        return status == 0 ? nil : status
    }

    /// Reads and clears the flag.
    static func take() -> Bool { flag.exchange(false, ordering: .relaxed) }
}
