import Foundation

// Layout changes, element-wise arithmetic and batch slicing.

extension Tensor {
    /// Nearest-neighbour 2× upsampling of an NCHW tensor (`F.interpolate(scale_factor=2, mode="nearest")`).
    ///
    /// - Returns: `[N, C, 2H, 2W]`.
    public func upsampleNearest2x() -> Tensor {
        precondition(rank == 4, "upsampleNearest2x takes NCHW, got \(shape)")
        let planes = shape[0] * shape[1], h = shape[2], w = shape[3]
        var out = Tensor(shape: [shape[0], shape[1], 2 * h, 2 * w])
        out.data.withUnsafeMutableBufferPointer { ob in
            let o = SharedPointer(ob.baseAddress!)
            data.withUnsafeBufferPointer { xb in
                let x = xb.baseAddress!
                Parallel.forEach(planes * h, grain: max(1, Tensor.elementGrain / max(1, 4 * w))) { range in
                    for line in range {
                        let src = x + line * w
                        let dst = o.base + line * 4 * w  // input line (plane, y) becomes output lines 2y, 2y+1
                        for i in 0..<w {
                            dst[2 * i] = src[i]
                            dst[2 * i + 1] = src[i]
                        }
                        (dst + 2 * w).update(from: dst, count: 2 * w)
                    }
                }
            }
        }
        return out
    }

