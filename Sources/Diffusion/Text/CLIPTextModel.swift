import Foundation

/// The hyperparameters of the CLIP text transformer, read from transformers' `text_encoder/config.json`.
/// Defaults are SD1.5's (OpenAI CLIP ViT-L/14); unknown keys are ignored.
public struct CLIPTextConfig: ModelConfigFile, Equatable, Sendable {
    /// Width of the token embeddings and hidden states (`hidden_size`).
    public var hiddenSize = 768
    /// Width of each MLP's hidden layer (`intermediate_size`).
    public var intermediateSize = 3072
    /// Number of transformer layers (`num_hidden_layers`).
    public var layerCount = 12
    /// Attention heads per layer (`num_attention_heads`).
    public var headCount = 12
    /// Length of the position table, the most tokens one pass takes (`max_position_embeddings`).
    public var maxPositions = 77
    /// Size of the token table (`vocab_size`).
    public var vocabSize = 49408
    /// Activation of the MLPs (`hidden_act`): `quick_gelu` (SD1.x) or `gelu`.
    public var hiddenActivation = "quick_gelu"
    /// Epsilon of every LayerNorm (`layer_norm_eps`).
    public var layerNormEps: Float = 1e-5
    /// Width of the pooled projection (`projection_dim`). SD1.x does not use it.
    public var projectionDim = 768

    public static let modelName = "text encoder"
    public static let renamedSettings = [
        "num_hidden_layers": "layerCount",
        "num_attention_heads": "headCount",
        "max_position_embeddings": "maxPositions",
        "hidden_act": "hiddenActivation",
    ]

    /// SD1.5's text encoder.
    public init() {}

    /// Checks that the sizes fit together and the activation is one this engine has.
    /// - Throws: `ModelConfigError` naming the first setting that is not.
    public func validate() throws {
        func invalid(_ setting: String, _ value: Any, _ reason: String) -> ModelConfigError {
            .invalid(model: Self.modelName, setting: setting, value: "\(value)", reason: reason)
        }
        if !["quick_gelu", "gelu"].contains(hiddenActivation) {
            throw ModelConfigError.unsupported(model: Self.modelName, setting: "hidden_act",
                                               value: hiddenActivation, reason: "SD1.x's CLIP uses quick_gelu; gelu is also accepted")
        }
        let sizes = [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize), ("num_hidden_layers", layerCount),
                     ("num_attention_heads", headCount), ("max_position_embeddings", maxPositions), ("vocab_size", vocabSize)]
        for (key, value) in sizes where value <= 0 {
            throw invalid(key, value, "must be positive")
        }
        let limits = [("num_hidden_layers", layerCount, ModelConfigLimits.layers), ("vocab_size", vocabSize, ModelConfigLimits.vocabulary)]
            + sizes.filter { !["num_hidden_layers", "vocab_size"].contains($0.0) }.map { ($0.0, $0.1, ModelConfigLimits.width) }
        for (key, value, limit) in limits where value > limit {
            throw invalid(key, value, "must be at most \(limit)")
        }
        if hiddenSize % headCount != 0 { throw invalid("num_attention_heads", headCount, "\(hiddenSize) channels do not split into \(headCount) heads") }
    }
}

/// The CLIP text transformer that turns SD1.x prompts into the UNet's context (transformers
/// `CLIPTextModel`, `last_hidden_state`).
///
/// Token and position embeddings → pre-LayerNorm transformer layers with causal self-attention and
/// an MLP → final LayerNorm.
public struct CLIPTextModel: Sendable {
    public let config: CLIPTextConfig
    let tokenEmbedding: Embedding
    let positionEmbedding: Embedding
    let layers: [CLIPEncoderLayer]
    let finalLayerNorm: LayerNorm

    /// Builds the encoder over a checkpoint's weights, checking every tensor's presence and shape.
    /// - Parameters:
    ///   - config: the hyperparameters; SD1.5's by default.
    ///   - weights: the checkpoint scoped at `text_model` (keys such as
    ///     `embeddings.token_embedding.weight`, `encoder.layers.0.self_attn.q_proj.weight`).
    /// - Throws: `ModelConfigError` for a config this engine cannot build;
    ///   `WeightsError.missingTensor` / `.shapeMismatch` naming the first tensor that is absent
    ///   or shaped differently.
    public init(config: CLIPTextConfig = CLIPTextConfig(), weights: Weights) throws {
        try config.validate()
        self.config = config
        tokenEmbedding = try Embedding(weights.scoped("embeddings.token_embedding"), count: config.vocabSize, dim: config.hiddenSize)
        positionEmbedding = try Embedding(weights.scoped("embeddings.position_embedding"), count: config.maxPositions, dim: config.hiddenSize)
        layers = try (0..<config.layerCount).map {
            try CLIPEncoderLayer(weights.scoped("encoder.layers.\($0)"), config: config)
        }
        finalLayerNorm = try LayerNorm(weights.scoped("final_layer_norm"), dim: config.hiddenSize, eps: config.layerNormEps)
    }

