import Foundation

/// A1111's hires fix: after the picture at the request's size, a second img2img pass at a larger
/// size over the first pass's latents (resized in latent space) or pixels (decoded, resized, encoded).
public struct HiresFix: Sendable, Codable, Equatable {
    /// The size of the final picture.
    public var width: Int
    public var height: Int
    /// The second pass's steps; 0 takes the request's.
    public var steps: Int
    /// A1111's "Denoising strength" of the second pass.
    public var strength: Double
    public var upscaler: HiresUpscaler
    /// An upscaler network's file (the ESRGAN family, as `Upscaler.load` reads): the first pass is
    /// decoded, run through it as A1111's upscalers do, then resized and encoded; `upscaler` is not used.
    public var upscalerModel: String?

    public init(width: Int, height: Int, steps: Int = 0, strength: Double = 0.7, upscaler: HiresUpscaler = .latent,
                upscalerModel: String? = nil) {
        self.width = width
        self.height = height
        self.steps = steps
        self.strength = strength
        self.upscaler = upscaler
        self.upscalerModel = upscalerModel
    }

    /// The upscaler's name in A1111's `Hires upscaler` key: a network's file name without its
    /// extension (as A1111 names ESRGAN models), else the built-in method's.
    public var upscalerName: String {
        upscalerModel.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent } ?? upscaler.a1111Name
    }

    /// The second pass's schedule by A1111's rule for a pass whose steps are given
    /// (`setup_img2img_steps`): `int(steps / min(strength, 0.999))` steps, of which the last `steps` run.
    /// - Returns: the scheduler's step count and the index of the first step that runs.
    public func schedule(requestSteps: Int) -> (total: Int, firstStep: Int) {
        let run = steps == 0 ? requestSteps : steps
        let total = Int(Double(run) / min(strength, 0.999))
        return (total, total - run)
    }
}

/// How the hires fix enlarges the first pass.
public enum HiresUpscaler: String, CaseIterable, Sendable, Codable {
    /// The latents, with `F.interpolate` (A1111's "Latent" family).
    case latent
    case latentNearest = "latent-nearest"
    case latentNearestExact = "latent-nearest-exact"
    case latentBicubic = "latent-bicubic"
    /// The decoded picture, with Pillow's Lanczos, then encoded again (A1111's "Lanczos").
    case lanczos

    /// The latent mode, or nil for an upscaler that works on pixels.
    public var latentMode: InterpolationMode? {
        switch self {
        case .latent: return .bilinear
        case .latentNearest: return .nearest
        case .latentNearestExact: return .nearestExact
        case .latentBicubic: return .bicubic
        case .lanczos: return nil
        }
    }

    /// A1111's name, for the `Hires upscaler` infotext key.
    public var a1111Name: String {
        switch self {
        case .latent: return "Latent"
        case .latentNearest: return "Latent (nearest)"
        case .latentNearestExact: return "Latent (nearest-exact)"
        case .latentBicubic: return "Latent (bicubic)"
        case .lanczos: return "Lanczos"
        }
    }

    /// The upscaler with this A1111 name (also the antialiased latent variants, which upscale alike,
    /// and `None`, which A1111's `images.resize_image` turns into a plain Lanczos resize).
    public init?(a1111Name name: String) {
        if name == "None" {
            self = .lanczos
            return
        }
        let plain = name.replacingOccurrences(of: " antialiased", with: "").replacingOccurrences(of: "Latent (antialiased)", with: "Latent")
        guard let match = Self.allCases.first(where: { $0.a1111Name == plain }) else { return nil }
        self = match
    }
}
