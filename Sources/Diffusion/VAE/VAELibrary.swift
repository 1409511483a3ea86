import Foundation

/// VAE files as A1111 users keep them: `models/VAE` (full VAEs), `models/VAE-taesd` (TAESD decoders),
/// and `MODEL.vae.safetensors` (or `.vae.pt`, `.vae.ckpt`) beside a model, which A1111's "Automatic"
/// picks for that model (`modules/sd_vae.py`, `find_vae_near_checkpoint`).
public enum VAELibrary {
    static let extensions = ["safetensors", "pt", "ckpt", "pth", "bin"]

    /// One VAE found: its name as A1111 shows it (the file name with its extension, or a diffusers
    /// folder's name) and where it is.
    public struct Entry: Equatable, Sendable {
        public let name: String
        public let url: URL
    }

    /// The VAEs in `directories` (sub-folders too; a diffusers folder counts as one) and the
    /// `*.vae.*` files in `modelFolder`, sorted by name without repeats. TAESD encoders are left out.
    public static func entries(in directories: [URL], modelFolder: URL? = nil) -> [Entry] {
        let fm = FileManager.default
        var found: [Entry] = []
        for directory in directories {
            guard let walker = fm.enumerator(at: directory, includingPropertiesForKeys: [.isDirectoryKey]) else { continue }
            for case let url as URL in walker {
                if isDiffusersFolder(url) {
                    found.append(Entry(name: url.lastPathComponent, url: url))
                    walker.skipDescendants()
                } else if extensions.contains(url.pathExtension.lowercased()), !url.lastPathComponent.lowercased().contains("encoder") {
                    found.append(Entry(name: url.lastPathComponent, url: url))
                }
            }
        }
        if let modelFolder, let files = try? fm.contentsOfDirectory(at: modelFolder, includingPropertiesForKeys: nil) {
            found += files.filter { $0.deletingPathExtension().pathExtension.lowercased() == "vae" && extensions.contains($0.pathExtension.lowercased()) }
                .map { Entry(name: $0.lastPathComponent, url: $0) }
        }
        var seen = Set<String>()
        return found.sorted { $0.name < $1.name }.filter { seen.insert($0.url.standardizedFileURL.path).inserted }
    }

    /// The entry named `name` (its file name, or the name without the extension).
    public static func locate(_ name: String, in entries: [Entry]) -> Entry? {
        entries.first { $0.name == name } ?? entries.first { URL(fileURLWithPath: $0.name).deletingPathExtension().lastPathComponent == name }
    }

    /// A1111's "Automatic": a VAE whose file name starts with the model's (`MODEL.vae.safetensors`
    /// beside it, or `MODEL…` in the VAE folders); nil when there is none.
    public static func automatic(forModel model: URL, in entries: [Entry]) -> Entry? {
        // A diffusers folder has no extension to drop (`tiny-sd15` stays itself).
        let stem = model.pathExtension == "safetensors" || model.pathExtension == "ckpt"
            ? model.deletingPathExtension().lastPathComponent : model.lastPathComponent
        return entries.first { $0.name.hasPrefix(stem + ".vae.") } ?? entries.first { $0.name.hasPrefix(stem) }
    }

    /// The file whose SHA-256 A1111's `VAE hash` is (its first 10 hex digits): the file itself, or a
    /// diffusers folder's weights.
    public static func hashedFile(_ url: URL) -> URL {
        isDiffusersFolder(url) ? url.appendingPathComponent("diffusion_pytorch_model.safetensors") : url
    }

    static func isDiffusersFolder(_ url: URL) -> Bool {
        FileManager.default.fileExists(atPath: url.appendingPathComponent("diffusion_pytorch_model.safetensors").path)
    }

    /// What a VAE for another model is, with the evidence, or nil when nothing says so.
    ///
    /// SDXL's VAE has exactly SD1.x's shapes, and TAESD-XL exactly TAESD's: only a diffusers folder's
    /// `config.json` (SDXL's `scaling_factor` 0.13025) or the file name (`sdxl_vae`, `taesdxl_decoder`)
    /// tells them apart. SD3's and FLUX's have 16 latent channels, which the shapes show.
    public static func otherModel(_ url: URL) -> (kind: String, evidence: String)? {
        let name = url.lastPathComponent.lowercased()
        for (marker, kind) in [("taesdxl", "TAESD-XL, for SDXL's latents"), ("taesd3", "TAESD3, for SD3's latents"),
                               ("taef1", "TAEF1, for FLUX's latents"), ("sdxl", "an SDXL VAE")] where name.contains(marker) {
            return (kind, "its name has '\(marker)'")
        }
        if let data = FileManager.default.contents(atPath: url.appendingPathComponent("config.json").path),
           let config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            if let scale = config["scaling_factor"] as? Double, abs(scale - 0.13025) < 1e-6 {
                return ("an SDXL VAE", "its config.json has scaling_factor 0.13025; SD1.x's is 0.18215")
            }
            if let channels = config["latent_channels"] as? Int, channels != 4 {
                return ("a VAE with \(channels) latent channels (SD3 or FLUX)", "its config.json has latent_channels \(channels)")
            }
        }
        guard let source = try? openTensorFile(hashedFile(url)) else { return nil }
        for key in ["decoder.layers.0.weight", "1.weight", "decoder.conv_in.weight", "post_quant_conv.weight"] {
            if let shape = source.shape(of: key), shape.count == 4, shape[1] == 16 {
                return ("a VAE with 16 latent channels (SD3 or FLUX)", "'\(key)' reads \(shape[1]) channels")
            }
        }
        return nil
    }
}
