import Diffusion
import Foundation
import Imaging

/// `seed N` or `seed random` (a fresh seed drawn for each `gen`).
public enum SeedMode: Equatable, Sendable {
    case fixed(UInt64)
    case random
}

/// `set vae-tiling auto|on|off`: images over the VAE's tile (512 for SD1.5) encoded and decoded in
/// tiles, as diffusers' `enable_vae_tiling()`: less memory, slightly different pixels.
public enum VAETiling: String, CaseIterable, Sendable {
    /// In tiles in low-memory mode, whole otherwise: the first picture over 512 a side makes it
    /// explicit (`Session.settleVAETiling`), so the transcript can record it.
    case auto
    case on
    case off
}

/// `set preview auto|sixel|off`.
public enum PreviewMode: String, CaseIterable, Sendable {
    /// Sixel when the terminal answers the DA1 query with attribute 4, and stdout is a terminal.
    case auto
    case sixel
    case off
}

/// What the next `gen` asks for, before a seed is drawn and the style applied.
public struct RequestDefaults: Equatable, Sendable {
    public var prompt = ""
    public var negative = ""
    public var style = "none"
    public var seed: SeedMode = .random
    public var steps = 25
    public var cfg: Float = 7.5
    public var width = 512
    public var height = 512
    public var sampler = Sampler.default
    /// 1 uses CLIP's last layer; 2 the one before it (A1111's "Clip skip").
    public var clipSkip = 1
    /// Images per `gen` when no count is given.
    public var batch = 1
    /// Image-to-image: the picture sampling starts from (`init FILE` or `init N`); nil for text to image.
    public var initImage: InitImage?
    /// Image-to-image: A1111's "Denoising strength".
    public var strength = 0.75
    /// The timestep spacing, overriding the model's scheduler config; nil: the model's.
    public var spacing: TimestepSpacing?
    /// TCD's stochasticity γ (its authors' 0.3); the other samplers ignore it.
    public var eta = 0.3
    /// Inpainting: the mask file (white repaints; a grayscale image or a PNG's alpha), absolute.
    public var mask: String?
    /// Inpainting: A1111's "Mask blur" in pixels (its default, 4).
    public var maskBlur = 4
    /// Inpainting: paste the original back outside the blurred mask, as A1111 does.
    public var inpaintPaste = true
    /// Turn a JPEG init image or mask as its EXIF orientation says, as A1111 does. Off by default:
    /// transcripts recorded before it replay the pixels as stored.
    public var exifOrientation = false
    /// Encode and decode images larger than the VAE's tile (512 for SD1.5) in tiles, as diffusers'
    /// `enable_vae_tiling()`: a 1024×1024 decode in the memory of a 512×512 one.
    public var vaeTiling = VAETiling.auto
    /// The hires fix: the final size as a scale of `size` or as a size; nil: off.
    public var hires: HiresSize?
    /// The hires fix's second pass steps; 0: as `steps`.
    public var hiresSteps = 0
    /// The hires fix's "Denoising strength" (A1111's default 0.7).
    public var hiresStrength = 0.7
    public var hiresUpscaler = HiresUpscaler.latent
    /// The hires fix's upscaler network file (absolute), used instead of `hiresUpscaler` when set.
    public var hiresModel: String?
    /// DeepCache's interval; nil: off.
    public var deepCache: Int?
    /// The UNet's and VAE's matrix products: fp32, bf16, or bf16 for drafts where the CPU has it.
    public var precision = PrecisionChoice.fp32

    /// The hires fix for a first pass of `width` x `height`, or nil when it is off.
    public var hiresFix: HiresFix? {
        hires.map { size in
            let (w, h) = size.target(width: width, height: height)
            return HiresFix(width: w, height: h, steps: hiresSteps, strength: hiresStrength, upscaler: hiresUpscaler,
                            upscalerModel: hiresModel)
        }
    }

    public init() {}
}

/// `set hires 2` (a scale) or `set hires 1024x768` (a size).
public enum HiresSize: Equatable, Sendable, CustomStringConvertible {
    case scale(Double)
    case size(width: Int, height: Int)

    /// The final size: a scale multiplies the first pass's sides and rounds them down to the
    /// latents' multiple of 8, as A1111's latent size `int(side · scale) // 8` does.
    public func target(width: Int, height: Int) -> (width: Int, height: Int) {
        switch self {
        case .scale(let factor):
            return (Int(Double(width) * factor) / 8 * 8, Int(Double(height) * factor) / 8 * 8)
        case .size(let w, let h):
            return (w, h)
        }
    }

    public var description: String {
        switch self {
        case .scale(let factor): return formatNumber(Float(factor))
        case .size(let w, let h): return "\(w)x\(h)"
        }
    }
}

/// Where an init image comes from.
public enum InitImage: Equatable, Sendable, CustomStringConvertible {
    /// A PNG or JPEG file (the path as resolved, absolute in transcripts).
    case file(String)
    /// Image N of this session's history.
    case history(Int)

    public var description: String {
        switch self {
        case .file(let path): return path
        case .history(let index): return "image \(index)"
        }
    }
}

/// Where and how finished images go.
public struct OutputSettings: Equatable, Sendable {
    public var preview: PreviewMode = .auto
    public var outdir = "generated_images"
    public var jpegQuality = 92
    /// Whether `gen` saves each image at once (as `save` would).
    public var autosave = true

    public init() {}
}

