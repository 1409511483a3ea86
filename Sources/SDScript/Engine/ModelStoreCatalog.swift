import Diffusion
import FileErrors
import Foundation
import ModelStore

/// The session's models over ModelStore: discovery in `ModelDiscovery`'s order, `models` with layout, dtype,
/// size and short hash, and `model download` into the Hugging Face cache.
public struct ModelStoreCatalog: ModelCatalog {
    public var environment: [String: String]
    /// Where `models/` is looked for; nil: the current directory at each lookup.
    public var currentDirectory: String?
    public var hashes: ModelHashCache

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, currentDirectory: String? = nil) {
        self.environment = environment
        self.currentDirectory = currentDirectory
        hashes = ModelHashCache(environment: environment)
    }

    var discovery: ModelDiscovery {
        var home = FileManager.default.homeDirectoryForCurrentUser
        if let value = environment["HOME"], value.hasPrefix("/") { home = URL(fileURLWithPath: value) }
        return ModelDiscovery(environment: environment,
                              currentDirectory: URL(fileURLWithPath: currentDirectory ?? FileManager.default.currentDirectoryPath),
                              homeDirectory: home)
    }

    public func locate(explicit: String?) throws -> ModelLocation {
        let found = try discovery.resolve(explicit: explicit)
        return ModelLocation(path: found.url.path, source: found.origin.description)
    }

    public func listing(explicit: String?, note: (String) -> Void) -> [String] {
        var found: [FoundModel]
        do {
            found = try discovery.findAll(explicit: explicit)
        } catch {
            return [FileErrorText.reason(error)]
        }
        let listed = Set(found.map { $0.url.resolvingSymlinksInPath().path })
        found += discovery.otherCachedCheckpoints().filter { !listed.contains($0.url.resolvingSymlinksInPath().path) }
        return found.map { model in
            var hash = "?"
            if let sha = model.knownSHA256 {
                hash = FileHash.shortHash(sha)
            } else if let file = model.hashedFile, let short = try? hashes.shortHash(of: file, note: note) {
                hash = short
            }
            let size = ByteCountFormatter.string(fromByteCount: model.sizeBytes, countStyle: .file)
            return "\(model.url.path)  \(model.layout.rawValue)  \(Self.dtype(of: model))  \(size)  hash \(hash)  (\(model.origin))"
        }
    }

    public func shortHash(explicit: String?) -> String? {
        guard let model = try? discovery.resolve(explicit: explicit) else { return nil }
        if let sha = model.knownSHA256 { return FileHash.shortHash(sha) }
        return model.hashedFile.flatMap { hashes.cachedShortHash(of: $0) }
    }

    /// The dtype most of the UNet's tensors are stored in, read from the safetensors header or the
    /// pickle only (no tensor data); "?" when the file cannot be opened (or pickles are refused).
    static func dtype(of model: FoundModel) -> String {
        guard let file = model.hashedFile, let header = try? openTensorFile(file) else { return "?" }
        var counts: [String: Int] = [:]
        for tensor in header.tensorInfos { counts[tensor.dtype.rawValue, default: 0] += tensor.elementCount }
        return counts.max { $0.value < $1.value }?.key ?? "?"
    }

    public func download(arguments: [String], status: @escaping (String) -> Void,
                         isCancelled: @escaping () -> Bool) throws -> String {
        var (repo, file) = ModelDiscovery.defaultDownload
        switch arguments.count {
        case 0: break
        case 2: (repo, file) = (arguments[0], arguments[1])
        default:
            throw ScriptError.badArgument(command: "model download", argument: arguments.joined(separator: " "),
                                          reason: "expected nothing (SD1.5) or REPO FILE, got")
        }
        let downloader = HubDownloader(environment: environment, cacheRoot: discovery.downloadCacheRoot)
        status("downloading \(file) from \(repo) …")
        let url = try downloader.download(repo: repo, file: file, progress: { progress in
            status(Self.describe(progress, file: file))
        }, isCancelled: isCancelled)
        return url.path
    }

    /// `name  [#######.....] 1.2 GB / 2.1 GB  35.0 MB/s  ETA 25s`
    static func describe(_ progress: DownloadProgress, file: String) -> String {
        let width = 24
        let total = max(progress.totalBytes, 1)
        let filled = Int(min(Double(width), Double(progress.receivedBytes) * Double(width) / Double(total)))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let received = ByteCountFormatter.string(fromByteCount: progress.receivedBytes, countStyle: .file)
        let size = ByteCountFormatter.string(fromByteCount: progress.totalBytes, countStyle: .file)
        let rate = ByteCountFormatter.string(fromByteCount: Int64(progress.bytesPerSecond), countStyle: .file)
        let eta = progress.etaSeconds.map { seconds -> String in
            let whole = Int(seconds.rounded())
            return whole >= 60 ? "\(whole / 60)m\(String(format: "%02d", whole % 60))s" : "\(whole)s"
        } ?? "?"
        return "\(file) [\(bar)] \(received) / \(size)  \(rate)/s  ETA \(eta)"
    }
}
