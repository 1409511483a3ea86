import FileErrors
import Foundation

/// How a model is laid out on disk.
public enum ModelLayout: String, Sendable, Codable {
    /// One file in the original LDM layout: safetensors (`v1-5-pruned-emaonly.safetensors`) or a
    /// PyTorch `.ckpt`.
    case singleFile = "single-file"
    /// A diffusers folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, …).
    case diffusersFolder = "diffusers"
}

/// Where a found model came from, in discovery order.
public enum ModelOrigin: Sendable, Equatable, CustomStringConvertible {
    case explicit            // `model PATH` or `--model PATH`
    case environment         // $SDREPL_MODEL
    case modelsDirectory     // ./models/
    case a1111Directory      // ./models/Stable-diffusion/, A1111's checkpoint folder
    case huggingFaceCache(repo: String)

    public var description: String {
        switch self {
        case .explicit: return "given path"
        case .environment: return "$SDREPL_MODEL"
        case .modelsDirectory: return "./models"
        case .a1111Directory: return "./models/Stable-diffusion"
        case let .huggingFaceCache(repo): return "HF cache (\(repo))"
        }
    }
}

/// A model found on disk. Cheap to make: nothing is hashed or mapped.
public struct FoundModel: Sendable, Equatable {
    /// The checkpoint file, or the diffusers folder.
    public let url: URL
    public let layout: ModelLayout
    public let origin: ModelOrigin
    /// Total bytes of the weight files.
    public let sizeBytes: Int64
    /// The SHA-256 when it is known without reading the file (an HF cache blob is named by it).
    public let knownSHA256: String?

    /// The file whose hash identifies the model: the single file, or the folder's UNet weights.
    public var hashedFile: URL? {
        switch layout {
        case .singleFile: return url
        case .diffusersFolder: return ModelDiscovery.weightFiles(inDiffusersFolder: url).first { $0.path.contains("/unet/") }
        }
    }
}

/// Finds SD1.5 checkpoints where users keep them, in this order:
/// 1. an explicit path (`model PATH`, `--model PATH`);
/// 2. `$SDREPL_MODEL`;
/// 3. `models/` in the current directory (any `*.safetensors` or `*.ckpt`, or a diffusers folder),
///    then A1111's `models/Stable-diffusion/` and its sub-folders (run from a webui folder, sdrepl
///    finds the checkpoints A1111 uses);
/// 4. the Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
///    `~/.cache/huggingface/hub`) for the SD1.5 repositories under both names they have had.
public struct ModelDiscovery: Sendable {
    /// The repositories that have held SD1.5, newest name first.
    public static let sd15Repositories = ["stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5"]
    /// The file `model download` fetches by default.
    public static let defaultDownload = (repo: "stable-diffusion-v1-5/stable-diffusion-v1-5", file: "v1-5-pruned-emaonly-fp16.safetensors")

    public var environment: [String: String]
    public var currentDirectory: URL
    public var homeDirectory: URL

