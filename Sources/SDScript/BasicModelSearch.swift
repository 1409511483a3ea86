import Foundation

/// Model discovery in the order of issue 9, checking only that files exist.
///
/// The ModelStore module replaces this with full discovery (layouts, dtype, hashes) and downloads; this
/// one is enough to tell a user with no model exactly where sdrepl looked.
public struct BasicModelSearch: ModelCatalog {
    /// The Hugging Face repositories SD1.5 has lived under.
    public static let repositories = ["runwayml/stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5"]

    var environment: [String: String]
    var currentDirectory: String
    var home: String

    public init(environment: [String: String] = ProcessInfo.processInfo.environment,
                currentDirectory: String = FileManager.default.currentDirectoryPath,
                home: String = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()) {
        self.environment = environment
        self.currentDirectory = currentDirectory
        self.home = home
    }

    public var advice: [String] {
        [
            "run 'model download' to fetch v1-5-pruned-emaonly-fp16.safetensors (2 GB) into the Hugging Face cache",
            "or put a .safetensors checkpoint in ./models, or point 'model PATH', --model PATH or $SDREPL_MODEL at one",
        ]
    }

    /// The Hugging Face cache roots, in order.
    var hubCaches: [(label: String, path: String)] {
        var roots: [(String, String)] = []
        if let cache = environment["HF_HUB_CACHE"], !cache.isEmpty { roots.append(("$HF_HUB_CACHE", cache)) }
        if let hfHome = environment["HF_HOME"], !hfHome.isEmpty { roots.append(("$HF_HOME/hub", hfHome + "/hub")) }
        roots.append(("~/.cache/huggingface/hub", home + "/.cache/huggingface/hub"))
        return roots
    }

    public func locate(explicit: String?) -> ModelLookup {
        var searched: [String] = []
        if let explicit {
            if let found = model(at: absolute(explicit)) { return .found(ModelLocation(path: found, source: "model PATH")) }
            searched.append("model PATH / --model: \(explicit) (not a .safetensors file or diffusers folder)")
        } else {
            searched.append("model PATH / --model: not given")
        }
        if let path = environment["SDREPL_MODEL"], !path.isEmpty {
            if let found = model(at: absolute(path)) { return .found(ModelLocation(path: found, source: "$SDREPL_MODEL")) }
            searched.append("$SDREPL_MODEL: \(path) (not a .safetensors file or diffusers folder)")
        } else {
            searched.append("$SDREPL_MODEL: not set")
        }
        let models = currentDirectory + "/models"
        if let found = firstModel(in: models) { return .found(ModelLocation(path: found, source: "./models")) }
        searched.append("\(models): no *.safetensors file or diffusers folder")
        for root in hubCaches {
            for repository in Self.repositories {
                let folder = root.path + "/models--" + repository.replacingOccurrences(of: "/", with: "--")
                if let found = firstModel(inSnapshots: folder + "/snapshots") {
                    return .found(ModelLocation(path: found, source: "Hugging Face cache"))
                }
            }
            searched.append("\(root.path) (\(root.label)): no snapshot of \(Self.repositories.joined(separator: " or "))")
        }
        return .notFound(searched: searched)
    }

    public func listing() -> [String] {
        switch locate(explicit: nil) {
        case .found(let location): return ["\(location.path)  (\(location.source))"]
        case .notFound: return []
        }
    }

    public func download(arguments: [String], report: (String) -> Void) throws -> String {
        throw ScriptError.unavailable(command: "model", reason: "downloading is not in this build yet (the model store is not wired in)")
    }

    private func absolute(_ path: String) -> String {
        let expanded = path.hasPrefix("~/") ? home + path.dropFirst(1) : path
        return expanded.hasPrefix("/") ? expanded : currentDirectory + "/" + expanded
    }

    /// `path` itself if it is a `.safetensors` file or a diffusers folder.
    private func model(at path: String) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
        if isDirectory.boolValue {
            return FileManager.default.fileExists(atPath: path + "/model_index.json") ? path : firstModel(in: path)
        }
        return path.hasSuffix(".safetensors") ? path : nil
    }

    /// The first `.safetensors` file or diffusers folder directly in `folder`, by name.
    private func firstModel(in folder: String) -> String? {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return nil }
        if entries.contains("model_index.json") { return folder }
        for entry in entries.sorted() where entry.hasSuffix(".safetensors") { return folder + "/" + entry }
        for entry in entries.sorted()
        where FileManager.default.fileExists(atPath: folder + "/" + entry + "/model_index.json") {
            return folder + "/" + entry
        }
        return nil
    }

    private func firstModel(inSnapshots snapshots: String) -> String? {
        guard let revisions = try? FileManager.default.contentsOfDirectory(atPath: snapshots) else { return nil }
        for revision in revisions.sorted() {
            if let found = firstModel(in: snapshots + "/" + revision) { return found }
        }
        return nil
    }
}

/// The styles of a build without the Imaging module: only `none`, the prompt as typed.
public final class PlainStyleBook: StyleBook {
    public init() {}
    public var names: [String] { ["none"] }
    public func listing() -> [String] { ["none  the prompt as typed"] }
    public func apply(_ style: String, prompt: String, negative: String) -> (prompt: String, negative: String)? {
        style == "none" ? (prompt, negative) : nil
    }
    public func load(csv path: String) throws {
        throw ScriptError.unavailable(command: "set", reason: "styles files need the Imaging module, not in this build yet")
    }
}
