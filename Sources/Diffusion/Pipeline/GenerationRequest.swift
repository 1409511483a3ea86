import Foundation
import NN

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
    /// TCD's stochasticity γ, 0 ... 1 (diffusers' pipeline argument `eta`; the other samplers ignore it).
    public var eta: Double
    /// The timestep spacing, overriding the model's scheduler config (nil: as the model's config says).
    public var spacing: TimestepSpacing?
    /// Image-to-image: the picture sampling starts from, already `width` x `height`; nil for text to image.
    public var initImage: PixelImage?
    /// Image-to-image: how much of the schedule runs (A1111's "Denoising strength"); 1 repaints
    /// from pure noise, small values stay close to `initImage`.
    public var strength: Double
    /// Inpainting: where `initImage` is repainted (255) and kept (0), at the request's size; nil
    /// repaints everywhere. An inpainting checkpoint (a 9-channel UNet) always inpaints, with a full
    /// mask when there is none; an ordinary one blends its latents as diffusers does.
    public var mask: InpaintMask?
    /// Inpainting: A1111's "Mask blur", the Gaussian σ in pixels applied to the mask first.
    public var maskBlur: Int
    /// Inpainting: whether the original pixels are pasted back outside the blurred mask, as A1111
    /// does (off gives diffusers' pixels).
    public var inpaintPaste: Bool
    /// A second pass at a larger size (A1111's hires fix), text to image only; nil: none.
    public var hires: HiresFix?
    /// Encode and decode images larger than the VAE's `sample_size` in overlapping tiles, as
    /// diffusers' `enable_vae_tiling()`: the memory of a 512×512 decode at any size, slightly
    /// different pixels.
    public var vaeTiling: Bool
    /// DeepCache's interval (`DeepCache`): the whole UNet every that many steps, its shallow part
    /// on the others; nil: off, every step whole.
    public var deepCache: Int?
    /// The inputs of the UNet's and the VAE's matrix products (the text encoder, norms, softmax and
    /// the sampler stay fp32): bf16 only where `BF16Support.backend` has it.
    public var precision: MatmulPrecision

    public init(prompt: String, negativePrompt: String = "", seed: UInt64, steps: Int = 25, guidanceScale: Float = 7.5,
                width: Int = 512, height: Int = 512, sampler: Sampler = .pndm, batchCount: Int = 1, clipSkip: Int = 1,
                initImage: PixelImage? = nil, strength: Double = 0.75, spacing: TimestepSpacing? = nil, eta: Double = 0,
                mask: InpaintMask? = nil, maskBlur: Int = 4, inpaintPaste: Bool = true, hires: HiresFix? = nil,
                vaeTiling: Bool = false, deepCache: Int? = nil, precision: MatmulPrecision = .fp32) {
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
        self.initImage = initImage
        self.strength = strength
        self.spacing = spacing
        self.eta = eta
        self.mask = mask
        self.maskBlur = maskBlur
        self.inpaintPaste = inpaintPaste
        self.hires = hires
        self.vaeTiling = vaeTiling
        self.deepCache = deepCache
        self.precision = precision
    }

    /// Why image-to-image at this strength and step count changes nothing: diffusers' `get_timesteps`
    /// runs int(steps · strength) steps (and refuses none), so the result is the init image through
    /// the VAE. Nil when a step runs, or there is no init image. Not an error: transcripts made so replay.
    public var noStepReason: String? {
        guard initImage != nil, strength > 0, Int(Double(steps) * strength) < 1 else { return nil }
        let most = RequestLimits.steps.upperBound
        var fewest = Int(min((1 / strength).rounded(.up), Double(most + 1)))
        while fewest <= most && Int(Double(fewest) * strength) < 1 { fewest += 1 }
        let lowest = (100 / Double(steps)).rounded(.up) / 100
        let strengthFix = lowest >= 1 ? "use strength 1" : "use strength \(lowest) or more"
        return "strength \(strength) at \(steps) step\(steps == 1 ? "" : "s") runs no step (int(steps × strength) is 0), so the image is "
            + "the init image through the VAE: \(strengthFix)" + (fewest <= most ? ", or \(fewest) steps or more" : "")
    }

    /// Checks every field against `RequestLimits`, naming the first bad one and the accepted values.
    /// - Throws: `PipelineError.invalidRequest`.
    public func validate(textEncoderLayers: Int = 12) throws {
        let limits = RequestLimits.self
        for (name, value) in [("width", width), ("height", height)] where !limits.acceptsSide(value) {
            throw PipelineError.invalidRequest("\(name) \(value) is not allowed: use \(limits.sideDescription)")
        }
        guard limits.steps.contains(steps) else {
            throw PipelineError.invalidRequest("steps \(steps) is not allowed: use \(limits.steps.lowerBound) to \(limits.steps.upperBound)")
        }
        guard guidanceScale.isFinite, limits.guidance.contains(guidanceScale) else {
            throw PipelineError.invalidRequest("guidance scale \(guidanceScale) is not allowed: use \(limits.guidanceDescription) (7.5 is usual)")
        }
        guard limits.batch.contains(batchCount) else {
            throw PipelineError.invalidRequest("batch \(batchCount) is not allowed: use \(limits.batch.lowerBound) to \(limits.batch.upperBound)")
        }
        guard (1...textEncoderLayers).contains(clipSkip) else {
            throw PipelineError.invalidRequest("clip skip \(clipSkip) is not allowed: use 1 to \(textEncoderLayers) (1 = last layer, 2 is common for anime models)")
        }
        if let initImage {
            guard initImage.width == width, initImage.height == height else {
                throw PipelineError.invalidRequest("the init image is \(initImage.width)x\(initImage.height) but the request is \(width)x\(height): resize it first")
            }
            guard strength.isFinite, limits.strength.contains(strength), strength > 0 else {
                throw PipelineError.invalidRequest("strength \(strength) is not allowed: use more than 0 and at most 1 (0.75 is usual)")
            }
        }
        if let mask {
            guard initImage != nil else {
                throw PipelineError.invalidRequest("a mask needs an init image to repaint: set one with 'init FILE' or 'init N'")
            }
            guard mask.width == width, mask.height == height else {
                throw PipelineError.invalidRequest("the mask is \(mask.width)x\(mask.height) but the request is \(width)x\(height): resize it first")
            }
            guard mask.blurred(radius: maskBlur).repaintedCount > 0 else {
                throw PipelineError.invalidRequest("the mask is all black: nothing to repaint (white marks what is repainted)")
            }
        }
        guard limits.maskBlur.contains(maskBlur) else {
            throw PipelineError.invalidRequest("mask blur \(maskBlur) is not allowed: use \(limits.maskBlur.lowerBound) to \(limits.maskBlur.upperBound) pixels (4 is A1111's default)")
        }
        if let hires {
            guard initImage == nil else {
                throw PipelineError.invalidRequest("the hires fix is for text to image: 'unset init' or 'unset hires'")
            }
            for (name, value) in [("hires width", hires.width), ("hires height", hires.height)] where !limits.acceptsSide(value) {
                throw PipelineError.invalidRequest("\(name) \(value) is not allowed: use \(limits.sideDescription)")
            }
            guard hires.strength.isFinite, hires.strength > 0, hires.strength <= 1 else {
                throw PipelineError.invalidRequest("hires strength \(hires.strength) is not allowed: use more than 0 and at most 1 (0.7 is A1111's default)")
            }
            guard hires.steps == 0 || limits.steps.contains(hires.steps) else {
                throw PipelineError.invalidRequest("hires steps \(hires.steps) is not allowed: use 0 (as steps) to \(limits.steps.upperBound)")
            }
            let total = hires.schedule(requestSteps: steps).total
            guard total <= limits.steps.upperBound else {
                throw PipelineError.invalidRequest("hires strength \(hires.strength) with \(hires.steps == 0 ? steps : hires.steps) second-pass steps "
                                                   + "needs a \(total)-step schedule, over \(limits.steps.upperBound): raise hires strength or lower hires steps")
            }
        }
        if let deepCache, !limits.deepCache.contains(deepCache) {
            throw PipelineError.invalidRequest("DeepCache interval \(deepCache) is not allowed: use \(limits.deepCacheDescription)")
        }
        if precision == .bf16, case .failure(let unavailable) = BF16Support.detected {
            throw PipelineError.invalidRequest("bf16 is not available here: \(unavailable); use fp32")
        }
        guard eta.isFinite, (0...1).contains(eta) else {
            throw PipelineError.invalidRequest("eta \(eta) is not allowed: use 0 to 1 (TCD's authors recommend 0.3)")
        }
        if seed > UInt64.max - UInt64(batchCount - 1) {
            throw PipelineError.invalidRequest("seed \(seed) + batch \(batchCount) would pass 2^64-1")
        }
    }
}

