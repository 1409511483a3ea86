import Foundation

extension Tensor {
    /// Sinusoidal timestep embedding, diffusers' `get_timestep_embedding` with `scale = 1`:
    ///
    ///     exponent = −ln(maxPeriod) · arange(half) / (half − downscaleFreqShift)
    ///     emb = t[:, None] · exp(exponent)[None, :]
    ///     emb = cat([sin(emb), cos(emb)], −1)        → [cos, sin] when flipSinToCos
    ///
    /// with every step in Float32 as torch computes it, and a zero column appended for odd `dim`.
    /// SD1.5's UNet uses `flipSinToCos: true, downscaleFreqShift: 0`.
    ///
    /// - Parameters:
    ///   - timesteps: one (possibly fractional) timestep per sample.
    ///   - dim: the embedding width.
    /// - Returns: `[timesteps.count, dim]`.
    public static func timestepEmbedding(_ timesteps: [Float], dim: Int, flipSinToCos: Bool = true,
                                         downscaleFreqShift: Float = 0, maxPeriod: Float = 10000) -> Tensor {
        precondition(dim >= 0, "timestepEmbedding: negative dim")
        let half = dim / 2
        // torch: -math.log(max_period) (a Python double) times a float32 arange → float32.
        let logPeriod = Float(-Foundation.log(Double(maxPeriod)))
        let frequencies = (0..<half).map { i -> Float in
            Foundation.exp(logPeriod * Float(i) / (Float(half) - downscaleFreqShift))
        }
        var out = Tensor(shape: [timesteps.count, dim])
        for (row, t) in timesteps.enumerated() {
            for i in 0..<half {
                let angle = t * frequencies[i]
                let (first, second) = flipSinToCos ? (Foundation.cos(angle), Foundation.sin(angle))
                                                   : (Foundation.sin(angle), Foundation.cos(angle))
                out.data[row * dim + i] = first
                out.data[row * dim + half + i] = second
            }
        }
        return out
    }
}