    /// Encodes one chunk of token ids.
    /// - Parameters:
    ///   - tokens: ids from the tokenizer, BOS … EOS padded (77 for SD1.x); at most `maxPositions`.
    ///   - clipSkip: which layer's output to use, numbered as in A1111: 1 is the last layer, `n`
    ///     stops `n - 1` layers before it. The final LayerNorm is applied in every case, as A1111
    ///     does (diffusers' `clip_skip` is A1111's minus one).
    /// - Returns: `[1, tokens.count, hiddenSize]`.
    /// - Precondition: `1 ≤ clipSkip ≤ layerCount`, ids within the vocabulary and at most
    ///   `maxPositions` tokens; the REPL validates user input before it gets here.
    public func callAsFunction(tokens: [Int], clipSkip: Int = 1) -> Tensor {
        self(tokens: tokens, fixes: [], clipSkip: clipSkip)
    }

    /// The same, with textual-inversion vectors in place of the token embeddings at each fix's
    /// positions (`offset + 1`, after `BOS`), as A1111's `EmbeddingsWithFixes` puts them.
    public func callAsFunction(tokens: [Int], fixes: [EmbeddingFix], clipSkip: Int = 1) -> Tensor {
        precondition((1...config.layerCount).contains(clipSkip), "clip skip \(clipSkip) outside 1...\(config.layerCount)")
        precondition(!tokens.isEmpty && tokens.count <= config.maxPositions, "\(tokens.count) tokens for \(config.maxPositions) positions")
        // embeddings
        var words = tokenEmbedding(tokens)  // [T, C]
        for fix in fixes {
            precondition(fix.vectors.count == fix.count * config.hiddenSize && fix.offset + 1 + fix.count <= tokens.count,
                         "embedding '\(fix.name)' does not fit at \(fix.offset)")
            let start = (fix.offset + 1) * config.hiddenSize
            words.data.replaceSubrange(start..<(start + fix.vectors.count), with: fix.vectors)
        }
        var h = words + positionEmbedding(Array(0..<tokens.count))  // [T, C]
        h = h.reshaped([1, tokens.count, config.hiddenSize])  // [1, T, C]
        // transformer: A1111's hidden_states[-clipSkip] is the output of layer L - clipSkip + 1
        for layer in layers.prefix(config.layerCount - (clipSkip - 1)) {
            h = layer(h)
        }
        return finalLayerNorm(h)
    }
}

/// One pre-norm layer of CLIP's text transformer (transformers `CLIPEncoderLayer`).
struct CLIPEncoderLayer: Sendable {
    let layerNorm1: LayerNorm
    let selfAttention: Attention
    let layerNorm2: LayerNorm
    let fc1: Linear
    let fc2: Linear
    let quickGELU: Bool

    init(_ weights: Weights, config: CLIPTextConfig) throws {
        let width = config.hiddenSize
        layerNorm1 = try LayerNorm(weights.scoped("layer_norm1"), dim: width, eps: config.layerNormEps)
        selfAttention = try Attention(weights.scoped("self_attn"), queryDim: width, heads: config.headCount,
                                      headDim: width / config.headCount, projectionBias: true, naming: .clip)
        layerNorm2 = try LayerNorm(weights.scoped("layer_norm2"), dim: width, eps: config.layerNormEps)
        fc1 = try Linear(weights.scoped("mlp.fc1"), inputs: width, outputs: config.intermediateSize)
        fc2 = try Linear(weights.scoped("mlp.fc2"), inputs: config.intermediateSize, outputs: width)
        quickGELU = config.hiddenActivation == "quick_gelu"
    }

    /// - Parameter x: `[1, T, C]`.
    func callAsFunction(_ x: Tensor) -> Tensor {
        // causal self-attention
        let h = selfAttention(layerNorm1(x), causal: true) + x
        // MLP
        let inner = fc1(layerNorm2(h))  // [1, T, intermediate]
        return fc2(Profiler.measure(.activation) { quickGELU ? inner.quickGELU() : inner.gelu() }) + h
    }
}
