import Foundation

/// One 77-token window of a prompt: `BOS`, 75 prompt tokens (padded with `EOS`), `EOS`, and the
/// weight of each token (1 for `BOS`, `EOS` and padding).
public struct PromptChunk: Equatable, Sendable {
    /// 77 token ids.
    public var tokens: [Int]
    /// 77 weights, one per token.
    public var weights: [Float]
    /// How many of the 75 inner positions hold prompt tokens; the rest are padding.
    public var promptTokenCount: Int
    /// Textual-inversion vectors that replace the token embeddings at their positions.
    public var fixes: [EmbeddingFix] = []

    /// A chunk of nothing: `BOS` then 76 × `EOS`, all weights 1 — what the empty prompt gives, and
    /// what A1111's `empty_chunk()` pads a shorter batch member with.
    public static func empty(_ tokenizer: CLIPTokenizer) -> PromptChunk {
        PromptChunk(tokens: [tokenizer.startToken] + Array(repeating: tokenizer.endToken, count: PromptChunker.chunkLength + 1),
                    weights: Array(repeating: 1, count: PromptChunker.chunkLength + 2),
                    promptTokenCount: 0)
    }

    /// True when every weight is exactly 1, so emphasis leaves the encoder's output unchanged.
    public var isUnweighted: Bool { weights.allSatisfy { $0 == 1 } }
}

/// A prompt split into chunks, with its length in tokens.
public struct ChunkedPrompt: Equatable, Sendable {
    /// At least one chunk; each is encoded on its own and the results are joined along the token
    /// axis.
    public var chunks: [PromptChunk]
    /// The number of prompt tokens, not counting `BOS`, `EOS`, padding or `BREAK`.
    ///
    /// A1111's counter differs once a prompt has several chunks: it counts every chunk but the
    /// last as a full 75.
    public var tokenCount: Int
}

/// Splits weighted prompt fragments into 75-token chunks as A1111's
/// `FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line` does (`modules/sd_hijack_clip.py`):
///
/// - each fragment is tokenized on its own (no `BOS`/`EOS`), and each of its tokens carries the
///   fragment's weight;
/// - tokens fill a chunk up to 75; the next token starts a new one;
/// - **comma backtrack**: when a chunk is full and the next token is not a comma, and the chunk's
///   last comma is at most `commaBacktrack` tokens (A1111's `comma_padding_backtrack`, 20 by
///   default; 0 turns it off) from its end, the tokens after that comma move to the next chunk, so a
///   phrase between commas is not cut in two; the current chunk is padded instead;
/// - `BREAK` ends the current chunk, padded, even when it is empty (so a prompt starting with `BREAK`
///   begins with an all-padding chunk, as in A1111);
/// - each chunk becomes `BOS + 75 tokens (padded with EOS) + EOS`, with weight 1 on `BOS`, `EOS` and
///   padding;
/// - an empty prompt is one chunk of padding.
///
/// Nothing is ever dropped: a prompt of any length gives as many chunks as it needs. Textual-inversion
/// embeddings, which A1111 also places here, are not supported.
public struct PromptChunker: Sendable {
    /// Prompt tokens per chunk; with `BOS` and `EOS` a chunk is the encoder's 77.
    public static let chunkLength = CLIPTokenizer.contextLength - 2

    public let tokenizer: CLIPTokenizer
    /// A1111's `comma_padding_backtrack`: how far back from a full chunk's end a comma may be for the
    /// words after it to move to the next chunk. 0 disables it.
    public var commaBacktrack: Int
    /// The textual-inversion embeddings whose names the prompt may use.
    public var embeddings = EmbeddingLibrary.empty

    /// - Parameters:
    ///   - tokenizer: the CLIP tokenizer of the model.
    ///   - commaBacktrack: A1111's `comma_padding_backtrack`; its default is 20.
    public init(tokenizer: CLIPTokenizer, commaBacktrack: Int = 20) {
        self.tokenizer = tokenizer
        self.commaBacktrack = commaBacktrack
    }

    /// Parses `prompt` (A1111 syntax, see `PromptParser`) and chunks it.
    ///
    /// - Throws: `PromptError.invalidWeight` for a malformed `(text:weight)`.
    public func chunk(_ prompt: String) throws -> ChunkedPrompt {
        try chunk(try PromptParser.parse(prompt))
    }

