import FileErrors
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The file formats sdrepl saves.
public enum ImageFormat: String, CaseIterable, Sendable {
    case png
    case jpeg

    /// The extension used for new files.
    public var fileExtension: String { self == .png ? "png" : "jpg" }

    /// The format a path's extension names (`.png`, `.jpg`, `.jpeg`, any case), or nil.
    public init?(path: String) {
        switch (path as NSString).pathExtension.lowercased() {
        case "png": self = .png
        case "jpg", "jpeg": self = .jpeg
        default: return nil
        }
    }
}

/// Saves images with their metadata, atomically and without ever replacing an existing file.
///
/// Each file is encoded in memory first, then written to a hidden temporary file in the target
/// directory, flushed with `fsync`, and given its final name with `link(2)`, which fails instead
/// of replacing an existing file (so two sdrepl processes saving at once cannot overwrite each
/// other); the temporary name is then removed and the directory synced. A crash leaves at most a
/// hidden `.NAME.tmp-…` file, never a partial image under a real name. A failure part-way
/// (disk full, no permission) removes the temporary file and any file this call already created,
/// and throws `ImagingError.writeFailed`: a save is all or nothing.
///
/// On file systems without hard links the final name is first reserved with `O_CREAT|O_EXCL`
/// and the temporary file renamed over the reservation.
public struct ImageWriter: Sendable {
    /// Where `save(_:metadata:)` puts files; created if missing. Default `generated_images`.
    public var directory: URL
    /// The formats `save(_:metadata:)` writes, each with the same name stem.
    public var formats: [ImageFormat]
    /// JPEG quality, 1...100.
    public var jpegQuality: Int
    /// The time zone of the timestamp in file names (the user's, by default).
    public var timeZone: TimeZone
    /// Test hook: when set, writing fails with ENOSPC once this many bytes of a file are written.
    var failAfterBytes: Int?

    public init(
        directory: URL = URL(fileURLWithPath: "generated_images"), formats: [ImageFormat] = [.png, .jpeg],
        jpegQuality: Int = JPEGFile.defaultQuality, timeZone: TimeZone = .current
    ) {
        self.directory = directory
        self.formats = formats
        self.jpegQuality = jpegQuality
        self.timeZone = timeZone
    }

    /// Encodes `image` in one format with all of `metadata`.
    public func encode(_ image: RGBImage, metadata: ImageMetadata, as format: ImageFormat) throws -> [UInt8] {
        switch format {
        case .png: return try PNGFile.encode(image, chunks: metadata.pngChunks)
        case .jpeg: return try JPEGFile.encode(image, quality: jpegQuality, segments: metadata.jpegSegments())
        }
    }

    /// Saves `image` into `directory` in every format of `formats`, named
    /// `YYYYMMDD-HHMMSS_sSEED_prompt-slug.EXT` from the metadata's timestamp, seed and typed
    /// prompt. When any of the names is taken, `-2`, `-3`, … is appended to the stem of all of
    /// them, so the PNG and JPEG of one image always share a name.
    /// - Returns: the files written, in the order of `formats`.
    /// - Throws: `ImagingError.cannotCreateDirectory`, `.writeFailed`, `.encodeFailed`,
    ///   `.metadataTooLarge`.
    @discardableResult
    public func save(_ image: RGBImage, metadata: ImageMetadata) throws -> [URL] {
        let encoded = try formats.map { ($0, try encode(image, metadata: metadata, as: $0)) }
        try makeDirectory(directory)
        let stem = Self.fileStem(
            timestamp: metadata.timestamp, seed: metadata.recipe.seed, prompt: metadata.typedPrompt, timeZone: timeZone)
        for attempt in 1... {
            let candidate = attempt == 1 ? stem : "\(stem)-\(attempt)"
            let targets = encoded.map { format, bytes in
                (directory.appendingPathComponent("\(candidate).\(format.fileExtension)"), bytes)
            }
            if targets.contains(where: { FileManager.default.fileExists(atPath: $0.0.path) }) { continue }
            do {
                return try writeAllNew(targets)
            } catch WriteOutcome.nameTaken {
                // Another process took a name between the check and the link: try the next stem.
            }
        }
        preconditionFailure("unreachable: the attempt loop only exits by returning or throwing")
    }

