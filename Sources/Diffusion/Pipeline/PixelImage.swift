import Foundation

/// An 8-bit RGB image, row-major, 3 bytes a pixel: what the pipeline hands to the app.
public struct PixelImage: Sendable, Equatable, Codable {
    public let width: Int
    public let height: Int
    public let rgb: [UInt8]

    public init(width: Int, height: Int, rgb: [UInt8]) {
        precondition(rgb.count == width * height * 3, "RGB buffer of \(rgb.count) bytes for \(width)x\(height)")
        self.width = width
        self.height = height
        self.rgb = rgb
    }

    private enum CodingKeys: String, CodingKey { case width, height, rgb }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let width = try c.decode(Int.self, forKey: .width), height = try c.decode(Int.self, forKey: .height)
        let rgb = try c.decode([UInt8].self, forKey: .rgb)
        guard width > 0, height > 0, rgb.count == width * height * 3 else {
            throw DecodingError.dataCorruptedError(forKey: .rgb, in: c, debugDescription: "\(rgb.count) bytes for \(width)x\(height)")
        }
        self.init(width: width, height: height, rgb: rgb)
    }

    /// Converts the VAE's output `[1, 3, H, W]` in [-1, 1] the way diffusers' `VaeImageProcessor`
    /// does: `(x / 2 + 0.5).clamp(0, 1)`, then `numpy_to_pil`'s `(x * 255).round().astype(uint8)`,
    /// where numpy rounds half to even.
    public init(decoded: Tensor) {
        precondition(decoded.rank == 4 && decoded.shape[1] == 3, "expected [1, 3, H, W], got \(decoded.shape)")
        let h = decoded.shape[2], w = decoded.shape[3], plane = h * w
        var rgb = [UInt8](repeating: 0, count: plane * 3)
        decoded.data.withUnsafeBufferPointer { src in
            for c in 0..<3 {
                for i in 0..<plane {
                    rgb[i * 3 + c] = Self.byte(fromUnit: Self.unit(fromSigned: src[c * plane + i]))
                }
            }
        }
        self.init(width: w, height: h, rgb: rgb)
    }

    /// The image as the VAE encoder takes it, `[1, 3, H, W]` in [-1, 1], as diffusers'
    /// `VaeImageProcessor.preprocess` makes it: `x / 255` then `2x - 1`, in Float32.
    public var signedTensor: Tensor {
        let plane = width * height
        var out = Tensor(shape: [1, 3, height, width])
        out.data.withUnsafeMutableBufferPointer { dst in
            for i in 0..<plane {
                for c in 0..<3 {
                    let unit = Float(rgb[i * 3 + c]) / 255
                    dst[c * plane + i] = 2 * unit - 1
                }
            }
        }
        return out
    }

    /// `(x / 2 + 0.5).clamp(0, 1)` in Float32, as torch computes it; NaN, which a broken model
    /// makes and the pipeline refuses before it gets here, as 0 rather than a trap.
    @inlinable static func unit(fromSigned x: Float) -> Float {
        x.isNaN ? 0 : min(max(x / 2 + 0.5, 0), 1)
    }

    /// `round(x * 255)` with ties to even, as numpy's `round`.
    @inlinable static func byte(fromUnit x: Float) -> UInt8 {
        UInt8((x * 255).rounded(.toNearestOrEven))
    }
}
