import Foundation

// Element-wise activations and softmax, split over the cores in fixed contiguous ranges.
// exp and erf are FastMath's branch-free versions so these loops vectorise.

extension Tensor {
    /// The fewest elements worth handing to a second core.
    static let elementGrain = 1 << 15

    /// Applies `f` to every element, eight at a time, over the cores (ranges cut at multiples of
    /// 8 so every element goes through the same vector path).
    @inline(__always)
    func mapElements(_ f: (FastMath.V) -> FastMath.V) -> Tensor {
        var out = Tensor(uninitializedShape: shape)
        let vectors = (count + 7) / 8
        out.data.withUnsafeMutableBufferPointer { ob in
            let o = SharedPointer(ob.baseAddress!)
            data.withUnsafeBufferPointer { xb in
                let x = xb.baseAddress!, n = count
                Parallel.forEach(vectors, grain: Tensor.elementGrain / 8) { range in
                    let start = range.lowerBound * 8, end = min(n, range.upperBound * 8)
                    FastMath.map(x + start, o.base + start, count: end - start, f)
                }
            }
        }
        return out
    }

    /// ReLU, `max(x, 0)`.
    public func relu() -> Tensor { mapElements { $0.replacing(with: 0, where: $0 .< 0) } }

    /// `mapElements` written over this tensor's own elements, with the same ranges and vector path.
    @inline(__always)
    mutating func formMapElements(_ f: (FastMath.V) -> FastMath.V) {
        let n = count
        data.withUnsafeMutableBufferPointer { buffer in
            let x = SharedPointer(buffer.baseAddress!)
            Parallel.forEach((n + 7) / 8, grain: Tensor.elementGrain / 8) { range in
                let start = range.lowerBound * 8, end = min(n, range.upperBound * 8)
                FastMath.map(x.base + start, x.base + start, count: end - start, f)
            }
        }
    }

    /// `relu()` in place: the same values, without a second map to allocate and fill.
    public mutating func formReLU() { formMapElements { $0.replacing(with: 0, where: $0 .< 0) } }

    /// Leaky ReLU: `x` where `x ≥ 0`, `slope · x` below (torch `nn.LeakyReLU(negative_slope)`).
    public func leakyReLU(slope: Float) -> Tensor {
        let s = FastMath.V(repeating: slope)
        return mapElements { $0.replacing(with: $0 * s, where: $0 .< 0) }
    }

    /// `leakyReLU(slope:)` in place: no second buffer, for maps too large to hold twice (an upscaler's
    /// full-resolution features are 184 MB a tile).
    public mutating func formLeakyReLU(slope: Float) {
        let s = FastMath.V(repeating: slope)
        formMapElements { $0.replacing(with: $0 * s, where: $0 .< 0) }
    }

    /// SiLU (swish): `x · sigmoid(x)`.
    public func silu() -> Tensor { mapElements { $0 * FastMath.sigmoid($0) } }

    /// Exact GELU, `x/2 · (1 + erf(x/√2))` (torch's default, `approximate='none'`).
    public func gelu() -> Tensor { mapElements(FastMath.gelu) }

    /// CLIP's quick GELU, `x · sigmoid(1.702·x)`.
    public func quickGELU() -> Tensor { mapElements { $0 * FastMath.sigmoid(1.702 * $0) } }

    /// diffusers' `GEGLU` after its projection: the last dimension `2·D` is split into halves
    /// `[a, gate]` and the result is `a · gelu(gate)`.
    ///
    /// - Returns: the same leading dimensions, last dimension `D`.
    /// - Precondition: the last dimension is even.
    public func geglu() -> Tensor {
        precondition(rank >= 1 && shape[rank - 1] % 2 == 0, "geglu needs an even last dimension, got \(shape)")
        let twoD = shape[rank - 1], d = twoD / 2
        let rows = d == 0 ? 0 : count / twoD
        var outShape = shape
        outShape[rank - 1] = d
        var out = Tensor(uninitializedShape: outShape)
        out.data.withUnsafeMutableBufferPointer { ob in
            let o = SharedPointer(ob.baseAddress!)
            data.withUnsafeBufferPointer { xb in
                let x = xb.baseAddress!
                Parallel.forEach(rows, grain: max(1, Tensor.elementGrain / max(1, d))) { range in
                    for r in range {
                        let a = x + r * twoD, gate = a + d, dst = o.base + r * d
                        FastMath.zip(a, gate, dst, count: d) { $0 * FastMath.gelu($1) }
                    }
                }
            }
        }
        return out
    }

    /// Softmax over the last dimension (max-subtracted, so large logits do not overflow).
    public func softmax() -> Tensor {
        precondition(rank >= 1, "softmax needs at least one dimension")
        let d = shape[rank - 1]
        let rows = d == 0 ? 0 : count / d
        var out = self
        out.data.withUnsafeMutableBufferPointer { ob in
            let o = SharedPointer(ob.baseAddress!)
            Parallel.forEach(rows, grain: max(1, Tensor.elementGrain / max(1, d))) { range in
                for r in range { Tensor.softmaxRow(o.base + r * d, count: d) }
            }
        }
        return out
    }

    /// Softmax of one row in place.
    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int) {
        if count == 0 { return }
        let sum = FastMath.expShiftedSum(row, count: count, shift: FastMath.max(row, count: count))
        let inv = FastMath.V(repeating: 1 / sum)
        FastMath.map(row, row, count: count) { $0 * inv }
    }
}
