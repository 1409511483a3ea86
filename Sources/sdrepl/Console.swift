import FileErrors
import Foundation
import Glibc
import Synchronization

/// Standard output and error, written with write(2).
///
/// Foundation's `FileHandle.write(_:)` traps on any error: the terminal of a dropped SSH link (EIO),
/// the reader of `sdrepl | head` gone (EPIPE), stdout redirected to a full disk. Here such an error
/// ends the output instead: the session is asked to end as after SIGHUP (the command under way is
/// cancelled and recorded, and the process leaves), and nothing more is written to that stream.
enum Console {
    private static let lost = Atomic<Bool>(false)

    static func out(_ text: String) { write(Array(text.utf8), to: STDOUT_FILENO) }
    static func out(_ bytes: [UInt8]) { write(bytes, to: STDOUT_FILENO) }
    static func err(_ text: String) { write(Array(text.utf8), to: STDERR_FILENO) }

    private static func write(_ bytes: [UInt8], to descriptor: Int32) {
        guard !bytes.isEmpty, !(descriptor == STDOUT_FILENO && lost.load(ordering: .relaxed)) else { return }
        var done = 0
        while done < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + done, bytes.count - done) }
            if written > 0 {
                done += written
                continue
            }
            if written < 0, errno == EINTR || errno == EAGAIN { continue }
            let code = errno
            guard descriptor == STDOUT_FILENO, !lost.exchange(true, ordering: .relaxed) else { return }
            if code == ENOSPC || code == EDQUOT || code == EFBIG {
                err("sdrepl: standard output could not be written (\(FileErrorText.reason(errno: code))); the session ends here\n")
            }
            Interrupt.requestEnd(status: code == EPIPE ? 128 + SIGPIPE : 1)
            return
        }
    }
}
