/// The spatial transformer of SD1.x's UNet (diffusers `Transformer2DModel` with
/// `use_linear_projection=False`): the feature map becomes a token sequence, passes through
/// `BasicTransformerBlock`s that attend to themselves and to the text, and is added back.
public struct Transformer2D: Sendable {
    public let norm: GroupNorm
    public let projectionIn: Conv2d
    public let blocks: [BasicTransformerBlock]
    public let projectionOut: Conv2d

    /// - Parameters:
    ///   - channels: channels of the feature map; the inner width is `heads * headDim`.
    ///   - contextDim: channels of the text embedding attended to (`cross_attention_dim`).
    ///   - layers: number of transformer blocks (`transformer_layers_per_block`, 1 in SD1.x).
    public init(_ weights: Weights, channels: Int, heads: Int, headDim: Int, contextDim: Int, groups: Int, layers: Int) throws {
        let inner = heads * headDim
        // diffusers fixes this GroupNorm's eps at 1e-6, whatever the UNet's norm_eps.
        norm = try GroupNorm(weights.scoped("norm"), groups: groups, channels: channels, eps: 1e-6)
        projectionIn = try Conv2d(weights.scoped("proj_in"), inChannels: channels, outChannels: inner, kernel: 1)
        blocks = try (0..<layers).map {
            try BasicTransformerBlock(weights.scoped("transformer_blocks.\($0)"), dim: inner, heads: heads, headDim: headDim, contextDim: contextDim)
        }
        projectionOut = try Conv2d(weights.scoped("proj_out"), inChannels: inner, outChannels: channels, kernel: 1)
    }

    /// - Parameters:
    ///   - x: `[B, C, H, W]`.
    ///   - context: `[B, T, contextDim]`.
    /// - Returns: `[B, C, H, W]`.
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (height, width) = (x.shape[2], x.shape[3])
        var tokens = projectionIn(norm(x)).nchwToTokens()  // [B, HW, inner]
        for block in blocks {
            tokens = block(tokens, context: context)
        }
        let h = tokens.tokensToNCHW(height: height, width: width)  // [B, inner, H, W]
        return projectionOut(h) + x
    }
}

/// One pre-norm transformer layer of the UNet (diffusers `BasicTransformerBlock`, default norm type).
public struct BasicTransformerBlock: Sendable {
    public let norm1: LayerNorm
    public let selfAttention: Attention
    public let norm2: LayerNorm
    public let crossAttention: Attention
    public let norm3: LayerNorm
    public let feedForward: FeedForward

    public init(_ weights: Weights, dim: Int, heads: Int, headDim: Int, contextDim: Int) throws {
        // Transformer2DModel's norm_eps default (1e-5): SD1.x UNets never pass their own.
        let eps: Float = 1e-5
        norm1 = try LayerNorm(weights.scoped("norm1"), dim: dim, eps: eps)
        selfAttention = try Attention(weights.scoped("attn1"), queryDim: dim, heads: heads, headDim: headDim, projectionBias: false)
        norm2 = try LayerNorm(weights.scoped("norm2"), dim: dim, eps: eps)
        crossAttention = try Attention(weights.scoped("attn2"), queryDim: dim, contextDim: contextDim, heads: heads, headDim: headDim, projectionBias: false)
        norm3 = try LayerNorm(weights.scoped("norm3"), dim: dim, eps: eps)
        feedForward = try FeedForward(weights.scoped("ff"), dim: dim)
    }

    /// - Parameters:
    ///   - x: `[B, N, dim]`.
    ///   - context: `[B, T, contextDim]`.
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        // self-attention
        var h = selfAttention(norm1(x)) + x
        // cross-attention
        h = crossAttention(norm2(h), context: context) + h
        // feed-forward
        return feedForward(norm3(h)) + h
    }
}

/// The GEGLU feed-forward of `BasicTransformerBlock` (diffusers `FeedForward` with
/// `activation_fn="geglu"`, inner width 4·dim): `net.2(a * GELU(b))` where `[a, b] = net.0.proj(x)`.
public struct FeedForward: Sendable {
    public let projection: Linear
    public let out: Linear

    public init(_ weights: Weights, dim: Int, multiplier: Int = 4) throws {
        let inner = dim * multiplier
        projection = try Linear(weights.scoped("net.0.proj"), inputs: dim, outputs: 2 * inner)
        out = try Linear(weights.scoped("net.2"), inputs: inner, outputs: dim)  // net.1 is dropout
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = projection(x)
        return out(Profiler.measure(.activation) { h.geglu() })  // [B, N, 2·inner] -> [B, N, inner] -> [B, N, dim]
    }
}
