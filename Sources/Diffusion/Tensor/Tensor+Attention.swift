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
// a row rather than its Nk probabilities.
//
// Measured with `sdbench ops --threads 1 --clock cpu --filter attn` (CPU time of the process,
// roof = cblas_sgemm on a large conv shape in the same run), 2026-11-25, dense FLOPs
// (4·B·H·Nq·Nk·D), on the 2-core EPYC (Zen 3: 32 KB L1d, 512 KB L2 per core) while quiet (load
// < 1.3, roof 91–95 GFLOP/s single-core, 184–187 on both cores). Before = b4b882f (fused kernel
// for D = 40 only, two-pass softmax over all 4096 keys per 6-query tile; sgemm path elsewhere),
// after = FusedAttention as in AttentionKernels.swift:
//                                           one core, before → after       both cores (wall), before → after
//   unet self-attn 64×64, 8 heads, D 40     58 GFLOP/s 0.63 → 78  0.83–0.85   116 GFLOP/s 0.62 → 155  0.84
//   unet cross-attn 64×64 × 77 keys, D 40   34         0.37 → 49  0.54         69         0.37 → 104  0.56
//   unet self-attn 32×32, D 80              64         0.69 → 76–80 0.80–0.87  128        0.68 → 162  0.88
//   unet self-attn 16×16, D 160             (11 ms: CPU clock too coarse)       145        0.78 → 154  0.84
//   vae mid attn 64×64, 1 head, D 512       82         0.87 (sgemm path, unchanged)
// Where the old kernel lost time: its per-tile pass over all of K and V (1.3 MB per head, more than
// the L2) came from L3, and V was read three times per tile. Now 96 queries share each 256-key
// block of K and V while it sits in L2. perf on the 64×64 case, after: Q·Kᵀ ~42 %, P·V ~39 %
// (both at the sgemm roof's rate), exp2 ~11 %, packing and the online-softmax bookkeeping ~8 %.
// Those figures are on `sdbench ops`' constant inputs then, whose running row maxima never move.
// With varied inputs (uniform, any scale from ±0.1 to ±4, as `sdbench ops` now uses) the 64×64
// case measures 0.76–0.78 of the roof on both cores (wall, load 1.6–2, roof 186–189); inside the
// UNet step of `make bench` self-attention as a whole shows 0.61–0.67.
// The earlier note that LLVM scalarises chained `addingProduct`s did not hold for the exp2 here:
// written as `V8(repeating: c).addingProduct(p, f)` it compiles to one vfmadd213ps per step.

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

        // The fused kernel also wins with the 77 keys of the UNet's cross-attention (0.44–0.49 of
        // the roof vs 0.26–0.31 for the two sgemms, 2026-11-25); CLIP's causal attention has D = 64.
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
