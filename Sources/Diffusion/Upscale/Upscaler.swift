import Foundation

/// How an image is cut for the network, as Real-ESRGAN's `RealESRGANer` does: tiles of `tile`
/// pixels, each run with `tilePad` pixels of its neighbours around it and cropped back after, so
/// memory is bounded by the tile, not the image.
public struct TileOptions: Equatable, Sendable {
    /// The side of a tile in input pixels; 0 runs the whole image at once.
    public var tile: Int
    /// Input pixels of context on each side of a tile (dropped from its output).
    public var tilePad: Int
    /// Reflected pixels added at the right and bottom of the whole image first (and cropped after).
    public var prePad: Int

    /// 192-pixel tiles (A1111's default ESRGAN tile) with RealESRGANer's 10-pixel context: a full-size
    /// x4 model's largest tensors are then 64 × 848² floats, 184 MB.
    public init(tile: Int = 192, tilePad: Int = 10, prePad: Int = 0) {
        self.tile = tile
        self.tilePad = tilePad
        self.prePad = prePad
    }

    /// The whole image in one pass.
    public static let untiled = TileOptions(tile: 0, tilePad: 0)
}

/// Progress within a tile (after each of the network's stages) and over the tiles.
public struct UpscaleProgress: Sendable, Equatable {
    /// The tile being run (1…tiles) and the tile count.
    public let tile: Int
    public let tiles: Int
    /// How much of this tile is done, 0…1 (1: the tile is finished).
    public let fraction: Double
    /// Seconds since the upscale started.
    public let elapsed: Double

    /// Tiles done, with the current one's fraction.
    public var done: Double { Double(tile - 1) + fraction }
    /// Estimated seconds left.
    public var eta: Double { done > 0 ? elapsed / done * (Double(tiles) - done) : 0 }
    public var tileFinished: Bool { fraction >= 1 }

    public init(tile: Int, tiles: Int, fraction: Double = 1, elapsed: Double) {
        self.tile = tile
        self.tiles = tiles
        self.fraction = fraction
        self.elapsed = elapsed
    }
}

/// The largest image an upscale may make: four times the largest generation side, per side.
public enum UpscaleLimits {
    public static let maxSide = 4 * RequestLimits.side.upperBound
    /// The output scales `upscale … xS` accepts (A1111's extras tab goes to 8).
    public static let scale: ClosedRange<Double> = 1...8
}

/// An RRDBNet with RealESRGANer's inference around it: pads, tiles, runs, crops, clamps to [0, 1].
public final class Upscaler: Sendable {
    public let network: RRDBNet
    /// The file's name without its extension (A1111's `Postprocess upscaler`).
    public let name: String
    /// Output size over input size.
    public var scale: Int { network.config.scale }

    public init(network: RRDBNet, name: String) {
        self.network = network
        self.name = name
    }

    /// Builds the network from `source`, its sizes and layout read from the weights.
    /// - Parameter name: how the upscaler is named in recipes and messages.
    /// - Throws: `UpscalerError` when the tensors are not an RRDBNet's, are shaped differently from
    ///   what the others imply, or include tensors the network does not use.
    public convenience init(source: TensorSource, name: String) throws {
        let (config, layout, prefix) = try RRDBNetConfig.detect(in: source)
        let usage = WeightUsage()
        let network: RRDBNet
        do {
            network = try RRDBNet(weights: Weights(source: source, prefix: prefix, keepConverted: true, usage: usage),
                                  config: config, layout: layout)
        } catch let error as WeightsError {
            throw UpscalerError.incompatible(path: source.sourceDescription, error)
        }
        let unexpected = source.keys.filter { $0.hasPrefix(prefix) && !usage.keys.contains($0) }.sorted()
        if !unexpected.isEmpty { throw UpscalerError.unexpectedTensors(path: source.sourceDescription, keys: unexpected) }
        self.init(network: network, name: name)
    }

    /// Opens an upscaler file: `.safetensors`, or a PyTorch `.pth` read by the weights-only pickle
    /// reader (Real-ESRGAN's `params_ema` nesting taken off by it), told apart by their bytes.
    /// - Throws: `UpscalerError` for a missing file, a folder, or weights that are not an RRDBNet's;
    ///   `SafetensorsError` or `TorchFileError` for a file that cannot be read (a pickle refused by
    ///   `set pickles off` included).
    public static func load(_ url: URL) throws -> Upscaler {
        try Upscaler(source: openSource(url), name: url.deletingPathExtension().lastPathComponent)
    }