    /// Saves `image` in every format of `formats` as `stem` plus each format's extension
    /// (`out/fox` -> `out/fox.png`, `out/fox.jpg`), creating missing parent directories. All or
    /// nothing: when one of the names is taken, none is written.
    /// - Returns: the files written, in the order of `formats`.
    /// - Throws: `ImagingError.fileExists` naming the first file that exists, and the errors of
    ///   `save(_:metadata:)`.
    @discardableResult
    public func save(_ image: RGBImage, metadata: ImageMetadata, stem: URL) throws -> [URL] {
        let targets = try formats.map { format in
            (stem.appendingPathExtension(format.fileExtension), try encode(image, metadata: metadata, as: format))
        }
        if let taken = targets.first(where: { FileManager.default.fileExists(atPath: $0.0.path) }) {
            throw ImagingError.fileExists(path: taken.0.path)
        }
        try makeDirectory(stem.deletingLastPathComponent())
        do {
            return try writeAllNew(targets)
        } catch WriteOutcome.nameTaken(let url) {
            throw ImagingError.fileExists(path: url.path)
        }
    }

    /// Saves `image` to exactly `url`, in the format its extension names, creating missing
    /// parent directories.
    /// - Throws: `ImagingError.fileExists` if the file exists (files are never overwritten),
    ///   `.unsupportedFormat` for an unknown extension, and the errors of `save(_:metadata:)`.
    public func save(_ image: RGBImage, metadata: ImageMetadata, to url: URL) throws {
        guard let format = ImageFormat(path: url.path) else { throw ImagingError.unsupportedFormat(path: url.path) }
        if FileManager.default.fileExists(atPath: url.path) { throw ImagingError.fileExists(path: url.path) }
        let bytes = try encode(image, metadata: metadata, as: format)
        try makeDirectory(url.deletingLastPathComponent())
        do {
            try writeNew(bytes, to: url)
        } catch WriteOutcome.nameTaken {
            throw ImagingError.fileExists(path: url.path)
        }
    }

    /// Writes each of `targets` as a new file; on any failure removes the ones already written.
    /// - Throws: `WriteOutcome.nameTaken` naming a file that appeared meanwhile, `ImagingError.writeFailed`.
    private func writeAllNew(_ targets: [(URL, [UInt8])]) throws -> [URL] {
        var written: [URL] = []
        do {
            for (url, bytes) in targets {
                try writeNew(bytes, to: url)
                written.append(url)
            }
            return written
        } catch {
            written.forEach { unlink($0.path) }
            throw error
        }
    }

    // MARK: - Names

