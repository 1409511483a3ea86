/// A cheap preview of SD1.x latents: a fixed linear map from the 4 latent channels to RGB at 1/8 of the
/// image size, as A1111's "Approx cheap" live preview. No VAE involved, so it costs microseconds.
public enum LatentPreview {
    /// A1111's `latent_rgb_factors` for SD1.x (rows: latent channels; columns: R, G, B).
    static let factors: [[Float]] = [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]

    /// The preview of the first latent of `latents` ([B, 4, h, w]).
    public static func image(from latents: Tensor) -> PixelImage {
        let h = latents.shape[2], w = latents.shape[3], plane = h * w
        var rgb = [UInt8](repeating: 0, count: plane * 3)
        for i in 0..<plane {
            for c in 0..<3 {
                var v: Float = 0
                for k in 0..<4 { v += latents.data[k * plane + i] * factors[k][c] }
                // NaN (from a broken model) as black rather than a trap; the pipeline refuses it anyway.
                rgb[i * 3 + c] = v.isNaN ? 0 : UInt8(min(max((v + 1) / 2, 0), 1) * 255)
            }
        }
        return PixelImage(width: w, height: h, rgb: rgb)
    }
}