    /// - Parameters default to this process's environment, working directory and home.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment,
                currentDirectory: URL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath),
                homeDirectory: URL = FileManager.default.homeDirectoryForCurrentUser) {
        self.environment = environment
        self.currentDirectory = currentDirectory
        self.homeDirectory = homeDirectory
    }

    /// The Hugging Face hub cache folders to search, in huggingface_hub's order of precedence, without duplicates.
    public var huggingFaceCacheRoots: [URL] {
        var roots: [URL] = []
        if let v = environment["HF_HUB_CACHE"], !v.isEmpty { roots.append(URL(fileURLWithPath: v)) }
        if let v = environment["HF_HOME"], !v.isEmpty { roots.append(URL(fileURLWithPath: v).appendingPathComponent("hub")) }
        let xdg = XDGDirectories(environment: environment, home: homeDirectory.path)
        roots.append(URL(fileURLWithPath: xdg.cache).appendingPathComponent("huggingface/hub"))
        // Also the default one, for a cache filled before XDG_CACHE_HOME was set.
        roots.append(homeDirectory.appendingPathComponent(".cache/huggingface/hub"))
        var seen = Set<String>()
        return roots.filter { seen.insert($0.standardizedFileURL.path).inserted }
    }

    /// The cache folder that downloads go to: the first of `huggingFaceCacheRoots`.
    public var downloadCacheRoot: URL { huggingFaceCacheRoots[0] }

    /// Every place discovery looks, as text for messages.
    public func searchedLocations(explicit: String? = nil) -> [String] {
        var out: [String] = []
        if let explicit { out.append("\(explicit) (given path)") }
        out.append("$SDREPL_MODEL" + (environment["SDREPL_MODEL"].map { " = \($0)" } ?? " (not set)"))
        out.append(currentDirectory.appendingPathComponent("models").path + "/ (*.safetensors, *.ckpt or a diffusers folder)")
        out.append(currentDirectory.appendingPathComponent(Self.a1111Folder).path + "/ (A1111's folder, sub-folders too)")
        for root in huggingFaceCacheRoots {
            for repo in Self.sd15Repositories {
                out.append(root.appendingPathComponent(HubCache.folderName(repo: repo)).path)
            }
        }
        return out
    }

    /// Every model found, in discovery order; the first is the one `gen` uses.
    /// - Throws: `ModelStoreError.notAModel` when an explicit path or `$SDREPL_MODEL` names nothing usable
    ///   (a user who names a path wants to hear that it is wrong, not get another model).
    public func findAll(explicit: String? = nil) throws -> [FoundModel] {
        var found: [FoundModel] = []
        if let explicit { found.append(try model(atUserPath: explicit, origin: .explicit)) }
        if let env = environment["SDREPL_MODEL"], !env.isEmpty {
            found.append(try model(atUserPath: env, origin: .environment))
        }
        found += modelsDirectory()
        for root in huggingFaceCacheRoots {
            for repo in Self.sd15Repositories {
                found += HubCache(root: root).models(repo: repo)
            }
        }
        var seen = Set<String>()
        return found.filter { seen.insert($0.url.resolvingSymlinksInPath().path).inserted }
    }

    /// SD checkpoints in the Hugging Face cache outside the SD1.5 repositories discovery uses by
    /// default (what `model download REPO FILE` fetched): a snapshot's top-level `.safetensors` whose
    /// header holds a UNet (`model.diffusion_model.*`), or a complete diffusers snapshot. Listed by
    /// `models`, never chosen without `model PATH`.
    public func otherCachedCheckpoints() -> [FoundModel] {
        let known = Set(Self.sd15Repositories.map(HubCache.folderName(repo:)))
        var found: [FoundModel] = []
        for root in huggingFaceCacheRoots {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
            for entry in entries.sorted() where entry.hasPrefix("models--") && !known.contains(entry) {
                let repo = entry.dropFirst("models--".count).replacingOccurrences(of: "--", with: "/")
                found += HubCache(root: root).models(repo: repo).filter { model in
                    model.layout == .diffusersFolder || Self.headerHasUNet(model.url)
                }
            }
        }
        return found
    }

    /// Whether a safetensors file's JSON header names an LDM UNet tensor (a full checkpoint, not a
    /// LoRA or a VAE). Reads the header only.
    static func headerHasUNet(_ url: URL) -> Bool {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return false }
        defer { try? handle.close() }
        guard let prefix = try? handle.read(upToCount: 8), prefix.count == 8 else { return false }
        let length = prefix.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard length > 0, length < 100_000_000, let header = try? handle.read(upToCount: Int(length)) else { return false }
        return header.range(of: Data("\"model.diffusion_model.".utf8)) != nil
    }

    /// The model to use: the first found.
    /// - Throws: `ModelStoreError.noModelFound` listing every place searched, or `.notAModel`.
    public func resolve(explicit: String? = nil) throws -> FoundModel {
        guard let first = try findAll(explicit: explicit).first else {
            throw ModelStoreError.noModelFound(searched: searchedLocations(explicit: explicit))
        }
        return first
    }

    /// Classifies a user-given path: a checkpoint file, a diffusers folder, an HF cache repository folder
    /// (`models--*`) or one of its snapshots.
    public func model(atUserPath path: String, origin: ModelOrigin) throws -> FoundModel {
        let expanded = path.expandingTilde
        let url = URL(fileURLWithPath: expanded, relativeTo: currentDirectory).standardizedFileURL
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw ModelStoreError.notAModel(path: path, reason: "no such file or directory")
        }
        if !isDir.boolValue {
            // A pickle is taken by its name here; the engine reads its first bytes and refuses it
            // if it is not PyTorch's zip format (or pickles are turned off).
            guard Self.singleFileExtensions.contains(url.pathExtension.lowercased()) else {
                throw ModelStoreError.notAModel(path: path, reason: "sdrepl reads .safetensors and .ckpt checkpoints or diffusers folders")
            }
            return FoundModel(url: url, layout: .singleFile, origin: origin, sizeBytes: Self.fileSize(url),
                              knownSHA256: HubCache.blobSHA256(of: url))
        }
        if Self.isDiffusersFolder(url) {
            return FoundModel(url: url, layout: .diffusersFolder, origin: origin,
                              sizeBytes: Self.weightFiles(inDiffusersFolder: url).map(Self.fileSize).reduce(0, +),
                              knownSHA256: nil)
        }
        if url.lastPathComponent.hasPrefix("models--"), let m = HubCache(root: url.deletingLastPathComponent()).models(folder: url, origin: origin).first {
            return m
        }
        throw ModelStoreError.notAModel(path: path, reason: Self.diffusersFolderProblem(url)
            ?? "the folder has no model_index.json (not a diffusers folder) and is not a Hugging Face cache repository")
    }

    /// What keeps a folder that looks like a diffusers folder (it has `model_index.json` or `unet/`)
    /// from being one: a malformed `model_index.json`, or the parts without weights. Nil for any
    /// other folder.
    static func diffusersFolderProblem(_ url: URL) -> String? {
        let fm = FileManager.default
        let index = url.appendingPathComponent("model_index.json")
        var isDir: ObjCBool = false
        let hasUNet = fm.fileExists(atPath: url.appendingPathComponent("unet").path, isDirectory: &isDir) && isDir.boolValue
        guard fm.fileExists(atPath: index.path) || hasUNet else { return nil }
        var problems: [String] = []
        if let data = fm.contents(atPath: index.path) {
            if (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] == nil {
                problems.append("its model_index.json is not a JSON object (diffusers writes one naming the pipeline's parts)")
            }
        } else {
            problems.append(fm.fileExists(atPath: index.path) ? "its model_index.json cannot be read" : "it has no model_index.json")
        }
        let found = Set(weightFiles(inDiffusersFolder: url).map { $0.deletingLastPathComponent().lastPathComponent })
        for part in ["unet", "vae", "text_encoder"] where !found.contains(part) {
            let dir = url.appendingPathComponent(part)
            let files = (try? fm.contentsOfDirectory(atPath: dir.path)) ?? []
            if !fm.fileExists(atPath: dir.path) {
                problems.append("it has no \(part)/ folder")
            } else {
                problems.append("\(part)/ has no .safetensors or .bin weights")
            }
        }
        guard !problems.isEmpty else { return nil }
        return "it is not a complete diffusers folder: " + problems.joined(separator: "; ")
            + "; fetch the missing parts, or the whole model again"
    }

    /// A1111's checkpoint folder, relative to the folder sdrepl runs in.
    static let a1111Folder = "models/Stable-diffusion"

    /// How deep A1111's folder is searched: A1111 lists its sub-folders' checkpoints too, and users
    /// sort them into folders of their own.
    static let a1111Depth = 3

    private func modelsDirectory() -> [FoundModel] {
        models(in: currentDirectory.appendingPathComponent("models"), origin: .modelsDirectory, depth: 1)
            + models(in: currentDirectory.appendingPathComponent(Self.a1111Folder), origin: .a1111Directory, depth: Self.a1111Depth)
    }

    /// The checkpoints and diffusers folders in `dir`, by name, then those of its sub-folders down
    /// to `depth` levels.
    private func models(in dir: URL, origin: ModelOrigin, depth: Int) -> [FoundModel] {
        guard depth > 0, let entries = try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil) else { return [] }
        var out: [FoundModel] = [], folders: [URL] = []
        for url in entries.sorted(by: { $0.lastPathComponent < $1.lastPathComponent }) {
            if ["safetensors", "ckpt"].contains(url.pathExtension.lowercased()) {
                out.append(FoundModel(url: url, layout: .singleFile, origin: origin,
                                      sizeBytes: Self.fileSize(url), knownSHA256: HubCache.blobSHA256(of: url)))
            } else if Self.isDiffusersFolder(url) {
                out.append(FoundModel(url: url, layout: .diffusersFolder, origin: origin,
                                      sizeBytes: Self.weightFiles(inDiffusersFolder: url).map(Self.fileSize).reduce(0, +),
                                      knownSHA256: nil))
            } else if origin == .a1111Directory, (try? url.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) == true {
                folders.append(url)
            }
        }
        return out + folders.flatMap { models(in: $0, origin: origin, depth: depth - 1) }
    }

    /// True when `url` has `model_index.json` and weights for the UNet, VAE and text encoder.
    static func isDiffusersFolder(_ url: URL) -> Bool {
        FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path)
            && ["unet", "vae", "text_encoder"].allSatisfy { part in
                weightFiles(inDiffusersFolder: url).contains { $0.deletingLastPathComponent().lastPathComponent == part }
            }
    }

    /// The weights files of a diffusers folder's unet, vae and text_encoder (`.safetensors`, else a
    /// `.bin` pickle): the plain file (`diffusion_pytorch_model.safetensors`) before a variant
    /// (`….fp16.safetensors`), as the engine and diffusers load them, so the listed dtype and hash are
    /// those of the weights actually used.
    static func weightFiles(inDiffusersFolder url: URL) -> [URL] {
        ["unet", "vae", "text_encoder"].flatMap { part -> [URL] in
            let dir = url.appendingPathComponent(part)
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            let isVariant = { (name: String) in name.split(separator: ".").count > 2 }
            // Safetensors before torch.save's `.bin` pickles, as the engine chooses.
            let rank = { (name: String) in (name.hasSuffix(".bin") ? 1 : 0, isVariant(name) ? 1 : 0, name) }
            return files.filter { $0.hasSuffix(".safetensors") || $0.hasSuffix(".bin") }
                .sorted { rank($0) < rank($1) }
                .prefix(1).map { dir.appendingPathComponent($0) }
        }
    }

    /// The extensions a single-file checkpoint given by path may have: safetensors, and the names
    /// PyTorch pickles go by.
    static let singleFileExtensions: Set<String> = ["safetensors", "ckpt", "pt", "pth", "bin"]

    static func fileSize(_ url: URL) -> Int64 {
        let attrs = try? FileManager.default.attributesOfItem(atPath: url.resolvingSymlinksInPath().path)
        return (attrs?[.size] as? NSNumber)?.int64Value ?? 0
    }
}