    /// `YYYYMMDD-HHMMSS_sSEED_slug`, e.g. `20261125-031522_s1234_a-red-fox-in-snow`
    /// (the seed part is left out when there is no seed).
    public static func fileStem(timestamp: Date, seed: UInt64?, prompt: String, timeZone: TimeZone = .current) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: timestamp)
        let time = String(
            format: "%04d%02d%02d-%02d%02d%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0, c.minute ?? 0,
            c.second ?? 0)
        let seedPart = seed.map { "_s\($0)" } ?? ""
        return "\(time)\(seedPart)_\(slug(prompt))"
    }

    /// A short file-name-safe form of a prompt: ASCII letters and digits, lowercased, accents
    /// removed (`café` → `cafe`), every other run of characters one `-`, at most `maxLength`
    /// characters cut at a word boundary where possible; `image` if nothing is left. Extra-network
    /// tags (`<lora:ink:0.8>`) are left out: they name files, not the picture.
    public static func slug(_ prompt: String, maxLength: Int = 40) -> String {
        var words: [String] = []
        var current = ""
        let untagged = prompt.replacingOccurrences(of: #"<\w+:[^>]+>"#, with: " ", options: .regularExpression)
        for scalar in untagged.decomposedStringWithCanonicalMapping.unicodeScalars {
            if scalar.isASCII, scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) {
                current.unicodeScalars.append(scalar)
            } else if scalar.properties.generalCategory == .nonspacingMark {
                continue  // the accent of a decomposed letter
            } else if !current.isEmpty {
                words.append(current.lowercased())
                current = ""
            }
        }
        if !current.isEmpty { words.append(current.lowercased()) }
        var slug = ""
        for word in words {
            let next = slug.isEmpty ? word : slug + "-" + word
            if next.count > maxLength {
                if slug.isEmpty { slug = String(word.prefix(maxLength)) }
                break
            }
            slug = next
        }
        return slug.isEmpty ? "image" : slug
    }

    // MARK: - Writing

    private enum WriteOutcome: Error {
        case nameTaken(URL)
    }

    private func makeDirectory(_ url: URL) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw ImagingError.cannotCreateDirectory(path: url.path, reason: "a file of that name exists")
            }
            return
        }
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw ImagingError.cannotCreateDirectory(path: url.path, reason: FileErrorText.reason(error))
        }
    }

    private func failure(_ path: String, _ code: Int32) -> ImagingError {
        .writeFailed(path: path, reason: FileErrorText.reason(errno: code), errno: code)
    }

    /// Writes `bytes` to a new file at `url` (temporary file, fsync, link). Throws
    /// `WriteOutcome.nameTaken` if `url` exists, `ImagingError.writeFailed` otherwise.
    private func writeNew(_ bytes: [UInt8], to url: URL) throws {
        let directory = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        // O_EXCL with a random suffix: never clobbers, and the mode follows the umask.
        var tempPath = ""
        var fd: Int32 = -1
        for _ in 0..<16 {
            tempPath = "\(directory)/.\(name).tmp-\(String(UInt32.random(in: .min ... .max), radix: 36))"
            fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else { throw failure(url.path, errno) }
        var linked = false
        defer {
            if fd >= 0 { close(fd) }
            unlink(tempPath)
            if linked { Self.syncDirectory(directory) }
        }
        try writeAll(bytes, to: fd, path: url.path)
        guard fsync(fd) == 0 else { throw failure(url.path, errno) }
        let closed = close(fd)
        fd = -1
        guard closed == 0 else { throw failure(url.path, errno) }

        if link(tempPath, url.path) == 0 {
            linked = true
            return
        }
        let linkError = errno
        if linkError == EEXIST { throw WriteOutcome.nameTaken(url) }
        guard [EPERM, EOPNOTSUPP, EXDEV, EMLINK, ENOSYS].contains(linkError) else { throw failure(url.path, linkError) }
        // No hard links here: reserve the name exclusively, then rename onto our own reservation.
        let reservation = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard reservation >= 0 else {
            if errno == EEXIST { throw WriteOutcome.nameTaken(url) }
            throw failure(url.path, errno)
        }
        close(reservation)
        guard rename(tempPath, url.path) == 0 else {
            let code = errno
            unlink(url.path)
            throw failure(url.path, code)
        }
        linked = true
    }

    private func writeAll(_ bytes: [UInt8], to fd: Int32, path: String) throws {
        try bytes.withUnsafeBufferPointer { buffer in
            var offset = 0
            while offset < buffer.count {
                var chunk = buffer.count - offset
                if let limit = failAfterBytes {
                    if offset >= limit { throw failure(path, ENOSPC) }
                    chunk = min(chunk, limit - offset)
                }
                let n = write(fd, buffer.baseAddress! + offset, chunk)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw failure(path, errno)
                }
                offset += n
            }
        }
    }

    /// Makes a new directory entry durable; best effort, as some file systems refuse fsync on directories.
    private static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}
