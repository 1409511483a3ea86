import Foundation

/// Pillow's Lanczos resampling, the filter diffusers' `VaeImageProcessor.resize` uses for init
/// images and masks (`image.resize((w, h), resample=Image.LANCZOS)`), in Pillow's own integer
/// arithmetic so that the pixels are Pillow's: `Resample.c`, a horizontal pass into 8-bit rows and
/// then a vertical one, with 22-bit fixed-point weights.
enum LanczosResampler {
    private static let support = 3.0
    private static let precisionBits = 32 - 8 - 2

    /// `sinc(x) · sinc(x / 3)` on (−3, 3).
    private static func lanczos(_ x: Double) -> Double {
        guard -support < x, x < support else { return 0 }
        return sinc(x) * sinc(x / support)
    }

    private static func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let px = x * Double.pi
        return sin(px) / px
    }

    /// For each output index, the first input index and the fixed-point weights of its window
    /// (`precompute_coeffs` and `normalize_coeffs_8bpc`).
    static func coefficients(inSize: Int, outSize: Int) -> [(first: Int, weights: [Int32])] {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let radius = support * filterScale
        return (0..<outSize).map { xx in
            let center = (Double(xx) + 0.5) * scale
            // Pillow truncates toward zero with a C cast; both bounds are clamped to the input.
            let first = max(Int(center - radius + 0.5), 0)
            let end = min(Int(center + radius + 0.5), inSize)
            var weights = (first..<end).map { x in lanczos((Double(x) - center + 0.5) / filterScale) }
            let total = weights.reduce(0, +)
            if total != 0 { weights = weights.map { $0 / total } }
            let one = Double(1 << precisionBits)
            return (first, weights.map { Int32(($0 * one + ($0 < 0 ? -0.5 : 0.5)).rounded(.towardZero)) })
        }
    }

    /// One pass over `channels`-interleaved 8-bit pixels along one axis: `count` lines of `inSize`
    /// samples `stride` apart become lines of `outSize`.
    static func pass(_ source: [UInt8], lines: Int, lineStep: (input: Int, output: Int), sampleStep: Int,
                     inSize: Int, outSize: Int, channels: Int, outCount: Int) -> [UInt8] {
        let coefficients = coefficients(inSize: inSize, outSize: outSize)
        var out = [UInt8](repeating: 0, count: outCount)
        let half = Int64(1) << (precisionBits - 1)
        for line in 0..<lines {
            for (o, (first, weights)) in coefficients.enumerated() {
                for c in 0..<channels {
                    var sum = half
                    for (k, w) in weights.enumerated() {
                        sum += Int64(source[line * lineStep.input + (first + k) * sampleStep + c]) * Int64(w)
                    }
                    let value = sum >> Int64(precisionBits)
                    out[line * lineStep.output + o * sampleStep + c] = UInt8(clamping: value)
                }
            }
        }
        return out
    }

    /// Resizes `pixels` (`width` x `height`, `channels` interleaved) as Pillow does: the horizontal
    /// pass when the width changes, then the vertical pass when the height changes.
    static func resize(_ pixels: [UInt8], width: Int, height: Int, channels: Int, toWidth: Int, toHeight: Int) -> [UInt8] {
        var current = pixels, w = width
        if toWidth != width {
            current = pass(current, lines: height, lineStep: (width * channels, toWidth * channels), sampleStep: channels,
                           inSize: width, outSize: toWidth, channels: channels, outCount: toWidth * height * channels)
            w = toWidth
        }
        if toHeight != height {
            // A column is a line of samples one row apart; the line step is one pixel.
            current = pass(current, lines: w, lineStep: (channels, channels), sampleStep: w * channels,
                           inSize: height, outSize: toHeight, channels: channels, outCount: w * toHeight * channels)
        }
        return current
    }
}

extension PixelImage {
    /// The image at `width` x `height` by Pillow's Lanczos filter (this image when the size is the
    /// same), as diffusers resizes an init image to the request's size.
    public func resized(width newWidth: Int, height newHeight: Int) -> PixelImage {
        guard newWidth != width || newHeight != height else { return self }
        return PixelImage(width: newWidth, height: newHeight,
                          rgb: LanczosResampler.resize(rgb, width: width, height: height, channels: 3,
                                                       toWidth: newWidth, toHeight: newHeight))
    }
}
