import FileErrors
import Diffusion
import Foundation

/// `set vae PATH|NAME|auto|none`.
extension SettingKey {
    static let vaeValues = "PATH or NAME from 'vaes' (a VAE: A1111's file or a diffusers folder; or TAESD) | auto (MODEL.vae.safetensors) | none"

    /// The names `set vae` completes: `auto`, `none` and the listing's.
    static func vaeChoices(_ session: Session) -> [String] {
        ["auto", "none"] + session.generation.vaeEntries(session.settings.resources).map(\.name)
    }

    /// Checks the decoder `value` names against the loaded model's VAE sizes (a VAE file replaces
    /// it) and keeps it; the transcript records the file's absolute path. A refused file leaves the
    /// setting as it was, so the model's own VAE (or the one set before) stays in use.
    static func applyVAE(_ session: Session, _ value: String) throws {
        let word = value.lowercased()
        if word == "none" {
            session.settings.resources.vae = nil
            return
        }
        var url: URL
        if word == "auto" {
            var probe = session.settings.resources
            probe.vae = "auto"
            guard let found = session.generation.automaticVAE(probe) else {
                session.settings.resources.vae = "auto"
                session.io.output("vae auto: no VAE named like the model (MODEL.vae.safetensors beside it, or in "
                                  + session.generation.vaeDirectories(probe).map(\.path).joined(separator: ", ")
                                  + "); the model's own VAE is used until there is one")
                return
            }
            url = found.url
        } else {
            url = URL(fileURLWithPath: value.expandingTilde)
            if !FileManager.default.fileExists(atPath: url.path) {
                let entries = session.generation.vaeEntries(session.settings.resources)
                guard let entry = VAELibrary.locate(value, in: entries) else {
                    let stems = entries.map { URL(fileURLWithPath: $0.name).deletingPathExtension().lastPathComponent }
                    let near = closestWord(to: value, in: stems).flatMap { stem in entries.first { $0.name.hasPrefix(stem) }?.name }
                    throw ScriptError.badArgument(command: "set vae", argument: value,
                                                  reason: "no file, nor a VAE in "
                                                      + session.generation.vaeDirectories(session.settings.resources).map(\.path).joined(separator: ", ")
                                                      + " ('vaes' lists them), named", suggestion: near)
                }
                url = entry.url
            }
        }
        if let problem = session.decoderProblem(url) {
            throw ScriptError.unavailable(command: "set vae", reason: problem + "; the VAE in use is kept")
        }
        session.settings.resources.vae = word == "auto" ? "auto" : url.path
        session.log.line.replay = word == "auto" ? "set vae auto" : "set vae \(absolute(url.path))"
    }
}

extension Session {
    /// Why the decoder (VAE or TAESD) at `url` cannot decode for the loaded model (SD1.5's VAE sizes
    /// before a model is loaded), or nil when it can.
    func decoderProblem(_ url: URL) -> String? {
        do {
            let config = (generation.cachedGenerator as? PipelineGenerator)?.pipeline.vae.config ?? VAEConfig()
            _ = try loadLatentDecoder(url, vaeConfig: config)
            return nil
        } catch let WeightsError.shapeMismatch(key, expected, actual, source) {
            // The shared message speaks of a checkpoint; this is a VAE file.
            return "tensor '\(key)' in \(source) has shape \(actual) but SD1.5's VAE needs \(expected): it is a VAE for another model"
        } catch {
            return "\(error)"
        }
    }
}
