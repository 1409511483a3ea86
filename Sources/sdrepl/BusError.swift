import Glibc
import NN
import Synchronization

/// SIGBUS: the one way a weights file can stop sdrepl. Weights are read from the files' mappings as
/// they are used, and a file truncated in place while a generation reads it (a copy over it, an
/// editor saving it) faults past its new end. Between generations the session notices a rewritten
/// model, VAE, TAESD or upscaler file and reads it again; during one, this handler says which file
/// it was and stops, instead of a bare "Bus error". The transcript is written line by line, so
/// nothing recorded is lost.
enum BusError {
    /// The message's two fixed parts, made before any signal can come: the handler may only
    /// write(2) and _exit(2).
    nonisolated(unsafe) private static var before: UnsafeMutablePointer<CChar>?
    nonisolated(unsafe) private static var after: UnsafeMutablePointer<CChar>?
    nonisolated(unsafe) private static var unknown: UnsafeMutablePointer<CChar>?
    /// Set by the first thread in the handler: the engine's workers read weights side by side, so
    /// several fault at once, and one message is enough.
    private static let reported = Atomic<Bool>(false)

    static func install() {
        // Everything the handler touches exists before it can run (a lazy global's first use
        // would allocate inside the handler).
        _ = reported.load(ordering: .relaxed)
        _ = MappedRegions.path(containing: 0)
        before = strdup("\nsdrepl: stopped: ")
        after = strdup(" was changed on disk while sdrepl was reading it (truncated or rewritten in place). "
                       + "The session's transcript holds everything before this command; start sdrepl again "
                       + "to load the file as it is now.\n")
        unknown = strdup("\nsdrepl: stopped by a bus error (SIGBUS) outside the files it reads; please report it.\n")
        var action = sigaction()
        action.__sigaction_handler.sa_sigaction = { _, info, _ in
            let address = UInt(bitPattern: info?.pointee._sifields._sigfault.si_addr)
            if BusError.reported.exchange(true, ordering: .relaxed) {
                // Another thread is writing the message and ending the process.
                while true { pause() }
            }
            if let path = MappedRegions.path(containing: address) {
                BusError.write(BusError.before)
                BusError.write(path)
                BusError.write(BusError.after)
                _exit(1)
            }
            BusError.write(BusError.unknown)
            // Not a file of ours: the default action, so that a core dump shows where.
            signal(SIGBUS, SIG_DFL)
            raise(SIGBUS)
        }
        sigemptyset(&action.sa_mask)
        // Not SA_RESETHAND: a second worker faulting while the first writes must wait in here,
        // not take the default action.
        action.sa_flags = Int32(SA_SIGINFO)
        sigaction(SIGBUS, &action, nil)
    }

    /// Async-signal-safe: strlen and write(2).
    private static func write(_ text: UnsafePointer<CChar>?) {
        guard let text else { return }
        _ = Glibc.write(STDERR_FILENO, text, strlen(text))
    }
}
