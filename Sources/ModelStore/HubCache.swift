import Foundation

/// The Hugging Face hub cache layout, shared with huggingface_hub and diffusers:
///
///     <root>/models--<owner>--<name>/
///         blobs/<sha256 or git sha1>         the bytes, named by their hash
///         snapshots/<commit>/<file>          relative symlinks into blobs/
///         refs/<revision>                    the commit a branch pointed at
public struct HubCache: Sendable {
    public let root: URL

    public init(root: URL) { self.root = root }

    /// `models--owner--name` for `owner/name`.
    public static func folderName(repo: String) -> String {
        "models--" + repo.replacingOccurrences(of: "/", with: "--")
    }

    /// The folder of `repo` in this cache.
    public func repoFolder(_ repo: String) -> URL { root.appendingPathComponent(Self.folderName(repo: repo)) }

    /// The SD1.5 models in `repo`'s snapshots: single files at a snapshot's top, and the snapshot itself
    /// when it is a complete diffusers folder. The snapshot `refs/main` points at comes first.
    public func models(repo: String) -> [FoundModel] {
        models(folder: repoFolder(repo), origin: .huggingFaceCache(repo: repo))
    }

    func models(folder: URL, origin: ModelOrigin) -> [FoundModel] {
        let snapshots = folder.appendingPathComponent("snapshots")
        guard var revisions = try? FileManager.default.contentsOfDirectory(atPath: snapshots.path) else { return [] }
        revisions.sort()
        if let main = try? String(contentsOf: folder.appendingPathComponent("refs/main"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), let i = revisions.firstIndex(of: main) {
            revisions.insert(revisions.remove(at: i), at: 0)
        }
        var out: [FoundModel] = []
        for rev in revisions {
            let snap = snapshots.appendingPathComponent(rev)
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: snap.path)) ?? []).sorted()
            // Prefer the smaller fp16 single file, as `model download` fetches it.
            for name in files.sorted(by: { ($0.contains("fp16") ? 0 : 1, $0) < ($1.contains("fp16") ? 0 : 1, $1) })
            where name.hasSuffix(".safetensors") {
                let url = snap.appendingPathComponent(name)
                guard FileManager.default.fileExists(atPath: url.path) else { continue }  // dangling link
                out.append(FoundModel(url: url, layout: .singleFile, origin: origin,
                                      sizeBytes: ModelDiscovery.fileSize(url), knownSHA256: Self.blobSHA256(of: url)))
            }
            if ModelDiscovery.isDiffusersFolder(snap) {
                out.append(FoundModel(url: snap, layout: .diffusersFolder, origin: origin,
                                      sizeBytes: ModelDiscovery.weightFiles(inDiffusersFolder: snap).map(ModelDiscovery.fileSize).reduce(0, +),
                                      knownSHA256: nil))
            }
        }
        return out
    }

    /// When `url` is a symlink into an HF cache `blobs/` folder whose name is a SHA-256, that hash.
    public static func blobSHA256(of url: URL) -> String? {
        guard let dest = try? FileManager.default.destinationOfSymbolicLink(atPath: url.path) else { return nil }
        let name = (dest as NSString).lastPathComponent
        return isSHA256(name) && dest.contains("blobs") ? name : nil
    }

    static func isSHA256(_ s: String) -> Bool {
        s.count == 64 && s.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }
}
