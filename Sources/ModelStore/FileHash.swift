import Crypto
import FileErrors
import Foundation

/// SHA-256 of files, streamed in 8 MiB blocks so multi-gigabyte checkpoints hash in constant memory.
public enum FileHash {
    /// The lowercase hex SHA-256 of the file at `url`, or of its bytes from `offset` on.
    /// - Parameter progress: called with the bytes hashed so far, after each block.
    /// - Throws: `ModelStoreError.io` when the file cannot be read.
    public static func sha256(of url: URL, from offset: UInt64 = 0, progress: ((Int64) -> Void)? = nil) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw ModelStoreError.io(path: url.path, message: "cannot open for reading")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        var done: Int64 = 0
        while true {
            let block: Data
            do {
                if done == 0, offset > 0 { try handle.seek(toOffset: offset) }
                block = try handle.read(upToCount: 8 << 20) ?? Data()
            } catch {
                throw ModelStoreError.io(path: url.path, message: "read failed: \(FileErrorText.reason(error))")
            }
            if block.isEmpty { break }
            hasher.update(data: block)
            done += Int64(block.count)
            progress?(done)
        }
        return hex(hasher.finalize())
    }

    /// The hash A1111 writes for a LoRA in `Lora hashes` (its first 12 hex digits are shown): the
    /// file's `sshs_model_hash` metadata when it has one, else for a `.safetensors` file the
    /// "addnet" hash, the SHA-256 of the bytes after the header (kohya's sd-scripts, so the same
    /// weights with other metadata hash alike), else the whole file's SHA-256.
    /// - Throws: `ModelStoreError.io` when the file cannot be read.
    public static func loraHash(of url: URL) throws -> String {
        guard url.pathExtension.lowercased() == "safetensors" else { return try sha256(of: url) }
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw ModelStoreError.io(path: url.path, message: "cannot open for reading")
        }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: 0)
        let prefix = [UInt8]((try? handle.read(upToCount: 8)) ?? Data())
        let headerLength = prefix.count == 8 ? prefix.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) } : UInt64.max
        // Not a readable safetensors layout: the whole file, as for any other.
        guard headerLength <= size - min(size, 8) else { return try sha256(of: url) }
        let header = (try? handle.read(upToCount: Int(headerLength))) ?? Data()
        if let json = (try? JSONSerialization.jsonObject(with: header)) as? [String: Any],
           let metadata = json["__metadata__"] as? [String: Any], let hash = metadata["sshs_model_hash"] as? String,
           hash.count >= 12, hash.allSatisfy(\.isHexDigit) {
            // Only a hex digest is taken: the text goes into every image's recipe.
            return hash.lowercased()
        }
        return try sha256(of: url, from: 8 + headerLength)
    }

    /// Lowercase hex of a digest.
    public static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }

    /// A1111's "Model hash": the first 10 hex digits of the file's SHA-256.
    public static func shortHash(_ sha256: String) -> String { String(sha256.prefix(10)) }
}
