import Foundation
import HubLayout

/// One Hugging Face hub cache folder (`HubCacheLayout` describes its layout) and the SD1.5 models in it.
public struct HubCache: Sendable {
    public let root: URL

    public init(root: URL) { self.root = root }

    /// `models--owner--name` for `owner/name`.
    public static func folderName(repo: String) -> String { HubCacheLayout.folderName(repo: repo) }

    /// The folder of `repo` in this cache.
    public func repoFolder(_ repo: String) -> URL { root.appendingPathComponent(Self.folderName(repo: repo)) }

    /// The SD1.5 models in `repo`'s snapshots: single files at a snapshot's top, and the snapshot itself
    /// when it is a complete diffusers folder. The snapshot `refs/main` points at comes first.
    public func models(repo: String) -> [FoundModel] {
        models(folder: repoFolder(repo), origin: .huggingFaceCache(repo: repo))
    }

    func models(folder: URL, origin: ModelOrigin) -> [FoundModel] {
        var out: [FoundModel] = []
        for snap in HubCacheLayout.snapshots(of: folder) {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: snap.path)) ?? []).sorted()
            // Prefer the smaller fp16 single file, as `model download` fetches it, and safetensors to
            // the `.ckpt` beside it (the SD1.5 repositories hold both).
            let rank = { (name: String) in (name.contains("fp16") ? 0 : 1, name.hasSuffix(".ckpt") ? 1 : 0, name) }
            for name in files.sorted(by: { rank($0) < rank($1) }) where name.hasSuffix(".safetensors") || name.hasSuffix(".ckpt") {
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

    /// When `url` is a symlink into a cache's `blobs/` folder whose name is a SHA-256, that hash.
    public static func blobSHA256(of url: URL) -> String? { HubCacheLayout.blobSHA256(of: url) }

    static func isSHA256(_ s: String) -> Bool { HubCacheLayout.isSHA256(s) }
}
