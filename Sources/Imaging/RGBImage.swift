/// An 8-bit RGB image, row-major, three bytes per pixel, no padding.
///
/// This is the one pixel type the rest of the program sees: the engine's decoder output is
/// converted to it once (`init(planarUnitFloats:width:height:)`), and the PNG/JPEG writers, the
/// sixel encoder and the transcript's pixel hash all read `pixels`.
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// `width * height * 3` bytes: R, G, B of pixel (0,0), then (1,0), ... row by row.
    public var pixels: [UInt8]

    /// Wraps existing RGB8 bytes.
    /// - Throws: `ImagingError.invalidImage` if a side is not positive or `pixels.count` is not
    ///   `width * height * 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0 else {
            throw ImagingError.invalidImage("image size \(width)x\(height) is empty")
        }
        guard pixels.count == width * height * 3 else {
            throw ImagingError.invalidImage(
                "\(width)x\(height) RGB needs \(width * height * 3) bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// For callers that built the buffer from the size themselves.
    init(uncheckedWidth width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0 && pixels.count == width * height * 3, "RGB buffer does not match its size")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Converts the decoder's output, planar `[3, H, W]` floats in [0, 1], to RGB8 exactly as
    /// diffusers' `numpy_to_pil` does:
    ///
    ///     images = (images * 255).round().astype("uint8")
    ///
    /// The product is taken in `Float` (numpy keeps float32), and `round()` is numpy's round
    /// half to even, so 0.5 gives 127.5, which rounds to 128, and a product of exactly 2.5 gives 2.
    /// Values are clamped to [0, 1] first (diffusers clamps in `denormalize` before this step;
    /// `astype("uint8")` of an out-of-range float is undefined), and NaN becomes 0.
    ///
    /// - Parameters:
    ///   - planarUnitFloats: `3 * height * width` floats: the R plane, then G, then B.
    /// - Throws: `ImagingError.invalidImage` if the count does not match the size.
    public init(planarUnitFloats values: [Float], width: Int, height: Int) throws {
        let plane = width * height
        guard width > 0, height > 0, values.count == 3 * plane else {
            throw ImagingError.invalidImage(
                "a [3, \(height), \(width)] float image needs \(3 * max(plane, 0)) values, got \(values.count)")
        }
        var pixels = [UInt8](repeating: 0, count: 3 * plane)
        values.withUnsafeBufferPointer { src in
            pixels.withUnsafeMutableBufferPointer { dst in
                for channel in 0..<3 {
                    let base = channel * plane
                    for i in 0..<plane {
                        dst[3 * i + channel] = RGBImage.unitToByte(src[base + i])
                    }
                }
            }
        }
        try self.init(width: width, height: height, pixels: pixels)
    }

    /// The image `factor` times larger on each side, each pixel repeated (nearest neighbour): for
    /// small previews, which a terminal would otherwise show at one screen pixel per latent.
    /// - Throws: `ImagingError.invalidImage` for a factor below 1.
    public func scaledUp(by factor: Int) throws -> RGBImage {
        guard factor >= 1 else { throw ImagingError.invalidImage("scale factor \(factor) is below 1") }
        if factor == 1 { return self }
        let outWidth = width * factor
        var out = [UInt8](repeating: 0, count: outWidth * height * factor * 3)
        for y in 0..<(height * factor) {
            let source = (y / factor) * width * 3
            let row = y * outWidth * 3
            for x in 0..<outWidth {
                let from = source + (x / factor) * 3
                out[row + 3 * x] = pixels[from]
                out[row + 3 * x + 1] = pixels[from + 1]
                out[row + 3 * x + 2] = pixels[from + 2]
            }
        }
        return RGBImage(uncheckedWidth: outWidth, height: height * factor, pixels: out)
    }

    /// `np.uint8(np.round(np.float32(x) * 255))` for x clamped to [0, 1].
    @inline(__always)
    static func unitToByte(_ x: Float) -> UInt8 {
        guard x > 0 else { return 0 }  // also catches NaN
        guard x < 1 else { return 255 }
        return UInt8((x * 255).rounded(.toNearestOrEven))
    }
}

extension RGBImage {
    /// The image turned as EXIF Orientation `orientation` says to display it, as PIL's
    /// `ImageOps.exif_transpose`: 2 mirror, 3 rotate 180°, 4 flip, 5 transpose, 6 rotate 90°
    /// clockwise, 7 transverse, 8 rotate 90° counter-clockwise; 1 or anything else as it is.
    public func oriented(exif orientation: Int) -> RGBImage {
        guard (2...8).contains(orientation) else { return self }
        let (w, h) = (width, height)
        let swaps = orientation >= 5
        let (ow, oh) = swaps ? (h, w) : (w, h)
        var out = [UInt8](repeating: 0, count: pixels.count)
        for y in 0..<oh {
            for x in 0..<ow {
                let (sx, sy): (Int, Int)
                switch orientation {
                case 2: (sx, sy) = (w - 1 - x, y)
                case 3: (sx, sy) = (w - 1 - x, h - 1 - y)
                case 4: (sx, sy) = (x, h - 1 - y)
                case 5: (sx, sy) = (y, x)
                case 6: (sx, sy) = (y, h - 1 - x)
                case 7: (sx, sy) = (w - 1 - y, h - 1 - x)
                default: (sx, sy) = (w - 1 - y, x)
                }
                let s = (sy * w + sx) * 3, d = (y * ow + x) * 3
                out[d] = pixels[s]
                out[d + 1] = pixels[s + 1]
                out[d + 2] = pixels[s + 2]
            }
        }
        return RGBImage(uncheckedWidth: ow, height: oh, pixels: out)
    }
}