/// What the session reads: the model, how it is held in memory, and the files and folders that
/// styles, LoRAs and embeddings come from.
public struct ResourceSettings: Equatable, Sendable {
    /// The model path the user asked for, or nil for discovery.
    public var model: String?
    /// The model a replayed transcript's `# model` line recorded, used instead of discovery while
    /// `model` is nil (`ScriptModelPin`); nil outside replays.
    public var replayedModel: String?
    /// What the model is looked up by: the user's path, else the replayed one, else discovery (nil).
    public var modelToLoad: String? { model ?? replayedModel }
    public var memory: MemoryMode = .auto
    /// A user `styles.csv` (A1111 format), or nil for the built-in presets only.
    public var stylesFile: String?
    /// Where `<lora:NAME>` looks first; nil for the default folders only.
    public var loraDir: String?
    /// Where textual-inversion embeddings are looked for first; nil for the defaults only.
    public var embeddingsDir: String?
    /// The decoder to use instead of the model's VAE (a TAESD file or folder); nil: the model's.
    public var vae: String?
    /// Whether PyTorch pickles are read (never run) or refused; `set pickles` also makes it the
    /// process's `PicklePolicy.current`, which every loader consults.
    public var pickles: PicklePolicy = .environmentDefault
    /// Where `upscale NAME` looks first; nil for A1111's folders only.
    public var upscalerDir: String?
    /// The side of the tiles `upscale` runs the network over (A1111's "Tile size for ESRGAN
    /// upscalers"); 0 runs the whole image at once. Memory follows the tile; the result matches an
    /// untiled run within one 8-bit level.
    public var upscaleTile = TileOptions().tile
    /// `set mode draft`: the few-step LoRA and sampling that override the request; nil: final.
    public var draft: DraftPreset?

    public init() {}
}

/// Everything `set` can change, in three groups kept apart: the request, the output, the resources.
public struct SessionSettings: Equatable, Sendable {
    public var request = RequestDefaults()
    public var output = OutputSettings()
    public var resources = ResourceSettings()

    public init() {}
}

/// One `gen`'s request as the session resolved it: the engine's request (style applied, a concrete
/// seed, `batchCount` images) and the style, which the engine never sees.
public struct StyledRequest: Equatable, Sendable {
    public var engine: GenerationRequest
    /// The style that was applied, recorded in the recipe; `none` means the prompt is used as typed.
    public var style: String
    /// The prompt and negative as typed, when the style changed them (nil: the engine's are as typed).
    public var typedPrompt: String?
    public var typedNegative: String?
    /// Where the engine's init image and mask came from (a file's path, or "image N"), for the recipe.
    public var initSource: String?
    public var maskSource: String?
    /// The hires fix's size as set (a scale or a size), for A1111's `Hires upscale` or `Hires resize`.
    public var hiresSize: HiresSize?
    /// The init image or mask files were turned by their EXIF orientation (`set exif-rotate on`).
    public var turnedByEXIF = false

    public init(engine: GenerationRequest, style: String = "none", typedPrompt: String? = nil, typedNegative: String? = nil,
                initSource: String? = nil, maskSource: String? = nil, hiresSize: HiresSize? = nil) {
        self.engine = engine
        self.style = style
        self.typedPrompt = typedPrompt
        self.typedNegative = typedNegative
        self.initSource = initSource
        self.maskSource = maskSource
        self.hiresSize = hiresSize
    }

    /// The request of image `offset` of the batch: its own seed, one image.
    public func image(_ offset: Int) -> StyledRequest {
        var single = self
        single.engine.seed = engine.seed &+ UInt64(offset)
        single.engine.batchCount = 1
        return single
    }
}

/// An image made in this session, with the request that made it and what the engine applied.
public struct SessionImage: Sendable {
    /// 1-based number in the session (`show N`, `#=> image N`).
    public let index: Int
    /// The resolved request of this one image (style applied, its own seed, one image).
    public let request: StyledRequest
    public let pixels: RGBImage
    /// The checkpoint, for the saved recipe's model name and hash (nil from test doubles).
    public let model: ModelIdentity?
    /// The LoRAs the prompt's tags applied, with their files (A1111's `Lora hashes`).
    public let loras: [AppliedLoRA]
    /// Seconds the engine took for this image.
    public let seconds: Double
    /// What decoded the latents ("VAE", "TAESD").
    public var decoder = "VAE"
    /// The VAE or TAESD file `set vae` chose (A1111's `VAE` and `VAE hash`); nil: the model's own.
    public var vae: URL?
    /// A draft's request with the user's own settings (`final N` renders it); nil for a final image.
    public var finalRequest: StyledRequest?
    /// SHA-256 of the RGB bytes, 64 hex digits.
    public let sha256: String
    public var savedPaths: [String] = []
    /// What upscaled this image from another (`upscale`); nil for a generated image.
    public var upscale: UpscaleRecord?

    public var record: ResultRecord {
        .image(index: index, seed: request.engine.seed, width: pixels.width, height: pixels.height, sha256: sha256)
    }
}

/// The session's images, and which of them the last `gen` made (what `save` writes).
public struct ImageHistory: Sendable {
    public private(set) var images: [SessionImage] = []
    /// Indexes into `images` of the last `gen`'s images.
    public private(set) var lastBatch: [Int] = []
    /// The last command's grid sheet (what `save` writes after `grid`); nil after any other.
    public internal(set) var sheet: GridSheet?

    public init() {}

    mutating func startBatch() {
        lastBatch = []
        sheet = nil
    }

    /// Adds an image of the current batch; returns its position in `images`.
    @discardableResult
    mutating func append(_ image: SessionImage) -> Int {
        images.append(image)
        lastBatch.append(images.count - 1)
        return images.count - 1
    }

    mutating func addSavedPaths(_ paths: [String], at position: Int) {
        images[position].savedPaths += paths
    }

    var nextIndex: Int { images.count + 1 }
}
