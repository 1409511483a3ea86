import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One short phrase for what went wrong with a file or folder, for messages that name the path
/// and say what to do themselves: "is a folder, not a file", "the disk is full".
///
/// Foundation's own texts are not fit for that: on Linux reading a folder gives "The operation
/// could not be completed. (NSCocoaErrorDomain error 256.)", a missing file "The file doesn’t
/// exist." (with its full stop, which a caller's sentence then doubles). The kernel's reason
/// (the POSIX error Foundation keeps as its underlying error) is the most precise, so it is used
/// first, then Foundation's code; an error of sdrepl's own keeps its description.
public enum FileErrorText {
    /// The phrase for `error`: lowercase, without a full stop.
    public static func reason(_ error: Error) -> String {
        if let code = posixCode(error) { return reason(errno: code) }
        let ns = error as NSError
        switch ns.domain {
        case NSCocoaErrorDomain:
            // Foundation decides "not UTF-8" itself; there is no kernel error under it.
            if [CocoaError.fileReadCorruptFile, .fileReadInapplicableStringEncoding, .fileReadUnknownStringEncoding,
                .fileWriteInapplicableStringEncoding].map(\.rawValue).contains(ns.code) {
                return "not UTF-8 text"
            }
            if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? Error, let code = posixCode(underlying) {
                return reason(errno: code)
            }
            return cocoaReason(ns.code)
        default:
            return "\(error)"
        }
    }

    /// "not a regular file (a device, pipe or socket)" when `path` is one of those, else nil (a
    /// regular file, a folder, or nothing there). Foundation reports "permission denied" for a
    /// device, and reading `/dev/zero` or a pipe whole would never end.
    public static func specialFileReason(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let kind = info.st_mode & S_IFMT
        return kind == S_IFREG || kind == S_IFDIR ? nil : "not a regular file (a device, pipe or socket)"
    }

    /// Why files cannot be written into the folder `path` (which is made when it is missing), or nil
    /// when they can: the nearest part of the path that exists must be a folder this process may
    /// write in. What only writing tells (a full disk) is not known here.
    public static func unwritableFolderReason(_ path: String) -> String? {
        var folder = path.isEmpty ? "." : path
        while folder.count > 1 && folder.hasSuffix("/") { folder.removeLast() }
        var info = stat()
        while stat(folder, &info) != 0 {
            guard errno == ENOENT || errno == ENOTDIR, folder != "/", folder != "." else { return "\(folder): \(reason(errno: errno))" }
            let slash = folder.lastIndex(of: "/")
            folder = slash.map { $0 == folder.startIndex ? "/" : String(folder[..<$0]) } ?? "."
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { return "\(folder) is a file, not a folder" }
        guard access(folder, W_OK) == 0 else { return "cannot write in \(folder) (\(reason(errno: errno)))" }
        return nil
    }

    /// The phrase for a POSIX error number (`errno`).
    public static func reason(errno code: Int32) -> String {
        switch code {
        case ENOENT: return "no such file or folder"
        case EISDIR: return "is a folder, not a file"
        case ENOTDIR: return "a part of the path is a file, not a folder"
        case EACCES, EPERM: return "permission denied"
        case EROFS: return "read-only file system"
        case ENOSPC: return "the disk is full"
        case EDQUOT: return "the disk quota is used up"
        case EFBIG: return "the file is larger than this system allows"
        case EEXIST: return "exists already"
        case ENAMETOOLONG: return "the name is too long"
        case ELOOP: return "too many levels of symbolic links"
        case ENOTEMPTY: return "the folder is not empty"
        case EMFILE, ENFILE: return "too many open files"
        case EIO: return "input/output error"
        default:
            // strerror's text, as a phrase: "Stale file handle" -> "stale file handle" (not "RPC …").
            var text = String(cString: strerror(code))
            if let first = text.first, let second = text.dropFirst().first, second.isLowercase {
                text = first.lowercased() + text.dropFirst()
            }
            return text.hasSuffix(".") ? String(text.dropLast()) : text
        }
    }

    /// The POSIX error number of a kernel error (Foundation keeps one as `NSUnderlyingErrorKey`).
    private static func posixCode(_ error: Error) -> Int32? {
        if let posix = error as? POSIXError { return posix.code.rawValue }
        let ns = error as NSError
        return ns.domain == NSPOSIXErrorDomain ? Int32(ns.code) : nil
    }

    private static func cocoaReason(_ code: Int) -> String {
        switch CocoaError.Code(rawValue: code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or folder"
        case .fileReadNoPermission, .fileWriteNoPermission: return "permission denied"
        case .fileWriteVolumeReadOnly: return "read-only file system"
        case .fileWriteOutOfSpace: return "the disk is full"
        case .fileWriteFileExists: return "exists already"
        case .fileReadInvalidFileName, .fileWriteInvalidFileName: return "not a valid file name"
        case .fileReadTooLarge: return "too large to read"
        case .fileLocking: return "the file is locked"
        case .fileReadUnsupportedScheme, .fileWriteUnsupportedScheme: return "not a local file"
        default: return (512..<640).contains(code) || code == 642 ? "could not be written" : "could not be read"
        }
    }
}

extension String {
    /// The path with a leading `~` (alone or before `/`) made the home folder as the shell makes it,
    /// from `$HOME`; `~user` as Foundation does. Foundation's `expandingTildeInPath` reads the
    /// password database alone, so `HOME=/elsewhere sdrepl` saved into the wrong home.
    public var expandingTilde: String {
        guard self == "~" || hasPrefix("~/") else { return NSString(string: self).expandingTildeInPath }
        guard let home = ProcessInfo.processInfo.environment["HOME"], home.hasPrefix("/") else {
            return NSString(string: self).expandingTildeInPath
        }
        let rest = dropFirst()
        return (home.hasSuffix("/") && rest.hasPrefix("/") ? String(home.dropLast()) : home) + rest
    }
}
