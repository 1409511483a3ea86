/// The residual convolution block of the UNet and the VAE (diffusers `ResnetBlock2D` with
/// `time_embedding_norm="default"`, `output_scale_factor` as given):
///
///     h = conv1(SiLU(norm1(x)))  [+ time_emb_proj(SiLU(temb)) broadcast over H, W]
///     h = conv2(SiLU(norm2(h)))  (dropout is the identity at inference)
///     y = (shortcut(x) + h) / outputScaleFactor
///
/// The shortcut is a 1×1 convolution (`conv_shortcut`) when the channel count changes.
public struct ResnetBlock2D: Sendable {
    public let norm1: GroupNorm
    public let conv1: Conv2d
    public let timeEmbeddingProjection: Linear?
    public let norm2: GroupNorm
    public let conv2: Conv2d
    public let shortcut: Conv2d?
    public let outputScaleFactor: Float

    /// - Parameter timeEmbeddingChannels: width of the UNet's time embedding; nil in the VAE,
    ///   whose resnets have no `time_emb_proj`.
    public init(_ weights: Weights, inChannels: Int, outChannels: Int, timeEmbeddingChannels: Int?,
         groups: Int, eps: Float, outputScaleFactor: Float = 1) throws {
        norm1 = try GroupNorm(weights.scoped("norm1"), groups: groups, channels: inChannels, eps: eps)
        conv1 = try Conv2d(weights.scoped("conv1"), inChannels: inChannels, outChannels: outChannels, kernel: 3)
        timeEmbeddingProjection = try timeEmbeddingChannels.map {
            try Linear(weights.scoped("time_emb_proj"), inputs: $0, outputs: outChannels)
        }
        norm2 = try GroupNorm(weights.scoped("norm2"), groups: groups, channels: outChannels, eps: eps)
        conv2 = try Conv2d(weights.scoped("conv2"), inChannels: outChannels, outChannels: outChannels, kernel: 3)
        shortcut = inChannels == outChannels ? nil
            : try Conv2d(weights.scoped("conv_shortcut"), inChannels: inChannels, outChannels: outChannels, kernel: 1)
        self.outputScaleFactor = outputScaleFactor
    }

    /// - Parameters:
    ///   - x: `[B, inChannels, H, W]`.
    ///   - timeEmbedding: `[B, timeEmbeddingChannels]` before SiLU; required exactly when the block
    ///     was built with `timeEmbeddingChannels`.
    /// - Returns: `[B, outChannels, H, W]`.
    ///
    /// `x` is taken as `consuming`: a caller that hands it over (`h = resnet(consume h)`, as the VAE
    /// decoder does) has its buffer freed once the residual is formed, instead of holding it through
    /// the second half (at the VAE's 512×512 level that is 256 MB of peak memory). With a 1×1
    /// shortcut the shortcut is taken first and `norm1` then overwrites `x` itself, so the decoder's
    /// first 512×512 resnet holds its 256-channel input and the two 128-channel maps, not a second
    /// 256-channel one; `norm2` overwrites `conv1`'s output the same way.
    public func callAsFunction(_ x: consuming Tensor, timeEmbedding: Tensor? = nil) -> Tensor {
        precondition((timeEmbedding != nil) == (timeEmbeddingProjection != nil), "time embedding given to a block without time_emb_proj, or missing")
        let residual: Tensor
        var h: Tensor
        if let shortcut {
            residual = shortcut(x)
            h = conv1(norm1.normalizing(consume x, silu: true))
        } else {
            h = conv1(norm1(x, silu: true))
            residual = consume x
        }
        if let projection = timeEmbeddingProjection, let timeEmbedding {
            h = h.addingChannelBias(projection(Profiler.measure(.activation) { timeEmbedding.silu() }))  // [B, C] over every pixel
        }
        h = conv2(norm2.normalizing(consume h, silu: true))
        let y = residual + h
        return outputScaleFactor == 1 ? y : y * (1 / outputScaleFactor)
    }
}
