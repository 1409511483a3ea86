import Foundation

// Scaled dot-product attention, blocked over queries.
//
// Work is cut into tasks of (batch, head, block of `queryBlock` queries). A task computes the
// score block S = scale · Q_blk · K_hᵀ ([rows, Nk]) with one sgemm, softmaxes its rows in place,
// and multiplies by V_h with a second sgemm straight into the output. Heads are read in place from
// the [B, N, H·D] layout through the sgemm row strides, so nothing is transposed or copied.
// Each worker owns one score block, so memory is `workers · queryBlock · Nk` floats (2 × 128 ×
// 4096 × 4 B = 4 MB at 512×512), never the full [H, Nq, Nk] tensor (1 GB for SD1.5's 4096 tokens).
// The tasks run on our workers, each calling a single-threaded sgemm. Softmax takes two passes
// over the block (row max; exp and sum together) and the 1/Σ is applied to the D outputs of a row
// rather than its Nk probabilities.
//
// Measured with `sdbench ops --filter attn --threads 1 --clock cpu` (one core's CPU time on the
// shared 2-core machine; roof = cblas_sgemm on a large conv shape in the same run, 95–101
// GFLOP/s), 2026-11-25, dense FLOPs (4·B·H·Nq·Nk·D):
//   unet self-attn 64×64, 8 heads, D 40     41–45 GFLOP/s  0.42–0.45 of roof
//   unet cross-attn 64×64 × 77 keys, D 40   27–34          0.28–0.36   (0.8 GFLOP: small k)
//   unet self-attn 32×32, D 80              56–62          0.58–0.65
//   unet self-attn 16×16, D 160             70–76          0.72–0.78
//   vae mid attn 64×64, 1 head, D 512       78–90          0.80–0.95
// For the 64×64 case perf shows ~50 % in the sgemm kernel (the K = 40 Q·Kᵀ and the K = 4096 P·V
// reach only 65–80 GFLOP/s alone), 22 % in exp (this target compiles for baseline x86-64, SSE;
// AVX2/AVX-512 codegen would halve it) and 14 % in OpenBLAS packing the score block. Score blocks
// of 64 or 256 queries measured the same within noise; 128 is kept. The fused, online-softmax
// kernel of issue 8 is what moves this.

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
