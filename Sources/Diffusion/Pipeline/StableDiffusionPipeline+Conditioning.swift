import Foundation

extension StableDiffusionPipeline {
    /// The chunks of `prompt` as the text encoder will see them, for the REPL's `tokens` command.
    public func chunks(of prompt: String) throws -> ChunkedPrompt {
        useEmbeddings()
        return try chunker.chunk(prompt)
    }

    /// The text conditioning: `cond` for the prompt and, when guidance is on, `uncond` for the negative
    /// prompt, both `[1, 77·n, C]` with the same `n` (the shorter is padded with empty chunks, as A1111).
    public func encodeText(prompt: String, negativePrompt: String, clipSkip: Int, guidance: Bool) throws -> (cond: Tensor, uncond: Tensor?) {
        var cond = try chunker.chunk(prompt)
        let encode = chunkEncoder(clipSkip: clipSkip)
        guard guidance else { return (PromptConditioning.encode(cond, chunks: encode), nil) }
        var uncond = try chunker.chunk(negativePrompt)
        (cond, uncond) = chunker.padToSameLength(cond, uncond)
        return (PromptConditioning.encode(cond, chunks: encode), PromptConditioning.encode(uncond, chunks: encode))
    }

    /// The UNet's context for every model evaluation of `request`: A1111's composition (`AND`,
    /// `:weight`, see `PromptComposition`) splits the prompt into parts, and its prompt editing and
    /// alternation (`PromptSchedule`) pick each part's text, and the negative prompt's, per evaluation.
    ///
    /// Each distinct set of texts is encoded once, all before sampling starts, so a prompt error
    /// surfaces before any work. The texts of one context are padded to the same number of chunks
    /// with empty chunks. A plain prompt gives one context, the same as `encodeText`.
    /// - Throws: a prompt error (`PromptError`).
    public func conditioning(for request: GenerationRequest) throws -> TextConditioning {
        // LoRA tags are not text (`useLoRAs` applies them); A1111 removes them before anything else.
        let parts = PromptComposition.parts(of: try ExtraNetworks.parse(request.prompt).prompt)
        let guidance = request.guidanceScale > 1 || !PromptComposition.isPlain(parts)
        let positives = parts.map { PromptSchedule($0.text, steps: request.steps) }
        let negative = PromptSchedule(request.negativePrompt, steps: request.steps)
        let encode = chunkEncoder(clipSkip: request.clipSkip)
        var contexts: [Tensor] = []
        var known: [[String]: Int] = [:]
        var forEvaluation: [Int] = []
        var embeddings: [String] = []
        // A sampler makes at most steps + 1 evaluations (PNDM's first timestep runs twice).
        for evaluation in 0...request.steps {
            // diffusers' batch order: [negative, positive]; the composed parts follow in order.
            let schedules = guidance ? [negative] + positives : positives
            let texts = schedules.map { $0.entries[$0.entryIndex(forEvaluation: evaluation)].prompt }
            if let index = known[texts] {
                forEvaluation.append(index)
                continue
            }
            let chunked = chunker.padToSameLength(try texts.map { try chunker.chunk($0) })
            for fix in chunked.flatMap({ $0.chunks.flatMap(\.fixes) }) where !embeddings.contains(fix.name) {
                embeddings.append(fix.name)
            }
            contexts.append(Tensor.concatBatch(chunked.map { PromptConditioning.encode($0, chunks: encode) }))
            known[texts] = contexts.count - 1
            forEvaluation.append(contexts.count - 1)
        }
        return TextConditioning(contexts: contexts, contextIndex: forEvaluation, weights: parts.map(\.weight),
                                guidance: guidance, embeddings: embeddings)
    }

    /// One 77-token chunk through the text encoder, counted in `textEncoderEvaluations`.
    private func chunkEncoder(clipSkip: Int) -> (PromptChunk) -> Tensor {
        { chunk in
            self.textEncoderEvaluations += 1
            return self.textEncoder(tokens: chunk.tokens, fixes: chunk.fixes, clipSkip: clipSkip)
        }
    }
}
