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
}

extension AutoencoderDecoder: LatentDecoder {
    public var decoderName: String { "VAE" }
}
