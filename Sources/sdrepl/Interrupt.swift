import Glibc
import Synchronization

/// Ctrl-C: a SIGINT handler that only sets a flag. A generation polls it through `isCancelled`; at the
/// prompt the line editor's reader turns it into a ^C key that clears the line.
enum Interrupt {
    private static let flag = Atomic<Bool>(false)

    /// Installs the handler, without SA_RESTART so a blocked read(2) returns EINTR and the line editor
    /// sees the key at once.
    static func install() {
        _ = flag.load(ordering: .relaxed)  // initialise the global before a signal can touch it
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in Interrupt.flag.store(true, ordering: .relaxed) }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGINT, &action, nil)
    }

    static var isSet: Bool { flag.load(ordering: .relaxed) }

    static func clear() { flag.store(false, ordering: .relaxed) }

    /// Reads and clears the flag.
    static func take() -> Bool { flag.exchange(false, ordering: .relaxed) }
}
