import Diffusion
import Foundation
import Imaging

// The session's upscalers over the engine's `Upscaler`: where their files are found, the one kept
// loaded, and an upscale by any factor (the model's passes, then Pillow's Lanczos to the size asked,
// as A1111's `Upscaler.upscale` does; `PixelImage.resized`, which init images use too).

/// Upscaler files in folders, by name (the file name without its extension).
enum UpscalerLibrary {
    /// What A1111 keeps upscalers as: safetensors, and PyTorch's pickles (read by the weights-only reader).
    static let extensions: Set<String> = ["safetensors", "pth", "pt"]

    /// Every upscaler file in `folders`, sorted by name; a name in an earlier folder hides a later one.
    static func files(in folders: [URL]) -> [(name: String, url: URL)] {
        var found: [String: URL] = [:]
        for folder in folders.reversed() {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            for entry in entries where extensions.contains((entry as NSString).pathExtension.lowercased()) {
                found[(entry as NSString).deletingPathExtension] = folder.appendingPathComponent(entry)
            }
        }
        return found.sorted { $0.key.lowercased() < $1.key.lowercased() }.map { ($0.key, $0.value) }
    }

    /// The file named `name` (with or without its extension, any case) in `folders`.
    static func find(_ name: String, in folders: [URL]) -> URL? {
        let wanted = name.lowercased()
        return files(in: folders).first { $0.name.lowercased() == wanted || $0.url.lastPathComponent.lowercased() == wanted }?.url
    }
}

/// What `upscale` made an image with, for its recipe (A1111's extras keys) and `history`.
public struct UpscaleRecord: Equatable, Sendable {
    /// The upscaler's name (A1111's `Postprocess upscaler`).
    public var upscaler: String
    /// The factor asked for (A1111's `Postprocess upscale by`).
    public var factor: Double
    /// The history number of the image it was made from.
    public var source: Int
    /// How the model's output was brought to the size asked for, when it was not that size already.
    public var resize: String?
}

/// Keeps the last upscaler loaded (the full-size ones are 64 MB of weights) and runs upscales.
final class UpscaleService {
    private var cached: (path: String, modified: Date?, upscaler: Upscaler)?
    /// The file of the last upscale, used when `upscale` names none.
    private(set) var lastUsed: URL?

    /// The upscaler in `url`, loaded on first use and kept until another is asked for or the file changes.
    /// - Throws: the engine's `UpscalerError` or `SafetensorsError`.
    func upscaler(at url: URL) throws -> Upscaler {
        let modified = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date
        if let cached, cached.path == url.path, cached.modified == modified { return cached.upscaler }
        let loaded = try Upscaler.load(url)
        cached = (url.path, modified, loaded)
        return loaded
    }

    func used(_ url: URL) { lastUsed = url }

    /// The size an upscale by `factor` makes of a `width × height` image: the model's own output when
    /// `factor` is its scale, else A1111's `int(side · factor) // 8 · 8`.
    static func targetSize(width: Int, height: Int, factor: Double, modelScale: Int) -> (width: Int, height: Int) {
        if factor == Double(modelScale) { return (width * modelScale, height * modelScale) }
        return (max(8, Int(Double(width) * factor) / 8 * 8), max(8, Int(Double(height) * factor) / 8 * 8))
    }

    /// Upscales `image` to `target` with `upscaler`'s passes, then Lanczos when the sizes differ.
    /// - Parameter progress: tiles over all passes.
    /// - Returns: the image and whether it was resized after the model.
    func upscale(_ image: RGBImage, with upscaler: Upscaler, to target: (width: Int, height: Int), tiling: TileOptions,
                 progress: (UpscaleProgress) -> Void, cancellation: CancellationToken) throws -> (image: RGBImage, resized: Bool) {
        let source = PixelImage(width: image.width, height: image.height, rgb: image.pixels)
        let current = try upscaler.upscale(source, toCover: target, tiling: tiling, progress: progress, cancellation: cancellation)
        let resized = current.width != target.width || current.height != target.height
        let final = current.resized(width: target.width, height: target.height)
        return (try RGBImage(width: final.width, height: final.height, pixels: final.rgb), resized)
    }
}
