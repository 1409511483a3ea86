import CSixel

/// Sixel encoding of previews for terminals (DEC sixel graphics, via libsixel).
///
/// The caller decides whether the terminal supports sixel and whether stdout is a terminal; this
/// only turns an image into the bytes to write.
public enum Sixel {
    /// The size an image takes when scaled to fit a `boxWidth` x `boxHeight` pixel box with its
    /// aspect ratio kept (each side at least 1). Images already inside the box keep their size
    /// unless `allowUpscale` is set.
    public static func fittedSize(width: Int, height: Int, boxWidth: Int, boxHeight: Int, allowUpscale: Bool = false) -> (width: Int, height: Int) {
        guard width > 0, height > 0, boxWidth > 0, boxHeight > 0 else { return (max(width, 1), max(height, 1)) }
        var scale = min(Double(boxWidth) / Double(width), Double(boxHeight) / Double(height))
        if !allowUpscale { scale = min(scale, 1) }
        // width * scale <= boxWidth exactly; rounding (not flooring) absorbs floating error.
        let w = max(1, min(Int((Double(width) * scale).rounded()), boxWidth))
        let h = max(1, min(Int((Double(height) * scale).rounded()), boxHeight))
        return (w, h)
    }

    /// Encodes `image`, scaled to fit the pixel box, as a sixel sequence: `ESC P … q`, the
    /// palette and sixel data, `ESC \`.
    /// - Parameters:
    ///   - boxWidth, boxHeight: the largest size in pixels the preview may take.
    ///   - colors: palette size, 2...256; libsixel picks the palette by median cut and dithers.
    /// - Throws: `ImagingError.sixelFailed` with libsixel's message.
    public static func encode(_ image: RGBImage, boxWidth: Int, boxHeight: Int, colors: Int = 256, allowUpscale: Bool = false) throws -> [UInt8] {
        let size = fittedSize(width: image.width, height: image.height, boxWidth: boxWidth, boxHeight: boxHeight, allowUpscale: allowUpscale)
        let scaled = (size.width, size.height) == (image.width, image.height) ? image : resize(image, width: size.width, height: size.height)
        return try encode(scaled, colors: colors)
    }

