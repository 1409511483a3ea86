import Foundation

// The first half of the GEGLU feed-forward, `a · GELU(g)` where `[a, g] = x·Wᵀ + b`, in blocks of
// rows: each block's projection ([rows, 2·inner]) is made by one sgemm into a scratch buffer that
// stays in the last-level cache and is gated from there, so the projection, twice the width of the
// result, never goes out to memory and back (84 MB per call at the 64×64 level of a 512×512 UNet
// step, 336 MB at the 16×16 one).

extension Tensor {
    /// Floats of projection per block (8 MB): a quarter of the 32 MB L3, so the weight's packed
    /// panels and the gated output keep room beside it.
    static let gegluBlockFloats = 1 << 21

    /// `a · GELU(g)` where `[a, g]` are the halves of `self · weightᵀ + bias` along the last
    /// dimension (diffusers `GEGLU`: `proj(x).chunk(2, dim=-1)`, the first half gated by the second).
    ///
    /// - Parameters:
    ///   - weight: `[2·inner, in]`, PyTorch's layout.
    ///   - bias: `[2·inner]`, or nil.
    /// - Returns: `[..., inner]`.
    public func linearGEGLU(weight: Tensor, bias: Tensor?) -> Tensor {
        linearGEGLU(weight: weight, bias: bias, blockFloats: Tensor.gegluBlockFloats)
    }

    /// `linearGEGLU` with an explicit block size, so tests can force many blocks.
    func linearGEGLU(weight: Tensor, bias: Tensor?, blockFloats: Int) -> Tensor {
        precondition(weight.rank == 2 && weight.shape[0] % 2 == 0, "GEGLU weight must be [2·inner, in], got \(weight.shape)")
        let twoD = weight.shape[0], d = twoD / 2, inFeatures = weight.shape[1]
        precondition(rank >= 1 && shape[rank - 1] == inFeatures,
                     "linearGEGLU: input \(shape) does not end in \(inFeatures) (weight \(weight.shape))")
        if let bias { precondition(bias.count == twoD, "GEGLU bias \(bias.shape) is not [\(twoD)]") }
        let rows = inFeatures == 0 ? 0 : count / inFeatures
        guard rows > 0, inFeatures > 0 else { return linear(weight: weight, bias: bias).geglu() }
        var outShape = shape
        outShape[rank - 1] = d
        var out = Tensor(uninitializedShape: outShape)
        let blockRows = max(1, min(rows, blockFloats / twoD))
        var scratch = [Float](unsafeUninitializedCapacity: blockRows * twoD) { _, initialized in initialized = blockRows * twoD }
        out.data.withUnsafeMutableBufferPointer { ob in
            let o = SharedPointer(ob.baseAddress!)
            scratch.withUnsafeMutableBufferPointer { sb in
                let h = SharedPointer(sb.baseAddress!)
                data.withUnsafeBufferPointer { xb in
                    weight.data.withUnsafeBufferPointer { wb in
                        for r0 in stride(from: 0, to: rows, by: blockRows) {
                            let m = min(blockRows, rows - r0)
                            if let bias { Tensor.fillRows(h.base, rows: m, with: bias) }
                            BLAS.sgemm(transB: true, m: m, n: twoD, k: inFeatures,
                                       a: xb.baseAddress! + r0 * inFeatures, lda: inFeatures, b: wb.baseAddress!, ldb: inFeatures,
                                       beta: bias == nil ? 0 : 1, c: h.base, ldc: twoD)
                            Parallel.forEach(m, grain: max(1, Tensor.elementGrain / max(1, d))) { range in
                                for r in range {
                                    let a = h.base + r * twoD
                                    FastMath.zip(a, a + d, o.base + (r0 + r) * d, count: d) { $0 * FastMath.gelu($1) }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