    /// The tensors of an upscaler file.
    static func openSource(_ url: URL) throws -> TensorSource {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw UpscalerError.notFound(path: url.path)
        }
        guard !isDirectory.boolValue else { throw UpscalerError.unsupportedFormat(path: url.path, reason: "it is a folder; give the model file") }
        return try openTensorFile(url)
    }

    /// The input sizes of the network's passes that take a `width × height` image to at least
    /// `target`: A1111's `Upscaler.upscale` runs the model until the image covers the target, at most
    /// 3 times (the caller then resizes).
    public func passes(width: Int, height: Int, toCover target: (width: Int, height: Int)) -> [(width: Int, height: Int)] {
        var sizes: [(width: Int, height: Int)] = []
        var (w, h) = (width, height)
        repeat {
            sizes.append((w, h))
            (w, h) = (w * scale, h * scale)
        } while (w < target.width || h < target.height) && sizes.count < 3 && scale > 1
        return sizes
    }

    /// Runs the network's `passes` over `image`.
    /// - Parameter progress: tiles over all passes.
    public func upscale(_ image: PixelImage, toCover target: (width: Int, height: Int), tiling: TileOptions = TileOptions(),
                        progress: (UpscaleProgress) -> Void = { _ in }, cancellation: CancellationToken? = nil) throws -> PixelImage {
        let counts = passes(width: image.width, height: image.height, toCover: target)
            .map { tileCount(width: $0.width, height: $0.height, tiling: tiling) }
        let total = counts.reduce(0, +)
        let start = DispatchTime.now().uptimeNanoseconds
        var current = image
        var before = 0  // tiles of the earlier passes
        for count in counts {
            current = try upscale(current, tiling: tiling, progress: { p in
                progress(UpscaleProgress(tile: before + p.tile, tiles: total, fraction: p.fraction, elapsed: Self.seconds(since: start)))
            }, cancellation: cancellation)
            before += count
        }
        return current
    }

    /// The number of tiles `upscale` runs over a `width × height` image.
    public func tileCount(width: Int, height: Int, tiling: TileOptions) -> Int {
        let (tile, _) = aligned(tiling)
        let r = network.config.unshuffle
        let w = roundUp(width + tiling.prePad, r), h = roundUp(height + tiling.prePad, r)
        guard tile > 0 else { return 1 }
        return ((w + tile - 1) / tile) * ((h + tile - 1) / tile)
    }

    /// Upscales an RGB8 image by `scale` (RealESRGANer's `enhance` for an 8-bit RGB image: `x / 255`,
    /// the network over tiles, clamp to [0, 1], `round(x · 255)`). Each tile's output goes straight
    /// into the bytes, so besides a tile's work only the result's bytes are held (201 MB at the
    /// largest, 8192 × 8192), never the whole result in floats.
    /// - Parameters:
    ///   - progress: called after each stage of the network on each tile, on the calling thread (a
    ///     caller can set `cancellation` from it).
    ///   - cancellation: checked before each tile and between the network's stages.
    /// - Throws: `UpscalerError.tooLarge` when the result would pass `UpscaleLimits.maxSide`, `.nonFinite`
    ///   when the network makes NaN or ±∞ (broken weights);
    ///   `PipelineError.cancelled`.
    public func upscale(_ image: PixelImage, tiling: TileOptions = TileOptions(), progress: (UpscaleProgress) -> Void = { _ in },
                        cancellation: CancellationToken? = nil) throws -> PixelImage {
        let (outWidth, outHeight) = (image.width * scale, image.height * scale)
        guard outWidth <= UpscaleLimits.maxSide, outHeight <= UpscaleLimits.maxSide else {
            throw UpscalerError.tooLarge(width: outWidth, height: outHeight)
        }
        let plane = image.width * image.height
        var x = Tensor(shape: [1, 3, image.height, image.width])
        x.data.withUnsafeMutableBufferPointer { dst in
            for i in 0..<plane {
                for c in 0..<3 { dst[c * plane + i] = Float(image.rgb[i * 3 + c]) / 255 }
            }
        }
        var rgb = [UInt8](repeating: 0, count: outWidth * outHeight * 3)
        try forEachTile(of: x, tiling: tiling, progress: progress, cancellation: cancellation) { result, from, size, at in
            let (rh, rw) = (result.shape[2], result.shape[3])
            result.data.withUnsafeBufferPointer { src in
                rgb.withUnsafeMutableBufferPointer { dst in
                    for c in 0..<3 {
                        for row in 0..<size.height {
                            let s = (c * rh + from.y + row) * rw + from.x, d = ((at.y + row) * outWidth + at.x) * 3 + c
                            for x in 0..<size.width {
                                let v = src[s + x]
                                dst[d + 3 * x] = PixelImage.byte(fromUnit: min(max(v, 0), 1))
                            }
                        }
                    }
                }
            }
        }
        return PixelImage(width: outWidth, height: outHeight, rgb: rgb)
    }

    /// Upscales `[1, 3, H, W]` in [0, 1] to `[1, 3, scale·H, scale·W]`, clamped to [0, 1].
    public func upscale(_ image: Tensor, tiling: TileOptions = TileOptions(), progress: (UpscaleProgress) -> Void = { _ in },
                        cancellation: CancellationToken? = nil) throws -> Tensor {
        precondition(image.rank == 4 && image.shape[0] == 1 && image.shape[1] == 3, "upscale takes [1, 3, H, W], got \(image.shape)")
        var output = Tensor(shape: [1, 3, image.shape[2] * scale, image.shape[3] * scale])
        try forEachTile(of: image, tiling: tiling, progress: progress, cancellation: cancellation) { result, from, size, at in
            output.place(result, from: from, size: size, at: at)
        }
        return output.clamped(to: 0...1)
    }

    /// Runs the network over `image`'s tiles and hands `place` each tile's own output: the `size`
    /// window at `from` of the network's result, which goes at `at` in the `scale·H × scale·W` image.
    ///
    /// As RealESRGANer: `prePad` reflected columns and rows at the right and bottom, then as many
    /// more as make the sides multiples of the unshuffle factor; then tiles (each run with up to
    /// `tilePad` pixels of context, its output cropped to the tile); the pads' share of the output is
    /// never placed. The tile and its pad are rounded up to multiples of the unshuffle factor so every
    /// tile can be unshuffled (RealESRGANer leaves that to the caller).
    private func forEachTile(of image: Tensor, tiling: TileOptions, progress: (UpscaleProgress) -> Void, cancellation: CancellationToken?,
                             place: (_ result: Tensor, _ from: (x: Int, y: Int), _ size: (width: Int, height: Int), _ at: (x: Int, y: Int)) -> Void) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        let (height, width) = (image.shape[2], image.shape[3])
        let r = network.config.unshuffle, s = scale
        // Two reflections, as RealESRGANer pads: the mod pad mirrors about the pre-padded edge.
        let prePadded = image.reflectPadded(right: tiling.prePad, bottom: tiling.prePad)
        let (ih, iw) = (prePadded.shape[2], prePadded.shape[3])
        let padded = prePadded.reflectPadded(right: roundUp(iw, r) - iw, bottom: roundUp(ih, r) - ih)  // [1, 3, H', W']
        let (ph, pw) = (padded.shape[2], padded.shape[3])
        var (tile, pad) = aligned(tiling)
        if tile == 0 { (tile, pad) = (max(pw, ph), 0) }  // one tile: the whole padded image
        let stages = Double(network.stages)
        let (tilesX, tilesY) = ((pw + tile - 1) / tile, (ph + tile - 1) / tile)
        for ty in 0..<tilesY {
            for tx in 0..<tilesX {
                try cancellation?.check()
                let number = ty * tilesX + tx + 1
                let x0 = tx * tile, x1 = min(x0 + tile, pw), y0 = ty * tile, y1 = min(y0 + tile, ph)
                let (px0, px1, py0, py1) = (max(x0 - pad, 0), min(x1 + pad, pw), max(y0 - pad, 0), min(y1 + pad, ph))
                let input = px0 == 0 && py0 == 0 && px1 == pw && py1 == ph ? padded : padded.cropped(x: px0..<px1, y: py0..<py1)
                let result = try network(input, cancellation: cancellation) { done in
                    progress(UpscaleProgress(tile: number, tiles: tilesX * tilesY, fraction: Double(done) / stages,
                                             elapsed: Self.seconds(since: start)))
                }
                guard result.isAllFinite else { throw UpscalerError.nonFinite(name: name) }
                // The tile's own pixels, less what falls in the pads.
                let size = (width: min(x1, width) * s - x0 * s, height: min(y1, height) * s - y0 * s)
                if size.width > 0 && size.height > 0 {
                    place(result, ((x0 - px0) * s, (y0 - py0) * s), size, (x0 * s, y0 * s))
                }
            }
        }
    }

    /// The tile and its context rounded up to multiples of the unshuffle factor.
    private func aligned(_ tiling: TileOptions) -> (tile: Int, pad: Int) {
        let r = network.config.unshuffle
        return (roundUp(max(tiling.tile, 0), r), roundUp(max(tiling.tilePad, 0), r))
    }

    private static func seconds(since start: UInt64) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }
}

