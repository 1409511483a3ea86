import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only, private memory mapping of a whole file, unmapped when the last reference goes.
/// Shared by the safetensors and the PyTorch zip readers; each turns `Failure` into its own error.
final class MappedFile: @unchecked Sendable {
    enum Failure: Error {
        case cannotOpen(reason: String)
        case notARegularFile
    }

    let path: String
    let base: UnsafeRawPointer?
    let size: Int

    init(path: String) throws {
        self.path = path
        // Refuse FIFOs, devices and directories before opening: opening a FIFO would block, and
        // mmap of /dev/zero would pretend to be an endless file.
        var st = stat()
        guard stat(path, &st) == 0 else { throw Failure.cannotOpen(reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw Failure.notARegularFile }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.cannotOpen(reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard fstat(fd, &st) == 0 else { throw Failure.cannotOpen(reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw Failure.notARegularFile }
        size = Int(st.st_size)
        if size == 0 {
            base = nil  // mmap refuses length 0; an empty file is reported by the caller
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw Failure.cannotOpen(reason: "mmap failed: " + String(cString: strerror(errno)))
        }
        base = UnsafeRawPointer(p)
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Drops the mapped pages of `range` from this process's resident set (the kernel's page
    /// cache keeps them, so a later read faults them back in cheaply). A tensor that was converted
    /// to Float32 is not needed in mapped form any more; without this every page ever read counts
    /// towards the resident set, so low-memory mode would end up holding the whole fp16 file (1.7 GB
    /// of UNet weights after one step). The range is widened by 64 KB on each side because a page
    /// fault maps its already-cached neighbours too (the kernel's fault-around); dropping a page
    /// that is still needed only costs a minor fault, since the mapping is read-only.
    func releasePages(_ range: Range<Int>) {
        guard let base else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE))), margin = 64 << 10
        let start = max(0, range.lowerBound - margin) / page * page
        let end = min(size, (range.upperBound + margin + page - 1) / page * page)
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }
}
