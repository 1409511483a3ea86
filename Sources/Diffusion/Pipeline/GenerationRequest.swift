import Foundation

/// One generation: everything that determines the pixels, and nothing else.
///
/// The same request on the same model gives bit-identical pixels, in this process or another, and the
/// same picture as diffusers' `StableDiffusionPipeline` with `torch.Generator("cpu").manual_seed(seed)`.
public struct GenerationRequest: Sendable, Codable, Equatable {
    /// The prompt, with A1111 weighting syntax (`(word:1.3)`, `[word]`, `BREAK`). Styles are applied
    /// before this point: the engine sees the final text.
    public var prompt: String
    /// The negative prompt; empty means the unconditional embedding of the empty prompt, as diffusers.
    public var negativePrompt: String
    /// The seed of the first image; image `i` of a batch uses `seed + i`.
    public var seed: UInt64
    public var steps: Int
    /// Classifier-free guidance scale; at most 1 skips the unconditional pass, as diffusers does.
    public var guidanceScale: Float
    public var width: Int
    public var height: Int
    public var sampler: Sampler
    /// How many images, with seeds `seed`, `seed + 1`, …
    public var batchCount: Int
    /// CLIP skip numbered as in A1111: 1 is the last layer.
    public var clipSkip: Int

    public init(prompt: String, negativePrompt: String = "", seed: UInt64, steps: Int = 25, guidanceScale: Float = 7.5,
                width: Int = 512, height: Int = 512, sampler: Sampler = .pndm, batchCount: Int = 1, clipSkip: Int = 1) {
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.seed = seed
        self.steps = steps
        self.guidanceScale = guidanceScale
        self.width = width
        self.height = height
        self.sampler = sampler
        self.batchCount = batchCount
        self.clipSkip = clipSkip
    }

    /// The accepted side lengths, in pixels (multiples of 8).
    public static let sizeRange = 64...2048

    /// Checks every field, naming the first bad one and the accepted values.
    /// - Throws: `PipelineError.invalidRequest`.
    public func validate(textEncoderLayers: Int = 12) throws {
        for (name, value) in [("width", width), ("height", height)] {
            guard Self.sizeRange.contains(value), value % 8 == 0 else {
                throw PipelineError.invalidRequest("\(name) \(value) is not allowed: use a multiple of 8 from \(Self.sizeRange.lowerBound) to \(Self.sizeRange.upperBound)")
            }
        }
        guard (1...1000).contains(steps) else { throw PipelineError.invalidRequest("steps \(steps) is not allowed: use 1 to 1000") }
        guard guidanceScale.isFinite, guidanceScale >= 0, guidanceScale <= 100 else {
            throw PipelineError.invalidRequest("guidance scale \(guidanceScale) is not allowed: use 0 to 100 (7.5 is usual)")
        }
        guard (1...1000).contains(batchCount) else { throw PipelineError.invalidRequest("batch \(batchCount) is not allowed: use 1 to 1000") }
        guard (1...textEncoderLayers).contains(clipSkip) else {
            throw PipelineError.invalidRequest("clip skip \(clipSkip) is not allowed: use 1 to \(textEncoderLayers) (1 = last layer, 2 is common for anime models)")
        }
        if seed > UInt64.max - UInt64(batchCount - 1) {
            throw PipelineError.invalidRequest("seed \(seed) + batch \(batchCount) would pass 2^64-1")
        }
    }
}

/// Errors a caller can act on.
public enum PipelineError: Error, Equatable, CustomStringConvertible {
    case invalidRequest(String)
    case cancelled

    public var description: String {
        switch self {
        case let .invalidRequest(message): return message
        case .cancelled: return "generation cancelled"
        }
    }
}

extension Sampler: Codable {}
