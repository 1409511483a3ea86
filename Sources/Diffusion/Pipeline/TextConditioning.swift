import Foundation

/// The UNet's text context for each model evaluation of one request, encoded once and shared by
/// every image of a batch.
public struct TextConditioning {
    /// One context per distinct set of texts: with guidance `[1 + k, 77·n, C]`, the negative prompt
    /// and then the k parts of the prompt (k = 1 unless it uses `AND`); without, `[1, 77·n, C]`.
    public let contexts: [Tensor]
    /// For evaluation `i`, the index into `contexts`.
    let contextIndex: [Int]
    /// Each prompt part's guidance weight (`PromptComposition`); `[1]` for a plain prompt.
    public let weights: [Double]
    /// Whether the UNet also runs on the negative prompt: guidance above 1, or a composed prompt.
    public let guidance: Bool
    /// The textual-inversion embeddings the texts used, by name, in the order first met.
    public let embeddings: [String]

    /// The context of model evaluation `i` (0-based); past the schedule's end, the last one.
    public func context(forEvaluation i: Int) -> Tensor {
        contexts[contextIndex[min(i, contextIndex.count - 1)]]
    }
}

/// A LoRA a request applied: its tag, the file it was read from, and the two multipliers.
public struct AppliedLoRA: Equatable, Sendable {
    public let name: String
    public let file: URL
    public let textEncoderMultiplier: Double
    public let unetMultiplier: Double

    public init(name: String, file: URL, textEncoderMultiplier: Double = 1, unetMultiplier: Double = 1) {
        self.name = name
        self.file = file
        self.textEncoderMultiplier = textEncoderMultiplier
        self.unetMultiplier = unetMultiplier
    }
}

/// A request made ready to render: validated, its LoRAs applied to the models and its text encoded.
/// `render` turns it into one image per seed without touching the text encoder again.
public struct PreparedRequest {
    public let request: GenerationRequest
    public let conditioning: TextConditioning
    /// The LoRAs the prompt's tags applied, in prompt order, each once.
    public let loras: [AppliedLoRA]
    /// The hires fix's second pass conditioning, when its prompt schedule differs (prompt editing
    /// counts the second pass's own steps, as A1111's); nil: `conditioning`.
    public var hiresConditioning: TextConditioning? = nil
    /// The hires fix's upscaler network, loaded once for the batch.
    public var hiresNetwork: Upscaler? = nil
}

/// One finished image and everything that made it.
public struct GenerationResult: Sendable {
    public let image: PixelImage
    /// The request for this one image: its own seed, `batchCount` 1. Running it again gives the same pixels.
    public let request: GenerationRequest
    /// The checkpoint it came from (file or folder).
    public let model: URL
    /// The LoRAs applied, with their files (for A1111's `Lora hashes`).
    public let loras: [AppliedLoRA]
    /// The textual-inversion embeddings the prompts used.
    public let embeddings: [String]
    /// What decoded the latents (`LatentDecoder.decoderName`).
    public let decoder: String
    /// Seconds from the first step to the decoded image.
    public let seconds: Double

    public init(image: PixelImage, request: GenerationRequest, model: URL, loras: [AppliedLoRA] = [],
                embeddings: [String] = [], decoder: String = "VAE", seconds: Double = 0) {
        self.image = image
        self.request = request
        self.model = model
        self.loras = loras
        self.embeddings = embeddings
        self.decoder = decoder
        self.seconds = seconds
    }
}
