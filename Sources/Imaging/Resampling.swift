import Foundation

// Lanczos resampling as Pillow's `Image.resize(size, Image.LANCZOS)` computes it (libImaging
// Resample.c), so a resized image has Pillow's bytes: what A1111 does to an upscaler's result that is
// not the size asked for. Separable, horizontal pass first, each pass rounded to 8 bits; weights
// from the Lanczos-3 window
//     L(x) = sinc(x) · sinc(x / 3) for |x| < 3, else 0,
// stretched by the scale when shrinking (so it low-passes), normalised per output pixel, and used
// in fixed point with 22 fractional bits (Pillow's `PRECISION_BITS`, 32 − 8 − 2).

extension RGBImage {
    /// The image resized to `width × height` with Pillow's Lanczos filter.
    /// - Precondition: both sides positive.
    public func resizedLanczos(width newWidth: Int, height newHeight: Int) -> RGBImage {
        precondition(newWidth > 0 && newHeight > 0, "resize to \(newWidth)x\(newHeight)")
        if newWidth == width && newHeight == height { return self }
        var rows = pixels, rowsWidth = width
        if newWidth != width {
            rows = Lanczos.pass(pixels, lines: height, length: width, stride: 3, lineStride: width * 3,
                                to: newWidth, outStride: 3, outLineStride: newWidth * 3)
            rowsWidth = newWidth
        }
        if newHeight != height {
            // Columns: a line is one column, its samples a row apart.
            rows = Lanczos.pass(rows, lines: rowsWidth, length: height, stride: rowsWidth * 3, lineStride: 3,
                                to: newHeight, outStride: rowsWidth * 3, outLineStride: 3)
        }
        return RGBImage(uncheckedWidth: newWidth, height: newHeight, pixels: rows)
    }
}

enum Lanczos {
    static let precisionBits = 22

    /// Pillow's `lanczos_filter`.
    static func filter(_ x: Double) -> Double {
        guard -3 <= x && x < 3 else { return 0 }
        return sinc(x) * sinc(x / 3)
    }

    static func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let t = x * Double.pi
        return sin(t) / t
    }

    /// Pillow's `precompute_coeffs` then `normalize_coeffs_8bpc`: for each output position, the first
    /// input index and the fixed-point weights of the inputs it reads.
    static func coefficients(from inSize: Int, to outSize: Int) -> [(first: Int, weights: [Int32])] {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = 3 * filterScale
        return (0..<outSize).map { xx in
            let center = (Double(xx) + 0.5) * scale
            let first = max(Int(center - support + 0.5), 0)
            let last = min(Int(center + support + 0.5), inSize)
            var weights = (first..<last).map { filter((Double($0) - center + 0.5) / filterScale) }
            let total = weights.reduce(0, +)
            if total != 0 { weights = weights.map { $0 / total } }
            let unit = Double(1 << precisionBits)
            return (first, weights.map { Int32($0 < 0 ? -0.5 + $0 * unit : 0.5 + $0 * unit) })
        }
    }

    /// Resamples `lines` lines of `length` RGB samples each (sample i of line l at
    /// `l · lineStride + i · stride`) to `outLength` samples.
    static func pass(_ input: [UInt8], lines: Int, length: Int, stride: Int, lineStride: Int,
                     to outLength: Int, outStride: Int, outLineStride: Int) -> [UInt8] {
        let table = coefficients(from: length, to: outLength)
        var out = [UInt8](repeating: 0, count: lines * outLength * 3)
        let half = Int32(1 << (precisionBits - 1))
        input.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for line in 0..<lines {
                    for (o, entry) in table.enumerated() {
                        var sums = (half, half, half)
                        var at = line * lineStride + entry.first * stride
                        for w in entry.weights {
                            sums.0 &+= Int32(src[at]) &* w
                            sums.1 &+= Int32(src[at + 1]) &* w
                            sums.2 &+= Int32(src[at + 2]) &* w
                            at += stride
                        }
                        let target = line * outLineStride + o * outStride
                        dst[target] = clip8(sums.0)
                        dst[target + 1] = clip8(sums.1)
                        dst[target + 2] = clip8(sums.2)
                    }
                }
            }
        }
        return out
    }

    /// The fixed-point sum back to a byte, saturating.
    static func clip8(_ value: Int32) -> UInt8 {
        UInt8(clamping: value >> Int32(precisionBits))
    }
}
