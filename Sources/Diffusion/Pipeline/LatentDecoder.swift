import Foundation

/// Turns the sampler's latents into pixels: the checkpoint's VAE decoder today; a tiny
/// autoencoder (TAESD) or another VAE file plugs in here without the pipeline knowing which.
public protocol LatentDecoder {
    /// What decoded the image, for the recipe and messages ("VAE", "TAESD").
    var decoderName: String { get }

    /// Decodes latents as the sampler leaves them.
    /// - Parameters:
    ///   - latents: `[B, 4, h, w]`, still multiplied by the VAE's scaling factor.
    ///   - cancellation: checked between the decoder's stages.
    /// - Returns: `[B, 3, 8h, 8w]`, nominally in [-1, 1], not clamped.
    /// - Throws: `PipelineError.cancelled`.
    func decode(_ latents: Tensor, cancellation: CancellationToken?) throws -> Tensor

    /// The same, in tiles when `tiled` and the decoder tiles (the VAE, as diffusers' `enable_tiling()`).
    func decode(_ latents: Tensor, tiled: Bool, cancellation: CancellationToken?) throws -> Tensor
}

extension LatentDecoder {
    /// A decoder without tiling decodes whole.
    public func decode(_ latents: Tensor, tiled: Bool, cancellation: CancellationToken?) throws -> Tensor {
        try decode(latents, cancellation: cancellation)
    }
}

extension AutoencoderDecoder: LatentDecoder {
    public var decoderName: String { "VAE" }
}

/// Opens the decoder a user names with `set vae`: a TAESD decoder (either layout) or a full VAE
/// (A1111's single file or a diffusers `AutoencoderKL`).
/// - Throws: `VAEFileError.notAVAE` saying what the file is when it is neither, `WeightsError` for a
///   VAE whose tensors do not fit SD1.x's.
/// - Parameter vaeConfig: the sizes for a single-file VAE (the model's own VAE's).
public func loadLatentDecoder(_ url: URL, vaeConfig: VAEConfig = VAEConfig()) throws -> any LatentDecoder {
    do {
        return try TinyAutoencoderDecoder.load(url)
    } catch TinyAutoencoderError.notTAESD {
        do {
            return try VAEFile.decoder(url, config: vaeConfig)
        } catch VAEFileError.notAVAE(let path, let reason) {
            throw VAEFileError.notAVAE(path: path, reason: reason + "; nor a TAESD decoder")
        }
    }
}
