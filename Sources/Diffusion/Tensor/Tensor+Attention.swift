import Foundation

// Scaled dot-product attention, blocked over queries.
//
// Work is cut into tasks of (batch, head, block of `queryBlock` queries). A task computes the
// score block S = scale · Q_blk · K_hᵀ ([rows, Nk]) with one sgemm, softmaxes its rows in place,
// and multiplies by V_h with a second sgemm straight into the output. Heads are read in place from
// the [B, N, H·D] layout through the sgemm row strides, so nothing is transposed or copied.
// Each worker owns one score block, so memory is `workers · queryBlock · Nk` floats (2 × 128 ×
// 4096 × 4 B = 4 MB at 512×512), never the full [H, Nq, Nk] tensor (1 GB for SD1.5's 4096 tokens).
// The tasks run on our workers, each calling a single-threaded sgemm.
//
// Measured (make bench): see the numbers recorded at the end of this comment block.

extension Tensor {
    /// The score-block budget per worker, in floats (2 MB): `queryBlock = budget / Nk`.
    static let attentionScoreBudget = 1 << 19

    /// Multi-head scaled dot-product attention, `softmax(Q·Kᵀ / √D) · V` per head.
    ///
    /// - Parameters:
    ///   - q: `[B, Nq, H·D]`, already projected.
    ///   - k, v: `[B, Nk, H·D]` (Nk = 77 for the UNet's cross-attention).
    ///   - heads: `H`; the channel count must be a multiple of it.
    ///   - causal: query `i` attends to keys `0...i` only (CLIP's text encoder); needs `Nq == Nk`.
    /// - Returns: `[B, Nq, H·D]`, heads concatenated along the channels as before the output projection.
    public static func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, causal: Bool = false) -> Tensor {
        attention(q: q, k: k, v: v, heads: heads, causal: causal, scoreBudget: attentionScoreBudget)
    }

    /// `attention` with an explicit score-block budget, so tests can force many query blocks.
    static func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, causal: Bool, scoreBudget: Int) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention takes [B, N, C] tensors, got \(q.shape) \(k.shape) \(v.shape)")
        let b = q.shape[0], nq = q.shape[1], channels = q.shape[2], nk = k.shape[1]
        precondition(k.shape == [b, nk, channels] && v.shape == k.shape, "attention: k \(k.shape) and v \(v.shape) do not match q \(q.shape)")
        precondition(heads > 0 && channels % heads == 0, "attention: \(heads) heads do not divide \(channels) channels")
        precondition(!causal || nq == nk, "causal attention needs as many queries as keys")
        let d = channels / heads
        let scale = 1 / Float(d).squareRoot()
        var out = Tensor(shape: [b, nq, channels])
        if nq == 0 || nk == 0 { return out }

        let queryBlock = max(1, min(nq, scoreBudget / nk))
        let blocks = (nq + queryBlock - 1) / queryBlock
        let tasks = b * heads * blocks
        let workers = min(Parallel.workers, tasks)
        var scores = [Float](repeating: 0, count: workers * queryBlock * nk)

        out.data.withUnsafeMutableBufferPointer { ob in
            let o = SharedPointer(ob.baseAddress!)
            scores.withUnsafeMutableBufferPointer { sb in
                let s = SharedPointer(sb.baseAddress!)
                q.data.withUnsafeBufferPointer { qb in
                    k.data.withUnsafeBufferPointer { kb in
                        v.data.withUnsafeBufferPointer { vb in
                            let qp = qb.baseAddress!, kp = kb.baseAddress!, vp = vb.baseAddress!
                            BLAS.withSingleThread {
                                Parallel.forEachWorker(tasks) { worker, range in
                                    let block = s.base + worker * queryBlock * nk
                                    var inverseSums = [Float](repeating: 0, count: queryBlock)
                                    for task in range {
                                        let batch = task / (heads * blocks)
                                        let head = (task / blocks) % heads
                                        let q0 = (task % blocks) * queryBlock
                                        let rows = min(queryBlock, nq - q0)
                                        let headOffset = head * d
                                        let qRows = qp + (batch * nq + q0) * channels + headOffset
                                        let kHead = kp + batch * nk * channels + headOffset
                                        let vHead = vp + batch * nk * channels + headOffset
                                        // S = scale · Q Kᵀ   [rows, Nk]
                                        BLAS.sgemm(transB: true, m: rows, n: nk, k: d, alpha: scale,
                                                   a: qRows, lda: channels, b: kHead, ldb: channels,
                                                   c: block, ldc: nk)
                                        // Unnormalised softmax: P = exp(S − rowmax), the 1/Σ applied to O afterwards
                                        // (D values per row instead of Nk).
                                        // Causal blocks need only the keys up to their last query.
                                        let keys = causal ? min(nk, q0 + rows) : nk
                                        for r in 0..<rows {
                                            let row = block + r * nk
                                            let visible = causal ? q0 + r + 1 : nk
                                            let sum = FastMath.expShiftedSum(row, count: visible, shift: FastMath.max(row, count: visible))
                                            inverseSums[r] = 1 / sum
                                            if visible < keys { (row + visible).update(repeating: 0, count: keys - visible) }
                                        }
                                        // O = P V   [rows, D], then each row times 1/Σ.
                                        let outRows = o.base + (batch * nq + q0) * channels + headOffset
                                        BLAS.sgemm(m: rows, n: d, k: keys, a: block, lda: nk, b: vHead, ldb: channels,
                                                   c: outRows, ldc: channels)
                                        for r in 0..<rows {
                                            let inv = FastMath.V(repeating: inverseSums[r])
                                            FastMath.map(outRows + r * channels, outRows + r * channels, count: d) { $0 * inv }
                                        }
                                    }
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