private func roundUp(_ value: Int, _ multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }

extension Tensor {
    /// `F.pad(x, (0, right, 0, bottom), 'reflect')` on `[N, C, H, W]`: the added columns mirror the
    /// image about its last column (column `W + i` is `W − 2 − i`), rows likewise. Pads longer than the
    /// image keep mirroring back and forth (torch refuses those).
    func reflectPadded(right: Int, bottom: Int) -> Tensor {
        if right == 0 && bottom == 0 { return self }
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        let (oh, ow) = (h + bottom, w + right)
        func mirror(_ i: Int, _ n: Int) -> Int {
            guard n > 1 else { return 0 }
            let m = i % (2 * (n - 1))
            return m < n ? m : 2 * (n - 1) - m
        }
        let columns = (0..<ow).map { mirror($0, w) }
        var out = Tensor(shape: [shape[0], shape[1], oh, ow])
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for p in 0..<planes {
                    for y in 0..<oh {
                        let from = (p * h + mirror(y, h)) * w, to = (p * oh + y) * ow
                        for x in 0..<ow { dst[to + x] = src[from + columns[x]] }
                    }
                }
            }
        }
        return out
    }

    /// The columns `x` and rows `y` of every plane of `[N, C, H, W]`.
    func cropped(x: Range<Int>, y: Range<Int>) -> Tensor {
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        precondition(x.lowerBound >= 0 && x.upperBound <= w && y.lowerBound >= 0 && y.upperBound <= h, "crop \(x) × \(y) of \(shape)")
        var out = Tensor(shape: [shape[0], shape[1], y.count, x.count])
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for p in 0..<planes {
                    for (row, sy) in y.enumerated() {
                        let from = (p * h + sy) * w + x.lowerBound, to = (p * y.count + row) * x.count
                        (dst.baseAddress! + to).update(from: src.baseAddress! + from, count: x.count)
                    }
                }
            }
        }
        return out
    }

    /// Copies the `size` window of `source` at `from` into `self` at `at` (same N and C).
    mutating func place(_ source: Tensor, from: (x: Int, y: Int), size: (width: Int, height: Int), at: (x: Int, y: Int)) {
        let planes = shape[0] * shape[1]
        precondition(source.shape[0] * source.shape[1] == planes, "place \(source.shape) into \(shape)")
        let (sh, sw, h, w) = (source.shape[2], source.shape[3], shape[2], shape[3])
        precondition(from.x + size.width <= sw && from.y + size.height <= sh && at.x + size.width <= w && at.y + size.height <= h,
                     "window \(size) from \(from) of \(source.shape) to \(at) of \(shape)")
        source.data.withUnsafeBufferPointer { src in
            data.withUnsafeMutableBufferPointer { dst in
                for p in 0..<planes {
                    for row in 0..<size.height {
                        let s = (p * sh + from.y + row) * sw + from.x, d = (p * h + at.y + row) * w + at.x
                        (dst.baseAddress! + d).update(from: src.baseAddress! + s, count: size.width)
                    }
                }
            }
        }
    }
}
