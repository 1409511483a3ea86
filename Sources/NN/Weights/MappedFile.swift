import Foundation
import FileErrors
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
    /// The file as mapped: its inode, and the size and modification time it had.
    private let identity: (device: UInt, inode: UInt, size: Int, modified: timespec)

    init(path: String) throws {
        self.path = path
        // Refuse FIFOs, devices and directories before opening: opening a FIFO would block, and
        // mmap of /dev/zero would pretend to be an endless file.
        var st = stat()
        guard stat(path, &st) == 0 else { throw Failure.cannotOpen(reason: FileErrorText.reason(errno: errno)) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw Failure.notARegularFile }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.cannotOpen(reason: FileErrorText.reason(errno: errno)) }
        defer { close(fd) }
        guard fstat(fd, &st) == 0 else { throw Failure.cannotOpen(reason: FileErrorText.reason(errno: errno)) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw Failure.notARegularFile }
        size = Int(st.st_size)
        identity = (UInt(st.st_dev), UInt(st.st_ino), size, st.st_mtim)
        if size == 0 {
            base = nil  // mmap refuses length 0; an empty file is reported by the caller
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw Failure.cannotOpen(reason: "mmap failed: " + FileErrorText.reason(errno: errno))
        }
        base = UnsafeRawPointer(p)
        MappedRegions.register(base: UInt(bitPattern: p), size: size, path: path)
    }

    /// Whether the file under `path` is still the inode that was mapped but was rewritten in place
    /// since (another size or modification time). Pages not yet read would then come from the new
    /// contents, or raise SIGBUS past a shortened end, so the mapping must not be read any more.
    /// A file replaced by a new one (a rename, as downloads do) or deleted leaves the mapped inode
    /// as it was: not a change.
    var changedSinceMapped: Bool {
        var st = stat()
        guard stat(path, &st) == 0, UInt(st.st_dev) == identity.device, UInt(st.st_ino) == identity.inode else { return false }
        return Int(st.st_size) != identity.size
            || st.st_mtim.tv_sec != identity.modified.tv_sec || st.st_mtim.tv_nsec != identity.modified.tv_nsec
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
        if let base {
            MappedRegions.unregister(base: UInt(bitPattern: base))
            munmap(UnsafeMutableRawPointer(mutating: base), size)
        }
    }
}

/// The files mapped now, for a SIGBUS handler to name the one whose pages vanished: a file truncated
/// while mapped raises SIGBUS at the first access past its new end, and no reader can prevent that.
///
/// A fixed table of plain words and C strings, so that `path(containing:)` only reads memory and is
/// safe inside a signal handler; registration takes a lock, the handler does not (it only ever runs
/// when the process is about to end). Files mapped past the 64th at once are not named.
public enum MappedRegions {
    private struct Slot {
        var base: UInt = 0
        var size: Int = 0
        var path: UnsafeMutablePointer<CChar>?
    }
    private static let capacity = 64
    nonisolated(unsafe) private static let slots: UnsafeMutablePointer<Slot> = {
        let slots = UnsafeMutablePointer<Slot>.allocate(capacity: capacity)
        slots.initialize(repeating: Slot(), count: capacity)
        return slots
    }()
    private static let lock = NSLock()

    static func register(base: UInt, size: Int, path: String) {
        lock.lock(); defer { lock.unlock() }
        for i in 0..<capacity where slots[i].base == 0 {
            // The path is written before the base that makes the slot live.
            slots[i].path = strdup(path)
            slots[i].size = size
            slots[i].base = base
            return
        }
    }

    static func unregister(base: UInt) {
        lock.lock(); defer { lock.unlock() }
        for i in 0..<capacity where slots[i].base == base {
            slots[i].base = 0
            free(slots[i].path)
            slots[i].path = nil
            return
        }
    }

    /// The path of the mapped file that holds `address`, as a C string; nil when none does.
    /// Async-signal-safe: no allocation, no lock.
    public static func path(containing address: UInt) -> UnsafePointer<CChar>? {
        for i in 0..<capacity {
            let slot = slots[i]
            if slot.base != 0 && address >= slot.base && address - slot.base < UInt(slot.size), let path = slot.path {
                return UnsafePointer(path)
            }
        }
        return nil
    }
}
