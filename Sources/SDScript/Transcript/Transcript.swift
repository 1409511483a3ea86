import Crypto
import FileErrors
import Foundation
import Glibc
import Imaging

/// A `#=>` result line of a transcript.
///
/// The two forms, exactly (fields separated by one space, in this order):
///
///     #=> image 3 seed=1234 size=512x768 sha256=<64 lowercase hex digits>
///     #=> saved 3 generated_images/20261125-021500-1234-a-red-fox.png
///
/// `image N` is the image's number in the session (`show N`); `sha256` is the SHA-256 of its RGB8
/// bytes, row-major, no header. A `saved` line's path is the rest of the line, verbatim. `run --check`
/// compares the k-th `image` line after a command with the k-th image that command made; `saved`
/// lines are informational (a replay saves under new names).
public enum ResultRecord: Equatable, Sendable, CustomStringConvertible {
    case image(index: Int, seed: UInt64, width: Int, height: Int, sha256: String)
    case saved(index: Int, path: String)

    public static let marker = "#=>"

    public var description: String {
        switch self {
        case .image(let index, let seed, let width, let height, let sha256):
            return "\(Self.marker) image \(index) seed=\(seed) size=\(width)x\(height) sha256=\(sha256)"
        case .saved(let index, let path):
            return "\(Self.marker) saved \(index) \(path)"
        }
    }

    /// Parses a line written by `description`; nil if it is not one.
    public init?(line: String) {
        let text = line.trimmingWhitespace()
        guard text.hasPrefix(Self.marker) else { return nil }
        let body = String(text.dropFirst(Self.marker.count)).trimmingWhitespace()
        let command = CommandText(body)
        let rest = CommandText(command.argument)
        guard let index = Int(rest.name), index > 0 else { return nil }
        switch command.name {
        case "saved":
            guard !rest.argument.isEmpty else { return nil }
            self = .saved(index: index, path: rest.argument)
        case "image":
            var fields: [String: String] = [:]
            for word in rest.argument.words {
                guard let equals = word.firstIndex(of: "=") else { return nil }
                fields[String(word[..<equals])] = String(word[word.index(after: equals)...])
            }
            guard let seed = fields["seed"].flatMap({ UInt64($0) }),
                  let size = fields["size"].flatMap(parseSize),
                  let hash = fields["sha256"], hash.count == 64, hash.allSatisfy(\.isHexDigit)
            else { return nil }
            self = .image(index: index, seed: seed, width: size.width, height: size.height, sha256: hash.lowercased())
        default:
            return nil
        }
    }
}

/// `WxH` as two positive integers (range checks are the caller's).
func parseSize(_ text: String) -> (width: Int, height: Int)? {
    let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
    guard parts.count == 2, let width = Int(parts[0]), let height = Int(parts[1]) else { return nil }
    return (width, height)
}

/// The SHA-256 of an image's RGB bytes, as 64 lowercase hex digits.
public func pixelHash(_ image: RGBImage) -> String {
    SHA256.hash(data: image.pixels).map { String(format: "%02x", $0) }.joined()
}

/// Appends a session's transcript to a file, one line at a time, each written through at once so a
/// crash loses nothing already recorded.
///
/// Every line is also kept in memory: when a write fails (a full disk), the first failure is
/// returned to the caller to report, later lines are kept without trying the file again, and
/// `save(to:)` writes them all to a new file and records there from then on.
public final class TranscriptRecorder {
    /// The file being written: the one made at the start, or the last one `save(to:)` wrote.
    public private(set) var path: String
    private var handle: FileHandle
    /// Every line recorded in this session, written to the file or not.
    public private(set) var lines: [String] = []
    /// Why writing `path` failed, from the first failure until a `save(to:)`; nil while every
    /// line has been written.
    public private(set) var failure: String?

    /// Creates `directory` if needed and a new file in it named from `date` (`20261125-021500.sdscript`,
    /// with `-2`, `-3` … if taken).
    /// - Throws: `ScriptError.file` when the directory or file cannot be created.
    public init(directory: String, date: Date = Date()) throws {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        let stem = directory + "/" + formatter.string(from: date)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            var isFolder: ObjCBool = false
            let reason = FileManager.default.fileExists(atPath: directory, isDirectory: &isFolder) && !isFolder.boolValue
                ? "it is a file, not a folder" : FileErrorText.reason(error)
            throw ScriptError.file(command: "sdrepl", path: directory, reason: "cannot create the sessions directory (\(reason)); use --sessions DIR or --no-record")
        }
        var candidate = stem + ".sdscript"
        var counter = 2
        // O_EXCL: never append to another session's transcript.
        var descriptor = open(candidate, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        while descriptor < 0 && errno == EEXIST {
            candidate = "\(stem)-\(counter).sdscript"
            counter += 1
            descriptor = open(candidate, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        }
        guard descriptor >= 0 else {
            throw ScriptError.file(command: "sdrepl", path: candidate, reason: FileErrorText.reason(errno: errno)
                                   + "; use --sessions DIR or --no-record")
        }
        path = candidate
        handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
    }

    /// Records into a file that is open already (tests write to /dev/full).
    init(path: String, handle: FileHandle) {
        self.path = path
        self.handle = handle
    }

    /// A recorder whose file could not be made (`path` says where it was to be, `failure` why): it
    /// keeps the lines in memory, as after a failed write, so `transcript save PATH` can still write
    /// them and `quit` warns before they are lost.
    public static func inMemory(path: String, failure: String) -> TranscriptRecorder {
        let recorder = TranscriptRecorder(path: path, handle: FileHandle.nullDevice)
        recorder.failure = failure
        return recorder
    }

    /// Writes `line` and a newline (unbuffered: one write(2) per line), and keeps it. A line break
    /// inside `line` (a CR typed or pasted into a prompt, a classic-Mac line end) is written as a
    /// space: a transcript holds one command per line, and CLIP reads any run of blanks as one space.
    /// - Returns: why the file could not be written, when this line is the first that failed; nil
    ///   otherwise (later lines are only kept: the session goes on, and was told once).
    @discardableResult
    public func record(_ line: String) -> String? {
        let flat = String(line.map { $0.isNewline ? " " : $0 })
        lines.append(flat)
        guard failure == nil else { return nil }
        if let code = Self.write([flat], to: handle.fileDescriptor) {
            failure = FileErrorText.reason(errno: code)
            return failure
        }
        return nil
    }

    /// Writes every line recorded so far to a new file at `newPath` and records there from now on.
    /// - Returns: the number of lines written.
    /// - Throws: `ScriptError.file` when `newPath` exists (a transcript never overwrites a file) or
    ///   cannot be written; nothing is left behind then, and recording stays as it was.
    @discardableResult
    public func save(to newPath: String) throws -> Int {
        let descriptor = open(newPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let reason = errno == EEXIST ? "exists already; transcripts are never overwritten, give a new name"
                                         : FileErrorText.reason(errno: errno)
            throw ScriptError.file(command: "transcript save", path: newPath, reason: reason)
        }
        let file = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        if let code = Self.write(lines, to: descriptor) {
            unlink(newPath)
            throw ScriptError.file(command: "transcript save", path: newPath, reason: FileErrorText.reason(errno: code))
        }
        path = newPath
        handle = file
        failure = nil
        return lines.count
    }

    /// Writes `lines`, each with a newline, in one write(2) per line; returns errno on failure.
    private static func write(_ lines: [String], to descriptor: Int32) -> Int32? {
        for line in lines {
            let bytes = Array((line + "\n").utf8)
            var offset = 0
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
                if written < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += written
            }
        }
        return nil
    }
}
