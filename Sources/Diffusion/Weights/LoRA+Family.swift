import Foundation

/// Telling which model a LoRA was trained for from its names and shapes, so that an SDXL or SD2.x
/// LoRA is refused with what it is rather than with the first layer that does not fit.
extension LoRAFile {
    /// The kind of the file ("an SDXL LoRA", "an SD2.x LoRA") and the evidence, or nil when nothing in
    /// it belongs to another model. `contextWidth` is the model's text-embedding width: a LoRA on a
    /// cross-attention key reads embeddings of its own width (SD1.x 768, SD2.x 1024, SDXL 2048); nil
    /// checks the names only.
    static func otherFamily(names: [String], shapes: (String) -> [Int]?, contextWidth: Int?) -> (kind: String, evidence: String)? {
        let sdxl = "an SDXL LoRA", sd2 = "an SD2.x LoRA"
        if let key = names.first(where: { $0.hasPrefix("lora_te1_") || $0.hasPrefix("lora_te2_") || $0.contains("text_encoder_2.") }) {
            return (sdxl, "it has '\(key)', a second text encoder")
        }
        // SD1.x and SD2.x have one transformer block per attention; SDXL has 2 or 10.
        if let key = names.first(where: { (index(after: "transformer_blocks", in: $0) ?? 0) > 0 }) {
            return (sdxl, "it has '\(key)', a second transformer block")
        }
        if let key = names.first(where: { $0.contains("add_embedding") || $0.contains("label_emb") }) {
            return (sdxl, "it has '\(key)', the size conditioning")
        }
        // CLIP ViT-L (SD1.x) has 12 layers; SD2.x's OpenCLIP ViT-H 23 of 24 in use.
        if let key = names.first(where: { isTextEncoder($0) && (index(after: "layers", in: $0) ?? 0) >= 12 }) {
            return (sd2, "it has '\(key)', past CLIP ViT-L's 12 layers")
        }
        guard let contextWidth else { return nil }
        for name in names where (name.contains("attn2_to_k") || name.contains("attn2.to_k")) && isDown(name) {
            guard let width = shapes(name)?.dropFirst().reduce(1, *), width != contextWidth else { continue }
            if width == 1024 { return (sd2, "'\(name)' reads 1024-wide text embeddings") }
            if width == 2048 { return (sdxl, "'\(name)' reads 2048-wide text embeddings") }
        }
        return nil
    }

    private static func isTextEncoder(_ name: String) -> Bool {
        name.hasPrefix("lora_te_") || name.hasPrefix("text_encoder.")
    }

    private static func isDown(_ name: String) -> Bool {
        name.hasSuffix(".lora_down.weight") || name.hasSuffix(".lora_A.weight") || name.hasSuffix(".lora.down.weight")
    }

    /// The number after `word_` or `word.` in `name` (`transformer_blocks_1_attn1` gives 1).
    private static func index(after word: String, in name: String) -> Int? {
        for separator in ["_", "."] {
            guard let range = name.range(of: word + separator) else { continue }
            let digits = name[range.upperBound...].prefix(while: \.isNumber)
            if let value = Int(digits) { return value }
        }
        return nil
    }
}

extension LoRAFile {
    /// Throws `.otherModel` naming the model the file is for, when its shapes say so against
    /// `base` (whose cross-attention width is read from its first `attn2.to_k`).
    func refuseOtherFamily(base: TensorSource) throws {
        let width = base.keys.first { $0.hasSuffix("attn2.to_k.weight") }.flatMap { base.shape(of: $0)?.last }
        if let (kind, evidence) = Self.otherFamily(names: file.names, shapes: { self.file.tensorInfo($0)?.shape }, contextWidth: width) {
            throw LoRAError.otherModel(path: url.path, kind: kind, evidence: evidence)
        }
    }
}
