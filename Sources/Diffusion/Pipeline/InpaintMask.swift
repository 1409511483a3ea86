import Foundation

/// An 8-bit grayscale inpainting mask, row-major: 255 repaints, 0 keeps.
public struct InpaintMask: Sendable, Equatable, Codable {
    public let width: Int
    public let height: Int
    public let values: [UInt8]

    public init(width: Int, height: Int, values: [UInt8]) {
        precondition(values.count == width * height, "mask of \(values.count) bytes for \(width)x\(height)")
        self.width = width
        self.height = height
        self.values = values
    }

    private enum CodingKeys: String, CodingKey { case width, height, values }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let width = try c.decode(Int.self, forKey: .width), height = try c.decode(Int.self, forKey: .height)
        let values = try c.decode([UInt8].self, forKey: .values)
        guard width > 0, height > 0, values.count == width * height else {
            throw DecodingError.dataCorruptedError(forKey: .values, in: c, debugDescription: "\(values.count) bytes for \(width)x\(height)")
        }
        self.init(width: width, height: height, values: values)
    }

    /// The whole picture repainted, as diffusers treats an inpainting checkpoint given no mask.
    public static func full(width: Int, height: Int) -> InpaintMask {
        InpaintMask(width: width, height: height, values: [UInt8](repeating: 255, count: width * height))
    }

    /// The luma of an RGB image as Pillow's `convert("L")` computes it (ITU-R 601-2,
    /// `(R·19595 + G·38470 + B·7471 + 0x8000) >> 16`).
    public init(luma image: PixelImage) {
        var values = [UInt8](repeating: 0, count: image.width * image.height)
        for i in values.indices {
            let r = UInt32(image.rgb[i * 3]), g = UInt32(image.rgb[i * 3 + 1]), b = UInt32(image.rgb[i * 3 + 2])
            values[i] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
        }
        self.init(width: image.width, height: image.height, values: values)
    }

    /// Whether pixel `i` is repainted after diffusers' `binarize`: `v / 255 ≥ 0.5`, i.e. `v ≥ 128`.
    @inlinable public func repaints(_ i: Int) -> Bool { values[i] >= 128 }

    /// How many pixels are repainted.
    public var repaintedCount: Int { values.reduce(0) { $0 + ($1 >= 128 ? 1 : 0) } }

    /// The mask at another size by Pillow's Lanczos filter, as diffusers' mask processor resizes it.
    public func resized(width newWidth: Int, height newHeight: Int) -> InpaintMask {
        guard newWidth != width || newHeight != height else { return self }
        return InpaintMask(width: newWidth, height: newHeight,
                           values: LanczosResampler.resize(values, width: width, height: height, channels: 1,
                                                           toWidth: newWidth, toHeight: newHeight))
    }

    /// A1111's mask blur: `cv2.GaussianBlur` with σ = `radius` and a kernel of
    /// `2·int(2.5·radius + 0.5) + 1` taps, across and then down, each pass rounded to 8 bits, in
    /// OpenCV's own 8-bit arithmetic so that the levels are OpenCV's: taps in 1/256ths, rounded
    /// along the running sum from the ends so that they add up to exactly 256, and edges reflected
    /// as OpenCV's default border (`gfedcb|abcdefgh|gfedcba`).
    public func blurred(radius: Int) -> InpaintMask {
        guard radius > 0 else { return self }
        let kernel = Self.gaussianTaps(sigma: Double(radius))
        let half = kernel.count / 2
        func reflect(_ i: Int, _ n: Int) -> Int {
            guard n > 1 else { return 0 }
            var i = i
            while i < 0 || i >= n { i = i < 0 ? -i : 2 * n - 2 - i }
            return i
        }
        func pass(_ source: [UInt8], across: Bool) -> [UInt8] {
            var out = source
            for y in 0..<height {
                for x in 0..<width {
                    var sum = 128
                    for (k, weight) in kernel.enumerated() {
                        let sx = across ? reflect(x + k - half, width) : x
                        let sy = across ? y : reflect(y + k - half, height)
                        sum += weight * Int(source[sy * width + sx])
                    }
                    out[y * width + x] = UInt8(min(sum >> 8, 255))
                }
            }
            return out
        }
        return InpaintMask(width: width, height: height, values: pass(pass(values, across: true), across: false))
    }

    /// The fixed-point Gaussian OpenCV blurs 8-bit images with, in 1/256ths.
    static func gaussianTaps(sigma: Double) -> [Int] {
        let count = 2 * Int(2.5 * sigma + 0.5) + 1, half = count / 2
        let exact = (0..<count).map { i -> Double in
            let x = Double(i - half)
            return exp(-x * x / (2 * sigma * sigma))
        }
        let total = exact.reduce(0, +)
        var taps = [Int](repeating: 0, count: count)
        var running = 0.0, previous = 0
        for i in 0..<half {
            running += exact[i] / total * 256
            let rounded = Int((running + 0.5).rounded(.down))
            taps[i] = rounded - previous
            taps[count - 1 - i] = taps[i]
            previous = rounded
        }
        taps[half] = 256 - 2 * previous
        return taps
    }

    /// The binarised mask at latent size `[1, 1, height/8, width/8]`: F.interpolate's default
    /// nearest mode takes the top-left pixel of each 8x8 block.
    func latentMask(factor: Int = 8) -> Tensor {
        let h = height / factor, w = width / factor
        var out = Tensor(shape: [1, 1, h, w])
        out.data.withUnsafeMutableBufferPointer { dst in
            for y in 0..<h {
                for x in 0..<w { dst[y * w + x] = repaints(y * factor * width + x * factor) ? 1 : 0 }
            }
        }
        return out
    }

    /// diffusers' masked image: `image · (mask < 0.5)` on the image in [-1, 1], `[1, 3, H, W]`.
    func masking(_ image: Tensor) -> Tensor {
        var out = image
        let plane = width * height
        out.data.withUnsafeMutableBufferPointer { dst in
            for i in 0..<plane where repaints(i) {
                for c in 0..<3 { dst[c * plane + i] = 0 }
            }
        }
        return out
    }
}

extension PixelImage {
    /// A1111's overlay after inpainting: the original pixels where the (blurred) mask keeps, the
    /// generated ones where it repaints, mixed by its gray levels: `(orig·(255 − m) + gen·m) / 255`,
    /// rounded.
    public func pasting(original: PixelImage, outside mask: InpaintMask) -> PixelImage {
        precondition(original.width == width && original.height == height && mask.width == width && mask.height == height)
        var rgb = self.rgb
        for i in 0..<(width * height) {
            let m = UInt32(mask.values[i])
            for c in 0..<3 {
                let k = i * 3 + c
                rgb[k] = UInt8((UInt32(original.rgb[k]) * (255 - m) + UInt32(self.rgb[k]) * m + 127) / 255)
            }
        }
        return PixelImage(width: width, height: height, rgb: rgb)
    }
}
