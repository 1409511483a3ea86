import Diffusion
import Foundation
import Imaging
import ModelStore

/// `vaes`: the VAE files `set vae NAME` can use.
extension Command {
    static func listVAEs(_ session: Session) {
        let resources = session.settings.resources
        let entries = session.generation.vaeEntries(resources)
        let automatic = session.generation.automaticVAE(resources)
        for entry in entries {
            session.io.output(entry.name + (entry == automatic ? "  (auto: named like the model)" : "") + "  " + entry.url.path)
        }
        let places = session.generation.vaeDirectories(resources).map(\.path).joined(separator: ", ")
        session.io.output(entries.isEmpty
            ? "no VAEs (*.safetensors, *.pt, diffusers folders) in \(places), nor MODEL.vae.safetensors beside the model; "
                + "'set vae PATH' takes one from anywhere"
            : "\(entries.count) VAE\(entries.count == 1 ? "" : "s") in \(places); 'set vae NAME' uses one")
    }
}

extension Command {
    /// `load`: A1111's `VAE` (a file name) found in the VAE folders, with the same `VAE hash` when the
    /// recipe has one, becomes `set vae`. A recipe without it leaves the setting alone, as A1111 does,
    /// unless sdrepl made the image (`ownKeys`): then it was the model's own VAE, which `load` restores.
    /// - Returns: the phrase for `load`'s warning line when the VAE is not here.
    static func restoreVAE(_ recipe: Imaging.ImageRecipe, ownKeys: Bool, session: Session) -> String? {
        guard let name = recipe.extra("VAE") else {
            if ownKeys { session.settings.resources.vae = nil }
            return nil
        }
        let hash = recipe.extra("VAE hash")?.lowercased()
        let candidates = session.generation.vaeEntries(session.settings.resources).filter { $0.name == name }
        let match = candidates.first { entry in
            guard let hash else { return true }
            return (try? FileHash.sha256(of: VAELibrary.hashedFile(entry.url)))?.hasPrefix(hash) == true
        }
        guard let match else {
            let places = session.generation.vaeDirectories(session.settings.resources).map(\.path).joined(separator: ", ")
            let differs = candidates.isEmpty ? "" : " (\(name) there has another hash)"
            return "its VAE \(name)\(hash.map { " (hash \($0))" } ?? "") is not in \(places)\(differs): put it there, or 'set vae PATH'"
        }
        session.settings.resources.vae = match.url.path
        return nil
    }
}
