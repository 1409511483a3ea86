import Foundation

/// An 8-bit RGB image, row-major, 3 bytes a pixel: what the pipeline hands to the app.
public struct PixelImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let rgb: [UInt8]

    public init(width: Int, height: Int, rgb: [UInt8]) {
        precondition(rgb.count == width * height * 3, "RGB buffer of \(rgb.count) bytes for \(width)x\(height)")
        self.width = width
        self.height = height
        self.rgb = rgb
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

    /// `(x / 2 + 0.5).clamp(0, 1)` in Float32, as torch computes it.
    @inlinable static func unit(fromSigned x: Float) -> Float {
        min(max(x / 2 + 0.5, 0), 1)
    }

    /// `round(x * 255)` with ties to even, as numpy's `round`.
    @inlinable static func byte(fromUnit x: Float) -> UInt8 {
        UInt8((x * 255).rounded(.toNearestOrEven))
    }
}
