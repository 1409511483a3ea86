import Foundation

// Normalisations, PyTorch's definitions: biased variance, eps inside the square root,
// y = (x − mean) / sqrt(var + eps) · weight + bias, computed as y = x·scale + shift per channel
// (scale = weight / sqrt(var + eps), shift = bias − mean·scale), as torch's CPU kernel does.
// Statistics are two-pass (mean, then squared deviations) with Float partial sums over 512
// elements folded into a Double, so a 4-million-element VAE group loses no precision.

extension Tensor {
    /// `nn.GroupNorm`: normalises each of `groups` channel groups of each sample over its channels
    /// and all spatial positions, then applies the per-channel affine.
    ///
    /// - Parameters:
    ///   - groups: the number of groups; must divide the channel count (SD uses 32).
    ///   - weight, bias: `[C]`.
    ///   - eps: added to the variance inside the square root.
    ///   - fusedSiLU: apply `x·sigmoid(x)` to the result in the same pass (ResNet blocks do).
    /// - Returns: the same shape.
    /// - Precondition: `self` is `[N, C, ...]` with rank ≥ 2.
    public func groupNorm(groups: Int, weight: Tensor, bias: Tensor, eps: Float, fusedSiLU: Bool = false) -> Tensor {
        var out = Tensor(uninitializedShape: shape)
        out.data.withUnsafeMutableBufferPointer { ob in
            data.withUnsafeBufferPointer { xb in
                Tensor.groupNorm(xb.baseAddress!, into: ob.baseAddress!, shape: shape, groups: groups, weight: weight, bias: bias,
                                 eps: eps, fusedSiLU: fusedSiLU)
            }
        }
        return out
    }

    /// `groupNorm` written over this tensor's own elements: a feature map its caller no longer needs
    /// is normalised without a second buffer of its size (the VAE's 256-channel maps at 512×512 are
    /// 256 MB each). A shared buffer is copied first, as any mutation of a shared tensor is.
    public mutating func formGroupNorm(groups: Int, weight: Tensor, bias: Tensor, eps: Float, fusedSiLU: Bool = false) {
        let shape = shape
        data.withUnsafeMutableBufferPointer { xb in
            Tensor.groupNorm(xb.baseAddress!, into: xb.baseAddress!, shape: shape, groups: groups, weight: weight, bias: bias,
                             eps: eps, fusedSiLU: fusedSiLU)
        }
    }

    /// The group norm of `shape`'s elements at `x` into `o`, which may be `x` itself: each group's
    /// statistics are taken before any of its elements is written, and each element is then
    /// written from itself alone.
    private static func groupNorm(_ x: UnsafePointer<Float>, into o: UnsafeMutablePointer<Float>, shape: [Int], groups: Int,
                                  weight: Tensor, bias: Tensor, eps: Float, fusedSiLU: Bool) {
        precondition(shape.count >= 2, "groupNorm input must be [N, C, ...], got \(shape)")
        let n = shape[0], c = shape[1]
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(groups) groups do not divide \(c) channels")
        precondition(weight.count == c && bias.count == c, "groupNorm: weight \(weight.shape) / bias \(bias.shape) are not [\(c)]")
        let spatial = shape.dropFirst(2).reduce(1, *)
        let perGroup = c / groups
        let out = SharedPointer(o)
        weight.data.withUnsafeBufferPointer { wb in
            bias.data.withUnsafeBufferPointer { bb in
                let w = wb.baseAddress!, b = bb.baseAddress!
                Parallel.forEach(n * groups, grain: max(1, 32768 / max(1, perGroup * spatial))) { range in
                    for item in range {
                        let g = item % groups
                        let start = item * perGroup * spatial
                        let (mean, rstd) = Tensor.moments(x + start, count: perGroup * spatial, eps: eps)
                        for ci in 0..<perGroup {
                            let ch = g * perGroup + ci
                            let scale = rstd * w[ch]
                            let shift = b[ch] - mean * scale
                            Tensor.affine(x + start + ci * spatial, out.base + start + ci * spatial, count: spatial,
                                          scale: scale, shift: shift, silu: fusedSiLU)
                        }
                    }
                }
            }
        }
    }

