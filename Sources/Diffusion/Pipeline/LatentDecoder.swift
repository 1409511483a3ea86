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
///
/// The file's tensors are looked at before its name: a LoRA named `…sdxl…` is a LoRA. The name (or
/// a folder's `config.json`) is consulted once the tensors are a decoder's, because only it tells
/// SDXL's VAE and TAESD-XL from SD1.x's, whose shapes they share.
/// - Throws: `VAEFileError.otherModel` for SDXL's, SD3's or FLUX's; `VAEFileError.otherFile`,
///   `TinyAutoencoderError.encoder` or `VAEFileError.notAVAE` saying what the file is when it is no
///   decoder; `WeightsError` for a VAE whose tensors do not fit SD1.x's or are not stored as floats.
/// - Parameter vaeConfig: the sizes for a single-file VAE (the model's own VAE's).
public func loadLatentDecoder(_ url: URL, vaeConfig: VAEConfig = VAEConfig()) throws -> any LatentDecoder {
    func refuseOtherModel() throws {
        if let (kind, evidence) = VAELibrary.otherModel(url) {
            throw VAEFileError.otherModel(path: url.path, kind: kind, evidence: evidence)
        }
    }
    let decoder: any LatentDecoder
    do {
        do {
            decoder = try TinyAutoencoderDecoder.load(url)
        } catch TinyAutoencoderError.notTAESD {
            do {
                decoder = try VAEFile.decoder(url, config: vaeConfig)
            } catch VAEFileError.notAVAE(let path, let reason) {
                throw VAEFileError.notAVAE(path: path, reason: reason + "; nor a TAESD decoder")
            }
        }
    } catch let error where error is VAEFileError || error is TinyAutoencoderError {
        throw error  // no file, or a file that is no decoder: its name says nothing more
    } catch {
        // A decoder that does not fit (or cannot be read): one for another model says what it is.
        try refuseOtherModel()
        throw error
    }
    try refuseOtherModel()
    return decoder
}