    /// Concatenates two NCHW tensors along the channels (`torch.cat([a, b], dim=1)`).
    ///
    /// - Precondition: equal N, H, W.
    public static func concatChannels(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.rank >= 2 && b.rank == a.rank && a.shape[0] == b.shape[0] && a.shape.dropFirst(2) == b.shape.dropFirst(2),
                     "concatChannels: \(a.shape) and \(b.shape) differ outside the channels")
        let n = a.shape[0]
        let aPer = n == 0 ? 0 : a.count / n, bPer = n == 0 ? 0 : b.count / n
        var shape = a.shape
        shape[1] += b.shape[1]
        var out = Tensor(shape: shape)
        out.data.withUnsafeMutableBufferPointer { o in
            a.data.withUnsafeBufferPointer { ap in
                b.data.withUnsafeBufferPointer { bp in
                    for i in 0..<n {
                        let dst = o.baseAddress! + i * (aPer + bPer)
                        dst.update(from: ap.baseAddress! + i * aPer, count: aPer)
                        (dst + aPer).update(from: bp.baseAddress! + i * bPer, count: bPer)
                    }
                }
            }
        }
        return out
    }

    /// Splits NCHW along the channels into `[0, k)` and `[k, C)` (`torch.chunk` / `split` on dim 1),
    /// the inverse of `concatChannels`.
    public func splitChannels(at k: Int) -> (Tensor, Tensor) {
        precondition(rank >= 2 && (0...shape[1]).contains(k), "splitChannels(at: \(k)) of \(shape)")
        let n = shape[0], per = n == 0 ? 0 : count / n, plane = shape[1] == 0 ? 0 : per / shape[1]
        var first = shape, second = shape
        first[1] = k
        second[1] = shape[1] - k
        var a = Tensor(shape: first), b = Tensor(shape: second)
        data.withUnsafeBufferPointer { src in
            for i in 0..<n {
                let base = i * per
                a.data.replaceSubrange(i * k * plane..<(i + 1) * k * plane, with: src[base..<(base + k * plane)])
                b.data.replaceSubrange(i * (shape[1] - k) * plane..<(i + 1) * (shape[1] - k) * plane,
                                       with: src[(base + k * plane)..<(base + per)])
            }
        }
        return (a, b)
    }

    /// `[B, C, H, W]` → `[B, H·W, C]`: a feature map as a token sequence (diffusers'
    /// `permute(0, 2, 3, 1).reshape(B, H*W, C)`).
    public func nchwToTokens() -> Tensor {
        precondition(rank == 4, "nchwToTokens takes NCHW, got \(shape)")
        let b = shape[0], c = shape[1], hw = shape[2] * shape[3]
        return Tensor(shape: [b, hw, c], data: Tensor.transposeBatched(data, batches: b, rows: c, cols: hw))
    }

    /// `[B, H·W, C]` → `[B, C, H, W]`, the inverse of `nchwToTokens`.
    ///
    /// - Precondition: the token count is `height · width`.
    public func tokensToNCHW(height: Int, width: Int) -> Tensor {
        precondition(rank == 3 && shape[1] == height * width, "tokensToNCHW: \(shape) has not \(height)×\(width) tokens")
        let b = shape[0], hw = shape[1], c = shape[2]
        return Tensor(shape: [b, c, height, width], data: Tensor.transposeBatched(data, batches: b, rows: hw, cols: c))
    }

    /// Transposes each of `batches` row-major `[rows, cols]` matrices, in 32×32 tiles for the cache.
    static func transposeBatched(_ src: [Float], batches: Int, rows: Int, cols: Int) -> [Float] {
        var dst = [Float](repeating: 0, count: src.count)
        let tile = 32
        let rowTiles = (rows + tile - 1) / tile
        dst.withUnsafeMutableBufferPointer { db in
            let d = SharedPointer(db.baseAddress!)
            src.withUnsafeBufferPointer { sb in
                let s = sb.baseAddress!
                Parallel.forEach(batches * rowTiles, grain: max(1, Tensor.elementGrain / max(1, tile * cols))) { range in
                    for item in range {
                        let batch = item / rowTiles, r0 = (item % rowTiles) * tile
                        let sm = s + batch * rows * cols, dm = d.base + batch * rows * cols
                        let r1 = min(rows, r0 + tile)
                        var c0 = 0
                        while c0 < cols {
                            let c1 = min(cols, c0 + tile)
                            for r in r0..<r1 {
                                for c in c0..<c1 { dm[c * rows + r] = sm[r * cols + c] }
                            }
                            c0 = c1
                        }
                    }
                }
            }
        }
        return dst
    }

    /// Element-wise `a ∘ b` for equal shapes, eight at a time, over the cores.
    @inline(__always)
    static func zipElements(_ a: Tensor, _ b: Tensor, _ op: String, _ f: (FastMath.V, FastMath.V) -> FastMath.V) -> Tensor {
        precondition(a.shape == b.shape, "\(op): shapes \(a.shape) and \(b.shape) differ")
        var out = Tensor(shape: a.shape)
        let n = a.count, vectors = (n + 7) / 8
        out.data.withUnsafeMutableBufferPointer { ob in
            let o = SharedPointer(ob.baseAddress!)
            a.data.withUnsafeBufferPointer { ap in
                b.data.withUnsafeBufferPointer { bp in
                    let x = ap.baseAddress!, y = bp.baseAddress!
                    Parallel.forEach(vectors, grain: Tensor.elementGrain / 8) { range in
                        let start = range.lowerBound * 8, end = min(n, range.upperBound * 8)
                        FastMath.zip(x + start, y + start, o.base + start, count: end - start, f)
                    }
                }
            }
        }
        return out
    }

    /// Element-wise sum. - Precondition: equal shapes.
    public static func + (a: Tensor, b: Tensor) -> Tensor { zipElements(a, b, "+") { $0 + $1 } }

    /// Element-wise difference. - Precondition: equal shapes.
    public static func - (a: Tensor, b: Tensor) -> Tensor { zipElements(a, b, "-") { $0 - $1 } }

    /// Every element times `s`.
    public static func * (a: Tensor, s: Float) -> Tensor {
        let v = FastMath.V(repeating: s)
        return a.mapElements { $0 * v }
    }

    /// Every element plus `s` (with `*`, the VAE's `x / 2 + 0.5` to image range).
    public static func + (a: Tensor, s: Float) -> Tensor {
        let v = FastMath.V(repeating: s)
        return a.mapElements { $0 + v }
    }

    /// Every element limited to `range` (`torch.clamp`); NaN stays NaN.
    public func clamped(to range: ClosedRange<Float>) -> Tensor {
        let lo = FastMath.V(repeating: range.lowerBound), hi = FastMath.V(repeating: range.upperBound)
        return mapElements { x in
            x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
        }
    }

    /// Adds a per-channel bias to an NCHW (or `[N, C, ...]`) tensor.
    ///
    /// - Parameter b: `[C]`, the same for every sample, or `[N, C]`, one row per sample (a ResNet
    ///   block's projected time embedding).
    /// - Returns: the same shape, `self[n, c, ...] + b[c]` or `+ b[n, c]`.
    public func addingChannelBias(_ b: Tensor) -> Tensor {
        precondition(rank >= 2, "addingChannelBias takes [N, C, ...], got \(shape)")
        let n = shape[0], c = shape[1]
        let perSample: Bool
        if b.shape == [c] || (b.rank == 2 && b.shape == [1, c]) {
            perSample = false
        } else {
            precondition(b.shape == [n, c], "addingChannelBias: bias \(b.shape) is neither [\(c)] nor [\(n), \(c)]")
            perSample = true
        }
        let spatial = shape.dropFirst(2).reduce(1, *)
        var out = Tensor(shape: shape)
        out.data.withUnsafeMutableBufferPointer { ob in
            let o = SharedPointer(ob.baseAddress!)
            data.withUnsafeBufferPointer { xb in
                b.data.withUnsafeBufferPointer { bb in
                    let x = xb.baseAddress!, bias = bb.baseAddress!
                    Parallel.forEach(n * c, grain: max(1, Tensor.elementGrain / max(1, spatial))) { range in
                        for plane in range {
                            let v = FastMath.V(repeating: bias[perSample ? plane : plane % c])
                            FastMath.map(x + plane * spatial, o.base + plane * spatial, count: spatial) { $0 + v }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Stacks tensors along the first (batch) dimension (`torch.cat(tensors, dim=0)`), as
    /// classifier-free guidance does with the unconditional and conditional inputs.
    ///
    /// - Precondition: at least one tensor; all equal outside the first dimension.
    public static func concatBatch(_ tensors: [Tensor]) -> Tensor {
        precondition(!tensors.isEmpty, "concatBatch needs at least one tensor")
        let rest = tensors[0].shape.dropFirst()
        precondition(tensors.allSatisfy { $0.rank >= 1 && $0.shape.dropFirst() == rest },
                     "concatBatch: shapes \(tensors.map(\.shape)) differ outside the batch dimension")
        var data = [Float]()
        data.reserveCapacity(tensors.reduce(0) { $0 + $1.count })
        for t in tensors { data.append(contentsOf: t.data) }
        return Tensor(shape: [tensors.reduce(0) { $0 + $1.shape[0] }] + rest, data: data)
    }

    /// Samples `range` of the batch dimension (`x[range]`), keeping the batch dimension.
    public func slice(batch range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0],
                     "slice(batch: \(range)) out of bounds for \(shape)")
        let per = shape.dropFirst().reduce(1, *)
        return Tensor(shape: [range.count] + shape.dropFirst(),
                      data: Array(data[(range.lowerBound * per)..<(range.upperBound * per)]))
    }

    /// Sample `index` of the batch dimension, keeping the batch dimension: `[1, ...]` (`x[i:i+1]`).
    public func slice(batch index: Int) -> Tensor { slice(batch: index..<(index + 1)) }
}

// In-place forms for networks whose feature maps are large and many (RRDBNet's dense blocks): no
// allocation, one pass.
extension Tensor {
    /// `self = self · scale + other` element-wise, in place (a residual scaled before it is added).
    /// - Precondition: equal shapes.
    public mutating func formScaledSum(_ scale: Float, plus other: Tensor) {
        precondition(shape == other.shape, "formScaledSum: shapes \(shape) and \(other.shape) differ")
        let s = FastMath.V(repeating: scale), n = count
        data.withUnsafeMutableBufferPointer { xb in
            let x = SharedPointer(xb.baseAddress!)
            other.data.withUnsafeBufferPointer { yb in
                let y = yb.baseAddress!
                Parallel.forEach((n + 7) / 8, grain: Tensor.elementGrain / 8) { range in
                    let start = range.lowerBound * 8, end = min(n, range.upperBound * 8)
                    FastMath.zip(x.base + start, y + start, x.base + start, count: end - start) { $0 * s + $1 }
                }
            }
        }
    }

    /// Appends `other`'s channels after this tensor's, in place (`torch.cat([self, other], dim=1)`
    /// for a batch of one). With `reserveChannels` called first the existing channels are not
    /// copied again, so a dense block's growing input costs one copy of each new map.
    /// - Precondition: a batch of one; equal sizes past the channels.
    public mutating func appendChannels(_ other: Tensor) {
        precondition(rank >= 2 && shape[0] == 1 && other.rank == rank && other.shape[0] == 1
                     && other.shape.dropFirst(2) == shape.dropFirst(2),
                     "appendChannels: \(other.shape) onto \(shape)")
        var grown = shape
        grown[1] += other.shape[1]
        var buffer = data
        data = []  // the buffer's only reference is now `buffer`: appending does not copy it
        buffer.append(contentsOf: other.data)
        self = Tensor(shape: grown, data: buffer)
    }

    /// Makes room for `channels` channels in all without moving the data again (see `appendChannels`).
    public mutating func reserveChannels(_ channels: Int) {
        let plane = shape.dropFirst(2).reduce(1, *) * shape[0]
        data.reserveCapacity(channels * plane)
    }
}