    /// `nn.LayerNorm` over the last dimension.
    ///
    /// - Parameters:
    ///   - weight, bias: `[D]`, the last dimension's size.
    ///   - eps: added to the variance inside the square root.
    /// - Returns: the same shape.
    public func layerNorm(weight: Tensor, bias: Tensor, eps: Float) -> Tensor {
        precondition(rank >= 1, "layerNorm needs at least one dimension")
        let d = shape[rank - 1]
        precondition(weight.count == d && bias.count == d, "layerNorm: weight \(weight.shape) / bias \(bias.shape) are not [\(d)]")
        let rows = d == 0 ? 0 : count / d
        var out = Tensor(uninitializedShape: shape)
        out.data.withUnsafeMutableBufferPointer { ob in
            let o = SharedPointer(ob.baseAddress!)
            data.withUnsafeBufferPointer { xb in
                weight.data.withUnsafeBufferPointer { wb in
                    bias.data.withUnsafeBufferPointer { bb in
                        let x = xb.baseAddress!, w = wb.baseAddress!, b = bb.baseAddress!
                        Parallel.forEach(rows, grain: max(1, 16384 / max(1, d))) { range in
                            for r in range {
                                let (mean, rstd) = Tensor.moments(x + r * d, count: d, eps: eps)
                                let src = x + r * d, dst = o.base + r * d
                                for i in 0..<d { dst[i] = (src[i] - mean) * rstd * w[i] + b[i] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Mean and `1 / sqrt(biased variance + eps)` of `count` floats, two-pass.
    @inline(__always)
    static func moments(_ p: UnsafePointer<Float>, count: Int, eps: Float) -> (mean: Float, rstd: Float) {
        if count == 0 { return (0, 1 / eps.squareRoot()) }
        let mean = Float(chunkedSum(p, count) { $0 } / Double(count))
        let m = SIMD8<Float>(repeating: mean)
        let variance = Float(chunkedSum(p, count) { ($0 - m) * ($0 - m) } / Double(count))
        return (mean, 1 / (variance + eps).squareRoot())
    }

    /// `Σ f(x)` over `count` floats: eight Float lanes per 512-element chunk, chunks summed in Double.
    @inline(__always)
    static func chunkedSum(_ p: UnsafePointer<Float>, _ count: Int, _ f: (SIMD8<Float>) -> SIMD8<Float>) -> Double {
        let raw = UnsafeRawPointer(p)
        var total: Double = 0
        var i = 0
        while i + 8 <= count {
            let end = min(count & ~7, i + 512)
            var acc = SIMD8<Float>()
            while i < end {
                acc += f(raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
                i += 8
            }
            total += Double(acc.sum())
        }
        if i < count {
            var tail = SIMD8<Float>()
            for j in i..<count { tail[j - i] = p[j] }
            // Padding lanes must contribute 0 after f; f(0) is 0 for a plain sum, not for deviations.
            let mask = SIMD8<Float>((0..<8).map { $0 < count - i ? 1 : 0 })
            total += Double((f(tail) * mask).sum())
        }
        return total
    }

    /// `dst = src·scale + shift`, then optionally `dst·sigmoid(dst)`.
    @inline(__always)
    static func affine(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int,
                       scale: Float, shift: Float, silu: Bool) {
        let a = FastMath.V(repeating: scale), b = FastMath.V(repeating: shift)
        if silu {
            FastMath.map(src, dst, count: count) { x in
                let v = x * a + b
                return v * FastMath.sigmoid(v)
            }
        } else {
            FastMath.map(src, dst, count: count) { $0 * a + b }
        }
    }
}