/// The one table of what a request may ask for; the REPL's settings and the engine's validation
/// both read it.
public enum RequestLimits {
    /// Inference steps. A sampler may accept fewer (`Scheduler` says which for its spacing).
    public static let steps = 1...1000
    /// Classifier-free guidance scale; at most 1 turns guidance off.
    public static let guidance: ClosedRange<Float> = 0...50
    /// Image side lengths, in pixels, multiples of `sideMultiple` (the VAE's factor).
    public static let side = 64...2048
    public static let sideMultiple = 8
    /// Images in one batch (`gen N`).
    public static let batch = 1...64
    /// Image-to-image strength; 0 would run no step at all and is refused.
    public static let strength: ClosedRange<Double> = 0...1
    /// Inpainting mask blur σ, in pixels.
    public static let maskBlur = 0...64
    /// DeepCache's interval: 1 would run every step whole and cache nothing.
    public static let deepCache = 2...RequestLimits.steps.upperBound

    public static func acceptsSide(_ value: Int) -> Bool { side.contains(value) && value % sideMultiple == 0 }

    /// "a multiple of 8 from 64 to 2048".
    public static var sideDescription: String {
        "a multiple of \(sideMultiple) from \(side.lowerBound) to \(side.upperBound)"
    }

    /// "2 to 1000 (3 is usual), or off".
    public static var deepCacheDescription: String {
        "\(deepCache.lowerBound) to \(deepCache.upperBound) (3 is usual), or off"
    }

    /// "0 to 50".
    public static var guidanceDescription: String {
        "\(Int(guidance.lowerBound)) to \(Int(guidance.upperBound))"
    }
}

/// Errors a caller can act on.
public enum PipelineError: Error, Equatable, CustomStringConvertible {
    case invalidRequest(String)
    case cancelled
    /// A model part produced NaN or infinite values (A1111's `NansException`): the message names
    /// the part, the files that may hold the broken weights and what to try.
    case nonFinite(String)

    public var description: String {
        switch self {
        case let .invalidRequest(message), let .nonFinite(message): return message
        case .cancelled: return "generation cancelled"
        }
    }
}

extension Sampler: Codable {}
