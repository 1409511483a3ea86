import Foundation

/// The Hugging Face hub cache layout, shared with huggingface_hub and diffusers, in one place for
/// every module that reads it (model discovery and downloads, the engine's checkpoint opener, the
/// recipe's model name):
///
///     <root>/models--<owner>--<name>/
///         blobs/<sha256 or git sha1>         the bytes, named by their hash
///         snapshots/<commit>/<file>          relative symlinks into blobs/
///         refs/<revision>                    the commit a branch pointed at
public enum HubCacheLayout {
    /// `models--owner--name` for `owner/name`.
    public static func folderName(repo: String) -> String {
        "models--" + repo.replacingOccurrences(of: "/", with: "--")
    }

    /// Where an entry keeps the bytes named `hash`.
    public static func blob(_ hash: String, in entry: URL) -> URL {
        entry.appendingPathComponent("blobs").appendingPathComponent(hash)
    }

    /// Where `file` of snapshot `commit` is linked.
    public static func snapshotFile(_ file: String, commit: String, in entry: URL) -> URL {
        entry.appendingPathComponent("snapshots").appendingPathComponent(commit).appendingPathComponent(file)
    }

    /// The file that names the commit `revision` pointed at.
    public static func ref(_ revision: String, in entry: URL) -> URL {
        entry.appendingPathComponent("refs").appendingPathComponent(revision)
    }

    /// Whether `url` is a cache entry (a folder with `snapshots/`).
    public static func isEntry(_ url: URL) -> Bool {
        isDirectory(url.appendingPathComponent("snapshots"))
    }

    /// The commit `refs/main` names, if the file is there.
    public static func mainRevision(of entry: URL) -> String? {
        (try? String(contentsOf: ref("main", in: entry), encoding: .utf8))
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// The entry's snapshot folders, sorted, the one `refs/main` names first.
    public static func snapshots(of entry: URL) -> [URL] {
        let folder = entry.appendingPathComponent("snapshots")
        var names = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [])
            .filter { isDirectory(folder.appendingPathComponent($0)) }.sorted()
        if let main = mainRevision(of: entry), let i = names.firstIndex(of: main) {
            names.insert(names.remove(at: i), at: 0)
        }
        return names.map { folder.appendingPathComponent($0) }
    }

    /// Why an entry's snapshot cannot be chosen.
    public enum SnapshotProblem: Error, Equatable, CustomStringConvertible {
        case missingRevision(String)
        case noSnapshot
        case ambiguous([String])

        public var description: String {
            switch self {
            case .missingRevision(let commit): return "refs/main names '\(commit)', which is not in snapshots/"
            case .noSnapshot: return "snapshots/ is empty"
            case .ambiguous(let names): return "there is no refs/main and several snapshots (\(names.joined(separator: ", ")))"
            }
        }
    }

    /// The snapshot a load uses: the one `refs/main` names, else the only one.
    /// - Throws: `SnapshotProblem`.
    public static func snapshot(of entry: URL) throws -> URL {
        let folder = entry.appendingPathComponent("snapshots")
        if let commit = mainRevision(of: entry) {
            let snapshot = folder.appendingPathComponent(commit)
            guard !commit.isEmpty, !commit.contains("/"), isDirectory(snapshot) else { throw SnapshotProblem.missingRevision(commit) }
            return snapshot
        }
        let all = snapshots(of: entry)
        guard all.count == 1 else {
            throw all.isEmpty ? SnapshotProblem.noSnapshot : SnapshotProblem.ambiguous(all.map(\.lastPathComponent))
        }
        return all[0]
    }

    /// The repository's name (`stable-diffusion-v1-5`) for a path inside `…/models--owner--name/snapshots/<commit>`.
    public static func repositoryName(containing url: URL) -> String? {
        let parts = url.pathComponents
        guard let index = parts.lastIndex(of: "snapshots"), index > 0, parts[index - 1].hasPrefix("models--") else { return nil }
        return parts[index - 1].components(separatedBy: "--").last
    }

    /// When `url` is a symlink into a cache's `blobs/` folder whose name is a SHA-256, that hash.
    public static func blobSHA256(of url: URL) -> String? {
        guard let dest = try? FileManager.default.destinationOfSymbolicLink(atPath: url.path) else { return nil }
        let name = (dest as NSString).lastPathComponent
        return isSHA256(name) && dest.contains("blobs") ? name : nil
    }

    /// 64 lowercase hex digits.
    public static func isSHA256(_ s: String) -> Bool {
        s.count == 64 && s.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    private static func isDirectory(_ url: URL) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}
