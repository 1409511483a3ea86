/// Turns a chunked prompt into the UNet's cross-attention conditioning: each chunk encoded on its
/// own, weighted with A1111's "Original" emphasis, and the chunks joined along the token axis.
///
/// Kept free of the text encoder (it takes the encoder as a closure) so it can be tested with a
/// fake one.
public enum PromptConditioning {
    /// Encodes every chunk and joins the results: `[1, 77 · chunks, C]`.
    ///
    /// - Parameters:
    ///   - prompt: the chunks of one prompt (`PromptChunker.chunk`).
    ///   - encode: the text encoder: 77 token ids to its hidden states `[1, 77, C]`.
    /// - Returns: the conditioning `[1, 77 · n, C]`. A prompt without weighting syntax that fits one
    ///   chunk gives exactly `encode` of its 77 ids: diffusers' embedding, bit for bit.
    /// - Throws: whatever `encode` throws.
    public static func encode(_ prompt: ChunkedPrompt, using encode: ([Int]) throws -> Tensor) rethrows -> Tensor {
        try self.encode(prompt, chunks: { try encode($0.tokens) })
    }

    /// The same with the encoder given whole chunks, for textual-inversion vectors (`PromptChunk.fixes`).
    public static func encode(_ prompt: ChunkedPrompt, chunks encode: (PromptChunk) throws -> Tensor) rethrows -> Tensor {
        precondition(!prompt.chunks.isEmpty, "a chunked prompt has at least one chunk")
        var data: [Float] = []
        var channels = 0
        for chunk in prompt.chunks {
            let z = try encode(chunk)
            precondition(z.shape.count == 3 && z.shape[0] == 1 && z.shape[1] == chunk.tokens.count,
                         "the text encoder returned \(z.shape) for \(chunk.tokens.count) tokens; expected [1, \(chunk.tokens.count), C]")
            precondition(channels == 0 || z.shape[2] == channels, "the text encoder changed width between chunks")
            channels = z.shape[2]
            data += emphasized(z, weights: chunk.weights).data
        }
        return Tensor(shape: [1, data.count / channels, channels], data: data)
    }

    /// A1111's "Original" emphasis (`modules/sd_emphasis.py`, `EmphasisOriginal.after_transformers`):
    ///
    ///     original_mean = z.mean()
    ///     z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
    ///     new_mean = z.mean()
    ///     z = z * (original_mean / new_mean)
    ///
    /// Each token's vector is scaled by its weight, then the whole chunk by one factor that restores
    /// the mean over all of its elements.
    ///
    /// - Parameters:
    ///   - z: one chunk's hidden states `[1, T, C]`.
    ///   - weights: `T` weights.
    /// - Returns: `z` itself when every weight is 1 (the rescale would be ×1 anyway, since both means
    ///   are then the same sum over the same numbers); otherwise the weighted, rescaled states. If
    ///   the weighted mean is exactly 0 the rescale is skipped, where A1111 would produce inf/NaN.
    public static func emphasized(_ z: Tensor, weights: [Float]) -> Tensor {
        precondition(z.shape.count == 3 && z.shape[1] == weights.count, "\(weights.count) weights for hidden states \(z.shape)")
        if weights.allSatisfy({ $0 == 1 }) { return z }
        let tokens = z.shape[1]
        let channels = z.shape[2]
        var out = z
        // Means are summed in Double (torch sums float32 pairwise); the ratio is taken in Float as
        // torch does with its 0-d float32 means.
        var originalSum = 0.0
        var newSum = 0.0
        for b in 0..<z.shape[0] {
            for t in 0..<tokens {
                let w = weights[t]
                let base = (b * tokens + t) * channels
                for c in 0..<channels {
                    let v = z.data[base + c]
                    originalSum += Double(v)
                    let scaled = v * w
                    out.data[base + c] = scaled
                    newSum += Double(scaled)
                }
            }
        }
        let count = Double(z.count)
        let originalMean = Float(originalSum / count)
        let newMean = Float(newSum / count)
        guard newMean != 0 else { return out }
        let ratio = originalMean / newMean
        for i in out.data.indices { out.data[i] *= ratio }
        return out
    }
}
