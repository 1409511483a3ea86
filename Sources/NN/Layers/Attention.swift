/// Multi-head scaled dot-product attention with its four projections: the one attention module of
/// the engine, used by CLIP's self-attention, the UNet's self- and cross-attention and the VAE's
/// mid-block (diffusers `Attention`, transformers `CLIPAttention`).
///
/// `softmax(q·kᵀ / √d)·v` per head, where `d` is the head size; the memory of the score matrix is
/// bounded by `Tensor.attention`, so the VAE's single head over every pixel is safe.
public struct Attention: Sendable {
    /// The projection names of the two families of checkpoints.
    public enum Naming: Sendable {
        /// diffusers: `to_q`, `to_k`, `to_v`, `to_out.0`.
        case diffusers
        /// transformers CLIP: `q_proj`, `k_proj`, `v_proj`, `out_proj`.
        case clip

        var names: (query: String, key: String, value: String, out: String) {
            switch self {
            case .diffusers: return ("to_q", "to_k", "to_v", "to_out.0")
            case .clip: return ("q_proj", "k_proj", "v_proj", "out_proj")
            }
        }
    }

    public let heads: Int
    public let query: Linear
    public let key: Linear
    public let value: Linear
    public let out: Linear

    /// - Parameters:
    ///   - queryDim: channels of the input (and of the output).
    ///   - contextDim: channels of the sequence attended to; nil for self-attention.
    ///   - heads: number of heads; `heads * headDim` is the width of q, k and v.
    ///   - projectionBias: whether q, k and v have biases (CLIP and the VAE do, the UNet does not;
    ///     the output projection always has one).
    public init(_ weights: Weights, queryDim: Int, contextDim: Int? = nil, heads: Int, headDim: Int,
         projectionBias: Bool, naming: Naming = .diffusers) throws {
        let inner = heads * headDim
        let names = naming.names
        self.heads = heads
        query = try Linear(weights.scoped(names.query), inputs: queryDim, outputs: inner, bias: projectionBias)
        key = try Linear(weights.scoped(names.key), inputs: contextDim ?? queryDim, outputs: inner, bias: projectionBias)
        value = try Linear(weights.scoped(names.value), inputs: contextDim ?? queryDim, outputs: inner, bias: projectionBias)
        out = try Linear(weights.scoped(names.out), inputs: inner, outputs: queryDim)
    }

    /// - Parameters:
    ///   - x: `[B, Nq, queryDim]`.
    ///   - context: `[B, Nk, contextDim]`, or nil to attend to `x` itself.
    ///   - causal: token `i` sees only tokens `0...i` (CLIP's text encoder).
    /// - Returns: `[B, Nq, queryDim]`.
    public func callAsFunction(_ x: Tensor, context: Tensor? = nil, causal: Bool = false) -> Tensor {
        let source = context ?? x
        let q = query(x)       // [B, Nq, H·D]
        let k = key(source)    // [B, Nk, H·D]
        let v = value(source)  // [B, Nk, H·D]
        let flops = 4 * Double(q.count) * Double(k.shape[1])  // Q·Kᵀ and P·V: 2·2·B·Nq·Nk·(H·D)
        let attended = Profiler.measure(context == nil ? .selfAttention : .crossAttention, flops: flops) {
            Tensor.attention(q: q, k: k, v: v, heads: heads, causal: causal)
        }
        return out(attended)
    }
}