    /// Chunks already parsed fragments.
    ///
    /// An embedding's name (matched by its tokens, see `EmbeddingLibrary`) becomes its vectors: as
    /// many positions as it has vectors, holding token 0 and a fix, moved whole to the next chunk
    /// when they do not fit (A1111's `tokenize_line`).
    /// - Throws: the `EmbeddingError` of an embedding the prompt calls whose file cannot be used.
    public func chunk(_ fragments: [PromptFragment]) throws -> ChunkedPrompt {
        let length = Self.chunkLength
        var chunks: [PromptChunk] = []
        var tokens: [Int] = []
        var weights: [Float] = []
        var lastComma = -1
        var tokenCount = 0
        var fixes: [EmbeddingFix] = []

        func finishChunk() {
            let count = tokens.count
            let padding = length - count
            chunks.append(PromptChunk(
                tokens: [tokenizer.startToken] + tokens + Array(repeating: tokenizer.endToken, count: padding) + [tokenizer.endToken],
                weights: [1] + weights + Array(repeating: 1, count: padding) + [1],
                promptTokenCount: count, fixes: fixes))
            tokens.removeAll(keepingCapacity: true)
            weights.removeAll(keepingCapacity: true)
            fixes.removeAll()
            lastComma = -1
        }

        for fragment in fragments {
            guard case .text(let text, let weight) = fragment else {
                finishChunk()
                continue
            }
            let textTokens = tokenizer.tokenize(text)
            var position = 0
            while position < textTokens.count {
                let token = textTokens[position]
                tokenCount += 1
                if token == tokenizer.commaToken {
                    lastComma = tokens.count
                } else if commaBacktrack != 0, tokens.count == length, lastComma != -1,
                          tokens.count - lastComma <= commaBacktrack {
                    // Move the words after the last comma to the next chunk.
                    let movedTokens = Array(tokens[(lastComma + 1)...])
                    let movedWeights = Array(weights[(lastComma + 1)...])
                    tokens.removeSubrange((lastComma + 1)...)
                    weights.removeSubrange((lastComma + 1)...)
                    finishChunk()
                    tokens = movedTokens
                    weights = movedWeights
                }
                if tokens.count == length { finishChunk() }
                guard let (embedding, nameLength) = try embeddings.match(textTokens, at: position) else {
                    tokens.append(token)
                    weights.append(Float(weight))
                    position += 1
                    continue
                }
                if tokens.count + embedding.count > length { finishChunk() }
                fixes.append(EmbeddingFix(name: embedding.name, offset: tokens.count, vectors: embedding.vectors, count: embedding.count))
                tokens += Array(repeating: 0, count: embedding.count)
                weights += Array(repeating: Float(weight), count: embedding.count)
                tokenCount += embedding.count - 1
                position += nameLength
            }
        }
        if !tokens.isEmpty || chunks.isEmpty { finishChunk() }
        return ChunkedPrompt(chunks: chunks, tokenCount: tokenCount)
    }

    /// Pads the shorter of two chunk lists with empty chunks so both encode to the same length:
    /// A1111 does this for the prompts of one batch (`forward`, with `empty_chunk()`) and, with its
    /// `pad_cond_uncond` option, between a prompt and its negative prompt.
    public func padToSameLength(_ a: ChunkedPrompt, _ b: ChunkedPrompt) -> (ChunkedPrompt, ChunkedPrompt) {
        let padded = padToSameLength([a, b])
        return (padded[0], padded[1])
    }

    /// Pads every prompt with empty chunks to the chunk count of the longest, so they can share one
    /// UNet batch (the negative prompt and the parts of an `AND` prompt).
    public func padToSameLength(_ prompts: [ChunkedPrompt]) -> [ChunkedPrompt] {
        let count = prompts.map(\.chunks.count).max() ?? 0
        return prompts.map { prompt in
            var prompt = prompt
            prompt.chunks += Array(repeating: PromptChunk.empty(tokenizer), count: count - prompt.chunks.count)
            return prompt
        }
    }

    /// The chunk as readable text for the REPL: its prompt tokens decoded, each run of equal weight
    /// other than 1 shown as `(text:weight)`.
    public func text(of chunk: PromptChunk) -> String {
        var pieces: [String] = []
        var runStart = 1
        let end = 1 + chunk.promptTokenCount
        while runStart < end {
            if let fix = chunk.fixes.first(where: { $0.offset + 1 == runStart }) {
                let weight = chunk.weights[runStart]
                pieces.append(weight == 1 ? "<\(fix.name)>" : "(<\(fix.name)>:\(formatWeight(weight)))")
                runStart += fix.count
                continue
            }
            var runEnd = runStart + 1
            while runEnd < end, chunk.weights[runEnd] == chunk.weights[runStart],
                  !chunk.fixes.contains(where: { $0.offset + 1 == runEnd }) { runEnd += 1 }
            let text = tokenizer.decode(Array(chunk.tokens[runStart..<runEnd]), skippingSpecialTokens: false)
            let weight = chunk.weights[runStart]
            pieces.append(weight == 1 ? text : "(\(text):\(formatWeight(weight)))")
            runStart = runEnd
        }
        return pieces.joined(separator: " ")
    }

    private func formatWeight(_ weight: Float) -> String {
        let rounded = (Double(weight) * 1000).rounded() / 1000
        return rounded == rounded.rounded() ? String(format: "%.1f", rounded) : String(rounded)
    }
}
