import Foundation

extension StableDiffusionPipeline {
    /// The largest latent (h·w) TAESD previews at every step: 32×32, a 256×256 image (about 9 GFLOP a
    /// decode). Larger images get one every second step, as a 512×512 decode costs about 141 GFLOP.
    static let everyStepPreviewLatents = 32 * 32

    /// The live preview after `step` of `total`: TAESD's decode of the first image's latents when
    /// `previewDecoder` is set (nil on the steps its cadence skips, so the last preview stays up),
    /// otherwise the latent linear projection (`LatentPreview`).
    func preview(of latents: Tensor, step: Int, total: Int) -> PixelImage? {
        guard let previewDecoder else { return LatentPreview.image(from: latents) }
        let small = latents.shape[2] * latents.shape[3] <= Self.everyStepPreviewLatents
        guard small || step % 2 == 0 || step == total else { return nil }
        guard let decoded = try? previewDecoder.decode(latents.slice(batch: 0), cancellation: nil), decoded.isAllFinite else {
            return LatentPreview.image(from: latents)
        }
        return PixelImage(decoded: decoded)
    }
}
