import Foundation

// A linear layer is one sgemm (M = batch·tokens) after copying the bias into the output rows, so
// it runs at the sgemm rate for its shape, less the bias copy, the beta = 1 read of C and the
// output's first touch (which is why the output skips its zero fill): ~0.95 of the sgemm roof in a
// UNet step (README "Performance").

extension Tensor {
    /// A PyTorch `nn.Linear`: `self · weightᵀ + bias` over the last dimension.
    ///
    /// - Parameters:
    ///   - weight: `[out, in]`, PyTorch's layout.
    ///   - bias: `[out]`, or nil.
    /// - Returns: `[..., out]`, the leading dimensions of `self` kept.
    /// - Precondition: `self`'s last dimension is `in`.
    public func linear(weight: Tensor, bias: Tensor?) -> Tensor {
        precondition(weight.rank == 2, "linear weight must be [out, in], got \(weight.shape)")
        let outFeatures = weight.shape[0], inFeatures = weight.shape[1]
        precondition(rank >= 1 && shape[rank - 1] == inFeatures,
                     "linear: input \(shape) does not end in \(inFeatures) (weight \(weight.shape))")
        if let bias { precondition(bias.count == outFeatures, "linear bias \(bias.shape) is not [\(outFeatures)]") }
        let rows = inFeatures == 0 ? count : count / inFeatures
        var outShape = shape
        outShape[rank - 1] = outFeatures
        // Every element is written: by the bias copy, or by the sgemm with beta = 0 (k = 0 would
        // leave C as it was, so that case keeps the zero fill).
        var out = inFeatures == 0 ? Tensor(shape: outShape) : Tensor(uninitializedShape: outShape)
        out.data.withUnsafeMutableBufferPointer { o in
            guard let c = o.baseAddress else { return }
            if let bias { Tensor.fillRows(c, rows: rows, with: bias) }
            data.withUnsafeBufferPointer { x in
                weight.data.withUnsafeBufferPointer { w in
                    BLAS.sgemm(transB: true, m: rows, n: outFeatures, k: inFeatures,
                               a: x.baseAddress!, lda: inFeatures, b: w.baseAddress!, ldb: inFeatures,
                               beta: bias == nil ? 0 : 1, c: c, ldc: outFeatures)
                }
            }
        }
        return out
    }

    /// Copies `row` into each of the `rows` rows of `c` (row length `row.count`), so a following
    /// sgemm with `beta = 1` adds the product to the bias in one pass.
    static func fillRows(_ c: UnsafeMutablePointer<Float>, rows: Int, with row: Tensor) {
        let n = row.count
        row.data.withUnsafeBufferPointer { b in
            let src = b.baseAddress!
            for r in 0..<rows { (c + r * n).update(from: src, count: n) }
        }
    }
}
