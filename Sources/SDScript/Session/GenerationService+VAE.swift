import FileErrors
import Diffusion
import Foundation

/// Where VAE files are found, and what `set vae` names: a path, a name from the `vaes` listing,
/// `auto` (A1111's "Automatic") or `none`.
extension GenerationService {
    /// `models/VAE` and `models/VAE-taesd` in the current folder, then `VAE` and `VAE-taesd` beside the
    /// model's folder (A1111's `models/VAE` next to `models/Stable-diffusion`), without repeats.
    func vaeDirectories(_ resources: ResourceSettings) -> [URL] {
        var seen = Set<String>()
        return (folders(chosen: nil, here: "models/VAE", besideModels: "VAE", model: resources.modelToLoad) + taesdDirectories(resources))
            .filter { seen.insert($0.path).inserted }
    }

    /// A1111's `models/VAE-taesd`, here and beside the model's folder.
    func taesdDirectories(_ resources: ResourceSettings) -> [URL] {
        folders(chosen: nil, here: "models/VAE-taesd", besideModels: "VAE-taesd", model: resources.modelToLoad)
    }

    /// The TAESD that draws live previews: the first in the `VAE-taesd` folders (A1111's place for
    /// its "TAESD" live-preview option).
    func previewTAESD(_ resources: ResourceSettings) -> URL? {
        // A TAESD for another model family (taesdxl, taef1, …) sorts first by name but cannot decode SD1.x's latents.
        VAELibrary.entries(in: taesdDirectories(resources)).first { VAELibrary.otherModel($0.url) == nil }?.url
    }

    /// The model's file, or its diffusers folder (`MODEL.vae.safetensors` beside a folder works as
    /// beside a file); nil when none is found.
    private func modelFile(_ resources: ResourceSettings) -> URL? {
        guard let location = try? components.models.locate(explicit: resources.modelToLoad) else { return nil }
        return URL(fileURLWithPath: location.path).standardizedFileURL
    }

    /// The VAEs of the VAE folders and the `*.vae.*` files beside the model.
    func vaeEntries(_ resources: ResourceSettings) -> [VAELibrary.Entry] {
        VAELibrary.entries(in: vaeDirectories(resources), modelFolder: modelFile(resources)?.deletingLastPathComponent())
    }

    /// The VAE `auto` picks for the current model: one named like it; nil for none.
    func automaticVAE(_ resources: ResourceSettings) -> VAELibrary.Entry? {
        modelFile(resources).flatMap { VAELibrary.automatic(forModel: $0, in: vaeEntries(resources)) }
    }

    /// The decoder file `set vae` chose (`auto` resolved now, for the current model), or nil for the model's own.
    func vaeFile(_ resources: ResourceSettings) -> URL? {
        if let draft = resources.draft?.vae { return draft == DraftPreset.modelVAE ? nil : URL(fileURLWithPath: draft) }
        guard let value = resources.vae else { return nil }
        if value == "auto" { return automaticVAE(resources)?.url }
        return URL(fileURLWithPath: value.expandingTilde)
    }
}
