import Diffusion
import Foundation
import Imaging

/// The images a transcript's run saved (`#=> image` lines with their `#=> saved` PNGs), which
/// `sdrepl export` shows instead of generating them again when they are still there and unchanged.
public final class RecordedImages {
    struct Record {
        var seed: UInt64
        var width: Int
        var height: Int
        var sha256: String
        var files: [String]
    }

    private var records: [Record] = []
    /// Folders a relative saved path is tried against, in order.
    private let folders: [String]
    /// How many images were taken from files.
    public private(set) var reused = 0

    /// Reads the result lines of `lines`, a transcript at `path`. A saved path that is relative was
    /// relative to where the recorded session ran: the current folder, the transcript's folder's
    /// parent (`sessions/..`) and the transcript's folder are tried.
    public init(transcript lines: [String], at path: String) {
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
        folders = [FileManager.default.currentDirectoryPath, folder.deletingLastPathComponent().path, folder.path]
        var byIndex: [Int: Int] = [:]
        for line in lines {
            switch ResultRecord(line: line) {
            case .image(let index, let seed, let width, let height, let sha256)?:
                byIndex[index] = records.count
                records.append(Record(seed: seed, width: width, height: height, sha256: sha256, files: []))
            case .saved(let index, let file)?:
                guard (file as NSString).pathExtension.lowercased() == "png", let position = byIndex[index] else { continue }
                records[position].files.append(file)
            default:
                continue
            }
        }
    }

    /// The recorded images of `request`'s batch, each from a PNG whose pixels still have the
    /// recorded hash and whose sdrepl settings are the request's; nil unless every image of the
    /// batch is there (then the engine makes them all).
    func results(for request: GenerationRequest, model: ModelIdentity?) -> [GenerationResult]? {
        // What the settings do not pin down exactly: init images, masks, the hires fix, LoRA files,
        // another decoder. Those are generated again.
        guard request.initImage == nil, request.mask == nil, request.hires == nil, !request.prompt.contains("<lora:"),
              let model else { return nil }
        var results: [GenerationResult] = []
        for number in 0..<request.batchCount {
            var single = request
            single.seed = request.seed &+ UInt64(number)
            single.batchCount = 1
            guard let result = result(for: single, model: model) else { return nil }
            results.append(result)
        }
        reused += results.count
        return results
    }

    private func result(for request: GenerationRequest, model: ModelIdentity) -> GenerationResult? {
        for record in records where record.seed == request.seed && record.width == request.width && record.height == request.height {
            for file in record.files {
                guard let path = locate(file), let data = try? Data(contentsOf: URL(fileURLWithPath: path)),
                      let png = try? PNGFile.decode([UInt8](data), path: path), pixelHash(png.image) == record.sha256,
                      let stored = try? ImageRecipeReader.read([UInt8](data), path: path),
                      let seconds = Self.settings(stored, match: request, model: model) else { continue }
                return GenerationResult(image: PixelImage(width: png.image.width, height: png.image.height, rgb: png.image.pixels),
                                        request: request, model: model.hashedFile, seconds: seconds)
            }
        }
        return nil
    }

    private func locate(_ file: String) -> String? {
        if file.hasPrefix("/") { return FileManager.default.fileExists(atPath: file) ? file : nil }
        return folders.map { $0 + "/" + file }.first { FileManager.default.fileExists(atPath: $0) }
    }

    /// The seconds the recorded run took, when the file's sdrepl settings are `request`'s, made by
    /// the same model file with the model's own decoder; nil otherwise.
    private static func settings(_ stored: StoredRecipe, match request: GenerationRequest, model: ModelIdentity) -> Double? {
        guard let json = stored.settingsJSON?.data(using: .utf8),
              let all = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any] else { return nil }
        let expected: [String: String] = [
            "prompt": request.prompt, "negative_prompt": request.negativePrompt, "seed": String(request.seed),
            "steps": String(request.steps), "cfg_scale": formatNumber(request.guidanceScale),
            "width": String(request.width), "height": String(request.height), "sampler": request.sampler.rawValue,
            "clip_skip": String(request.clipSkip), "model_file": model.hashedFile.path,
        ]
        for (key, value) in expected {
            guard let stored = all[key], "\(stored)" == value || (stored as? NSNumber).map({ formatNumber($0.floatValue) }) == value
            else { return nil }
        }
        let spacing = all["spacing"] as? String
        guard spacing == request.spacing?.rawValue, all["decoder"] == nil, all["init"] == nil, all["mask_blur"] == nil,
              all["hires_width"] == nil, all["upscaler"] == nil,
              (all["deepcache"] as? NSNumber)?.intValue == request.deepCache, (all["vae_tiling"] as? Bool ?? false) == request.vaeTiling,
              (all["precision"] as? String ?? "fp32") == request.precision.rawValue,
              request.sampler != .tcd || (all["eta"] as? NSNumber)?.doubleValue == request.eta else { return nil }
        return (all["seconds"] as? NSNumber)?.doubleValue ?? 0
    }
}

/// Loads the real generator and wraps it so that recorded images are taken from their files.
public struct ReusingLoader: GeneratorLoader {
    let inner: GeneratorLoader
    let recorded: RecordedImages

    public init(_ inner: GeneratorLoader, recorded: RecordedImages) {
        self.inner = inner
        self.recorded = recorded
    }

    public func load(model: ModelLocation, memory: MemoryMode) throws -> ImageGenerator {
        ReusingGenerator(inner: try inner.load(model: model, memory: memory), recorded: recorded)
    }
}

/// The engine, except for batches whose every image the recorded run saved (`RecordedImages`).
final class ReusingGenerator: ImageGenerator {
    let inner: ImageGenerator
    let recorded: RecordedImages

    init(inner: ImageGenerator, recorded: RecordedImages) {
        self.inner = inner
        self.recorded = recorded
    }

    var identity: ModelIdentity? { inner.identity }
    var memoryMode: MemoryMode? { inner.memoryMode }
    var keptWeightBytes: Int? { inner.keptWeightBytes }
    var loadWarnings: [String] { inner.loadWarnings }

    func generate(_ request: GenerationRequest, folders: ResourceFolders, progress: (GenerationProgress) -> Void,
                  isCancelled: () -> Bool, image: (GenerationResult) throws -> Void) throws {
        if folders.decoder == nil, let results = recorded.results(for: request, model: inner.identity) {
            return try results.forEach(image)
        }
        try inner.generate(request, folders: folders, progress: progress, isCancelled: isCancelled, image: image)
    }

    func tokenReport(prompt: String, steps: Int, folders: ResourceFolders) throws -> String {
        try inner.tokenReport(prompt: prompt, steps: steps, folders: folders)
    }
}
