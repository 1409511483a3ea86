import Crypto
import FileErrors
import Foundation

/// SHA-256 of files, streamed in 8 MiB blocks so multi-gigabyte checkpoints hash in constant memory.
public enum FileHash {
    /// The lowercase hex SHA-256 of the file at `url`.
    /// - Parameter progress: called with the bytes hashed so far, after each block.
    /// - Throws: `ModelStoreError.io` when the file cannot be read.
    public static func sha256(of url: URL, progress: ((Int64) -> Void)? = nil) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw ModelStoreError.io(path: url.path, message: "cannot open for reading")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        var done: Int64 = 0
        while true {
            let block: Data
            do { block = try handle.read(upToCount: 8 << 20) ?? Data() } catch {
                throw ModelStoreError.io(path: url.path, message: "read failed: \(FileErrorText.reason(error))")
            }
            if block.isEmpty { break }
            hasher.update(data: block)
            done += Int64(block.count)
            progress?(done)
        }
        return hex(hasher.finalize())
    }

    /// Lowercase hex of a digest.
    public static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }

    /// A1111's "Model hash": the first 10 hex digits of the file's SHA-256.
    public static func shortHash(_ sha256: String) -> String { String(sha256.prefix(10)) }
}
