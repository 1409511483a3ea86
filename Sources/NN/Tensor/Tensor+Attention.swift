import Foundation

// Scaled dot-product attention, blocked over queries. Two implementations:
//   - head dims that are multiples of 40, not causal (all of SD1.5's UNet attention: D = 40, 80,
//     160 at 64×64, 32×32, 16×16, self and cross): FusedAttention (AttentionKernels.swift), a
//     flash-attention-style kernel with register tiles of its own for Q·Kᵀ and P·V;
//   - every other shape: two sgemms per block, below.
//
// The sgemm path cuts work into tasks of (batch, head, block of `queryBlock` queries). A task
// computes the score block S = scale · Q_blk · K_hᵀ ([rows, Nk]) with one sgemm, softmaxes its rows
// in place, and multiplies by V_h with a second sgemm straight into the output. Heads are read in
// place from the [B, N, H·D] layout through the sgemm row strides, so nothing is transposed or
// copied. Each worker owns one score block, so memory is `workers · queryBlock · Nk` floats (2 ×
// 128 × 4096 × 4 B = 4 MB at 512×512), never the full [H, Nq, Nk] tensor (1 GB for SD1.5's 4096
// tokens). The tasks run on our workers, each calling a single-threaded sgemm. Softmax takes two
// passes over the block (row max; exp and sum together) and the 1/Σ is applied to the D outputs of
// a row rather than its Nk probabilities. Both paths stop between tasks when `Interruption` asks.
//
// Reaches ~0.84 of the sgemm roof on the UNet's self-attention (FusedAttention; dense counts
// 4·B·H·Nq·Nk·D), about half of it on cross-attention's 77 keys (README "Performance").

extension Tensor {
    /// The score-block budget per worker, in floats (2 MB): `queryBlock = budget / Nk`.
    static let attentionScoreBudget = 1 << 19

    /// Whether FusedAttention is used where it applies; `SDREPL_ATTENTION_KERNEL=blas` in the
    /// environment selects the two-sgemm path for every shape (for benchmarks comparing the two).
    static let fusedAttentionEnabled = ProcessInfo.processInfo.environment["SDREPL_ATTENTION_KERNEL"] != "blas"

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
        if nq == 0 || nk == 0 { return Tensor(shape: [b, nq, channels]) }
        // Every output element is written by the P·V sgemm (beta = 0, at least one key per row).
        var out = Tensor(uninitializedShape: [b, nq, channels])

        // The fused kernel also wins with the 77 keys of the UNet's cross-attention (about 0.5 of
        // the roof against 0.3 for the two sgemms); CLIP's causal attention has D = 64.
        if FusedAttention.supports(headDim: d) && !causal && fusedAttentionEnabled {
            FusedAttention.run(q: q, k: k, v: v, heads: heads, scale: scale, into: &out)
            return out
        }

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
                                        if Interruption.isRequested { return }
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