    /// Encodes `image` at its own size.
    public static func encode(_ image: RGBImage, colors: Int = 256) throws -> [UInt8] {
        final class Sink {
            var bytes: [UInt8] = []
        }
        let sink = Sink()
        let context = Unmanaged.passUnretained(sink).toOpaque()
        var output: OpaquePointer?
        var status = sixel_output_new(&output, { data, size, priv in
            guard let data, let priv, size > 0 else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(priv).takeUnretainedValue()
            data.withMemoryRebound(to: UInt8.self, capacity: Int(size)) {
                sink.bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: Int(size)))
            }
            return size
        }, context, nil)
        guard status == SIXEL_OK, let output else { throw failure(status) }
        defer { sixel_output_unref(output) }

        var dither: OpaquePointer?
        status = sixel_dither_new(&dither, Int32(min(max(colors, 2), 256)), nil)
        guard status == SIXEL_OK, let dither else { throw failure(status) }
        defer { sixel_dither_unref(dither) }

        // libsixel takes non-const pixels and may dither in place: give it a copy.
        var pixels = image.pixels
        status = pixels.withUnsafeMutableBufferPointer { buffer in
            sixel_dither_initialize(
                dither, buffer.baseAddress, Int32(image.width), Int32(image.height), SIXEL_PIXELFORMAT_RGB888,
                SIXEL_LARGE_AUTO, SIXEL_REP_AUTO, SIXEL_QUALITY_AUTO)
        }
        guard status == SIXEL_OK else { throw failure(status) }
        status = pixels.withUnsafeMutableBufferPointer { buffer in
            withExtendedLifetime(sink) {
                sixel_encode(buffer.baseAddress, Int32(image.width), Int32(image.height), 3, dither, output)
            }
        }
        guard status == SIXEL_OK else { throw failure(status) }
        return sink.bytes
    }

    /// Decodes a sixel sequence back to RGB (libsixel's `sixel_decode_raw`), to check an encoding.
    public static func decode(_ sixel: [UInt8]) throws -> RGBImage {
        var allocator: OpaquePointer?
        var status = sixel_allocator_new(&allocator, nil, nil, nil, nil)
        guard status == SIXEL_OK, let allocator else { throw failure(status) }
        defer { sixel_allocator_unref(allocator) }
        var input = sixel
        var indexed: UnsafeMutablePointer<UInt8>?
        var palette: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0, colorCount: Int32 = 0
        status = input.withUnsafeMutableBufferPointer { buffer in
            sixel_decode_raw(buffer.baseAddress, Int32(buffer.count), &indexed, &width, &height, &palette, &colorCount, allocator)
        }
        defer {
            sixel_allocator_free(allocator, indexed)
            sixel_allocator_free(allocator, palette)
        }
        guard status == SIXEL_OK, let indexed, let palette, width > 0, height > 0 else { throw failure(status) }
        var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height) * 3)
        for i in 0..<Int(width) * Int(height) {
            let c = min(Int(indexed[i]), Int(colorCount) - 1)  // palette entries are R, G, B
            pixels[3 * i] = palette[3 * c]
            pixels[3 * i + 1] = palette[3 * c + 1]
            pixels[3 * i + 2] = palette[3 * c + 2]
        }
        return try RGBImage(width: Int(width), height: Int(height), pixels: pixels)
    }

    private static func failure(_ status: SIXELSTATUS) -> ImagingError {
        .sixelFailed(String(cString: sixel_helper_format_error(status)))
    }

    /// Area-averaging resize: each output pixel is the mean of the source area it covers,
    /// weighted by overlap (a box filter whose width follows the scale, so downscaling does not
    /// alias). Separable: rows first, then columns.
    /// - Precondition: `width` and `height` are positive.
    public static func resize(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        precondition(width > 0 && height > 0, "resize to an empty image")
        let horizontal = weights(from: image.width, to: width)
        let vertical = weights(from: image.height, to: height)
        // Rows: [image.height][width][3] floats.
        var rows = [Float](repeating: 0, count: image.height * width * 3)
        image.pixels.withUnsafeBufferPointer { src in
            for y in 0..<image.height {
                for (x, taps) in horizontal.enumerated() {
                    var r: Float = 0, g: Float = 0, b: Float = 0
                    for (sx, w) in taps {
                        let i = 3 * (y * image.width + sx)
                        r += w * Float(src[i])
                        g += w * Float(src[i + 1])
                        b += w * Float(src[i + 2])
                    }
                    let o = 3 * (y * width + x)
                    rows[o] = r
                    rows[o + 1] = g
                    rows[o + 2] = b
                }
            }
        }
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for (y, taps) in vertical.enumerated() {
            for x in 0..<width {
                for c in 0..<3 {
                    var sum: Float = 0
                    for (sy, w) in taps { sum += w * rows[3 * (sy * width + x) + c] }
                    pixels[3 * (y * width + x) + c] = UInt8(min(max(sum.rounded(), 0), 255))
                }
            }
        }
        return RGBImage(uncheckedWidth: width, height: height, pixels: pixels)
    }

    /// For each of `dst` output samples, the source samples it covers and their normalised weights.
    private static func weights(from src: Int, to dst: Int) -> [[(Int, Float)]] {
        let scale = Double(src) / Double(dst)
        return (0..<dst).map { i in
            var lo = Double(i) * scale
            var hi = Double(i + 1) * scale
            if scale < 1 {  // upscaling: a one-sample-wide window centred on the output sample
                let centre = (Double(i) + 0.5) * scale
                lo = max(centre - 0.5, 0)
                hi = min(centre + 0.5, Double(src))
            }
            var taps: [(Int, Float)] = []
            var total = 0.0
            for s in Int(lo.rounded(.down))..<min(Int(hi.rounded(.up)), src) {
                let overlap = min(hi, Double(s + 1)) - max(lo, Double(s))
                if overlap > 1e-9 {
                    taps.append((s, Float(overlap)))
                    total += overlap
                }
            }
            return taps.map { ($0.0, $0.1 / Float(total)) }
        }
    }
}
