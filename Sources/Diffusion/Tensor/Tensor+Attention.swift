import Foundation

// Scaled dot-product attention, blocked over queries. Two implementations:
//   - head dim 40 with at least 256 keys (SD1.5's 64×64 self-attention): the fused kernel at the
//     end of this file, register tiles of its own for Q·Kᵀ and P·V;
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
// Measured with `sdbench ops --threads 1 --clock cpu` (one core's CPU time on the shared 2-core
// machine, load 5–9; roof = cblas_sgemm on a large conv shape in the same run, 98–101 GFLOP/s),
// 2026-11-25, dense FLOPs (4·B·H·Nq·Nk·D). Before = main at 2b456dd (baseline x86-64 codegen,
// sgemm path for all), after = this file with the AVX2 + FMA release build (Package.swift):
//                                           before              after
//   unet self-attn 64×64, 8 heads, D 40     46 GFLOP/s  0.46    67–70 GFLOP/s  0.69–0.70  (fused)
//   unet cross-attn 64×64 × 77 keys, D 40   33          0.32    38–40          0.38–0.40  (0.8 GFLOP)
//   unet self-attn 32×32, D 80              65          0.64    73–74          0.71–0.74
//   unet self-attn 16×16, D 160             76          0.76    85             0.83–0.86
//   vae mid attn 64×64, 1 head, D 512       81          0.80    84–87          0.84–0.86
// Wall clock on both cores (load ~7, 2-thread roof 63–68): self-attn 64×64 0.49 → 0.69 of roof.
// On the sgemm path at 64×64 (`SDREPL_ATTENTION_KERNEL=blas`) the AVX2 build alone gives 0.55–0.56:
// the rest of the sgemm path's time is OpenBLAS at K = 40 / N = 40 and its packing of the score
// block. In the fused kernel (perf, after): Q·Kᵀ ~30 %, softmax exp ~25 %, P·V ~40 %; the exp
// stays unfused because LLVM scalarises chained `addingProduct`s on SIMD8 (see softmaxExpSum).

extension Tensor {
    /// The score-block budget per worker, in floats (2 MB): `queryBlock = budget / Nk`.
    static let attentionScoreBudget = 1 << 19

    /// Whether head dim 40 uses the fused kernel below; `SDREPL_ATTENTION_KERNEL=blas` in the
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

        // With CLIP's 77 keys the two sgemms measured faster (0.40 vs 0.36 of roof); the fused
        // kernel wins where the score rows are long.
        if d == fusedHeadDim && !causal && nk >= 256 && fusedAttentionEnabled {
            attentionFused40(q: q, k: k, v: v, heads: heads, scale: scale, into: &out)
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

// MARK: - fused kernel for head dim 40

// SD1.5's 64×64 transformer blocks have 8 heads of 40 channels, where OpenBLAS is weak: Q·Kᵀ has
// K = 40 and P·V has N = 40, and every call re-packs the score block. This kernel does both
// products with register tiles of its own on `SIMD8<Float>` (AVX2 + FMA in release builds, see
// Package.swift), with K and V of the current head re-laid once per worker so that every tile
// reads them contiguously:
//   Kᵀ_h  [Nk'/16, 40, 16]  (Nk' = Nk rounded up to 16, padding keys zero): panels of 16 keys,
//         so one 6×16 step of Q·Kᵀ reads 2.5 KB contiguously
//   V_h   [Nk', 40]  (padding rows zero)
// For each tile of 6 queries: S = (scale·Q)·Kᵀ_h into a 6 × Nk' scratch row block (6×16 outputs
// per step, 12 accumulators, the row maxima kept as the tiles are stored), softmax rows in place
// (padding keys set to −∞ first), then O = P·V_h two rows × 40 columns at a time, each row times
// its 1/Σ. Every row sees all its keys at once, so this is the exact two-pass softmax, not an
// online one; memory stays bounded because a tile holds 6 rows. Scratch per worker:
// 2 · 40 · Nk' + 6 · Nk' floats (1.4 MB at 4096 keys, which the 1 MB L2 nearly holds). The tiles'
// multiply-adds are fused (`addingProduct`), so an unoptimised build without AVX2 calls `fmaf` per
// lane: correct, slow.
extension Tensor {
    /// Query rows per register tile.
    static let fusedTileRows = 6
    /// The head dimension the fused kernel is written for.
    static let fusedHeadDim = 40

    static func attentionFused40(q: Tensor, k: Tensor, v: Tensor, heads: Int, scale: Float, into out: inout Tensor) {
        typealias V8 = SIMD8<Float>
        let d = fusedHeadDim, tile = fusedTileRows
        let b = q.shape[0], nq = q.shape[1], channels = q.shape[2], nk = k.shape[1]
        let nkPad = (nk + 15) & ~15
        // Tasks of `tilesPerTask` tiles; consecutive tasks share a head, so a worker re-lays K and V
        // only when its range crosses into the next head.
        let tilesPerTask = 8
        let tiles = (nq + tile - 1) / tile
        let chunks = (tiles + tilesPerTask - 1) / tilesPerTask
        let tasks = b * heads * chunks
        let workers = min(Parallel.workers, tasks)
        let perWorker = 2 * d * nkPad + tile * nkPad + tile * d + tile * 8
        var scratch = [Float](repeating: 0, count: workers * perWorker)

        out.data.withUnsafeMutableBufferPointer { ob in
            let o = SharedPointer(ob.baseAddress!)
            scratch.withUnsafeMutableBufferPointer { sb in
                let sbase = SharedPointer(sb.baseAddress!)
                q.data.withUnsafeBufferPointer { qb in
                    k.data.withUnsafeBufferPointer { kb in
                        v.data.withUnsafeBufferPointer { vb in
                            let qp = qb.baseAddress!, kp = kb.baseAddress!, vp = vb.baseAddress!
                            Parallel.forEachWorker(tasks) { worker, range in
                                let kt = sbase.base + worker * perWorker  // [nkPad/16, d, 16]
                                let vh = kt + d * nkPad                   // [nkPad, d]
                                let s = vh + nkPad * d                    // [tile, nkPad]
                                let qt = s + tile * nkPad                 // [tile, d], scaled
                                let mx = qt + tile * d                    // [tile, 8], running row maxima
                                let mxRaw = UnsafeMutableRawPointer(mx)
                                let ktRaw = UnsafeRawPointer(kt), vhRaw = UnsafeRawPointer(vh)
                                let sRaw = UnsafeMutableRawPointer(s)
                                var currentHead = -1
                                var inverseSums = [Float](repeating: 0, count: tile)
                                for task in range {
                                    let bh = task / chunks
                                    let batch = bh / heads, head = bh % heads
                                    if bh != currentHead {
                                        currentHead = bh
                                        let kHead = kp + batch * nk * channels + head * d
                                        let vHead = vp + batch * nk * channels + head * d
                                        for j in 0..<nk {
                                            let kr = kHead + j * channels
                                            let panel = kt + (j & ~15) * d + (j & 15)
                                            for e in 0..<d { panel[e * 16] = kr[e] }
                                            (vh + j * d).update(from: vHead + j * channels, count: d)
                                        }
                                        // The padding stays zero from the allocation: nkPad and d do not change.
                                    }
                                    let firstTile = (task % chunks) * tilesPerTask
                                    for t in firstTile..<min(tiles, firstTile + tilesPerTask) {
                                        let q0 = t * tile
                                        let rows = min(tile, nq - q0)
                                        for r in 0..<tile {
                                            if r < rows {
                                                let src = qp + (batch * nq + q0 + r) * channels + head * d
                                                for e in 0..<d { qt[r * d + e] = src[e] * scale }
                                            } else {
                                                (qt + r * d).update(repeating: 0, count: d)
                                            }
                                        }
                                        // S = (scale·Q) Kᵀ   [6, nkPad], 6×16 outputs per step.
                                        // Row maxima over the full 16-key panels are kept as the tiles are
                                        // stored (lane-wise, in mx), so softmax needs no separate max pass.
                                        mx.update(repeating: -.infinity, count: tile * 8)
                                        let fullKeys = nk & ~15
                                        var j = 0
                                        while j < nkPad {
                                            var a00 = V8(), a01 = V8(), a10 = V8(), a11 = V8(), a20 = V8(), a21 = V8()
                                            var a30 = V8(), a31 = V8(), a40 = V8(), a41 = V8(), a50 = V8(), a51 = V8()
                                            var kRow = ktRaw + j * d * 4
                                            var qe = qt
                                            for _ in 0..<d {
                                                let k0 = kRow.loadUnaligned(as: V8.self)
                                                let k1 = kRow.loadUnaligned(fromByteOffset: 32, as: V8.self)
                                                var x = V8(repeating: qe[0])
                                                a00 = a00.addingProduct(x, k0); a01 = a01.addingProduct(x, k1)
                                                x = V8(repeating: qe[d])
                                                a10 = a10.addingProduct(x, k0); a11 = a11.addingProduct(x, k1)
                                                x = V8(repeating: qe[2 * d])
                                                a20 = a20.addingProduct(x, k0); a21 = a21.addingProduct(x, k1)
                                                x = V8(repeating: qe[3 * d])
                                                a30 = a30.addingProduct(x, k0); a31 = a31.addingProduct(x, k1)
                                                x = V8(repeating: qe[4 * d])
                                                a40 = a40.addingProduct(x, k0); a41 = a41.addingProduct(x, k1)
                                                x = V8(repeating: qe[5 * d])
                                                a50 = a50.addingProduct(x, k0); a51 = a51.addingProduct(x, k1)
                                                kRow += 64
                                                qe += 1
                                            }
                                            let row = nkPad * 4, col = j * 4
                                            sRaw.storeBytes(of: a00, toByteOffset: col, as: V8.self)
                                            sRaw.storeBytes(of: a01, toByteOffset: col + 32, as: V8.self)
                                            sRaw.storeBytes(of: a10, toByteOffset: row + col, as: V8.self)
                                            sRaw.storeBytes(of: a11, toByteOffset: row + col + 32, as: V8.self)
                                            sRaw.storeBytes(of: a20, toByteOffset: 2 * row + col, as: V8.self)
                                            sRaw.storeBytes(of: a21, toByteOffset: 2 * row + col + 32, as: V8.self)
                                            sRaw.storeBytes(of: a30, toByteOffset: 3 * row + col, as: V8.self)
                                            sRaw.storeBytes(of: a31, toByteOffset: 3 * row + col + 32, as: V8.self)
                                            sRaw.storeBytes(of: a40, toByteOffset: 4 * row + col, as: V8.self)
                                            sRaw.storeBytes(of: a41, toByteOffset: 4 * row + col + 32, as: V8.self)
                                            sRaw.storeBytes(of: a50, toByteOffset: 5 * row + col, as: V8.self)
                                            sRaw.storeBytes(of: a51, toByteOffset: 5 * row + col + 32, as: V8.self)
                                            if j < fullKeys {
                                                raiseMax(mxRaw, 0, a00, a01); raiseMax(mxRaw, 32, a10, a11)
                                                raiseMax(mxRaw, 64, a20, a21); raiseMax(mxRaw, 96, a30, a31)
                                                raiseMax(mxRaw, 128, a40, a41); raiseMax(mxRaw, 160, a50, a51)
                                            }
                                            j += 16
                                        }
                                        // Unnormalised softmax per row; rows past `rows` hold zeros and are never stored.
                                        for r in 0..<rows {
                                            let row = s + r * nkPad
                                            var m = mxRaw.loadUnaligned(fromByteOffset: r * 32, as: V8.self).max()
                                            if fullKeys < nk { m = Swift.max(m, FastMath.max(row + fullKeys, count: nk - fullKeys)) }
                                            if nkPad > nk { (row + nk).update(repeating: -.infinity, count: nkPad - nk) }
                                            inverseSums[r] = 1 / softmaxExpSum(row, count: nkPad, shift: m)
                                        }
                                        // O = P V_h   [6, 40], two rows × 40 columns per pass (10 accumulators;
                                        // each V vector loaded once for both rows).
                                        let outTile = o.base + (batch * nq + q0) * channels + head * d
                                        for r0 in stride(from: 0, to: rows, by: 2) {
                                            var a0 = V8(), a1 = V8(), a2 = V8(), a3 = V8(), a4 = V8()
                                            var b0 = V8(), b1 = V8(), b2 = V8(), b3 = V8(), b4 = V8()
                                            var vRow = vhRaw
                                            var pe = UnsafePointer(s + r0 * nkPad)
                                            for _ in 0..<nkPad {
                                                let x = V8(repeating: pe[0]), y = V8(repeating: pe[nkPad])
                                                var w = vRow.loadUnaligned(as: V8.self)
                                                a0 = a0.addingProduct(x, w); b0 = b0.addingProduct(y, w)
                                                w = vRow.loadUnaligned(fromByteOffset: 32, as: V8.self)
                                                a1 = a1.addingProduct(x, w); b1 = b1.addingProduct(y, w)
                                                w = vRow.loadUnaligned(fromByteOffset: 64, as: V8.self)
                                                a2 = a2.addingProduct(x, w); b2 = b2.addingProduct(y, w)
                                                w = vRow.loadUnaligned(fromByteOffset: 96, as: V8.self)
                                                a3 = a3.addingProduct(x, w); b3 = b3.addingProduct(y, w)
                                                w = vRow.loadUnaligned(fromByteOffset: 128, as: V8.self)
                                                a4 = a4.addingProduct(x, w); b4 = b4.addingProduct(y, w)
                                                vRow += d * 4
                                                pe += 1
                                            }
                                            var inv = V8(repeating: inverseSums[r0])
                                            var dst = UnsafeMutableRawPointer(outTile + r0 * channels)
                                            dst.storeBytes(of: a0 * inv, as: V8.self)
                                            dst.storeBytes(of: a1 * inv, toByteOffset: 32, as: V8.self)
                                            dst.storeBytes(of: a2 * inv, toByteOffset: 64, as: V8.self)
                                            dst.storeBytes(of: a3 * inv, toByteOffset: 96, as: V8.self)
                                            dst.storeBytes(of: a4 * inv, toByteOffset: 128, as: V8.self)
                                            if r0 + 1 < rows {
                                                inv = V8(repeating: inverseSums[r0 + 1])
                                                dst += channels * 4
                                                dst.storeBytes(of: b0 * inv, as: V8.self)
                                                dst.storeBytes(of: b1 * inv, toByteOffset: 32, as: V8.self)
                                                dst.storeBytes(of: b2 * inv, toByteOffset: 64, as: V8.self)
                                                dst.storeBytes(of: b3 * inv, toByteOffset: 96, as: V8.self)
                                                dst.storeBytes(of: b4 * inv, toByteOffset: 128, as: V8.self)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The lane-wise maximum of the 8 floats at `raw + offset`, `u` and `w`, stored back.
    @inline(__always)
    static func raiseMax(_ raw: UnsafeMutableRawPointer, _ offset: Int, _ u: SIMD8<Float>, _ w: SIMD8<Float>) {
        let m = raw.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
        let uw = u.replacing(with: w, where: w .> u)
        raw.storeBytes(of: m.replacing(with: uw, where: uw .> m), toByteOffset: offset, as: SIMD8<Float>.self)
    }

    /// Replaces each of `count` (a multiple of 8) scores `x` by `exp(x − shift)` and returns their
    /// sum. `shift` is the row maximum, so the arguments are ≤ 0 (or −∞ for padding keys) and only
    /// the low end needs a clamp: below −87.34 the result is exp(−87.34) ≈ 1.2e-38 rather than 0,
    /// which no row sum notices and which meets only V's zero padding rows. Otherwise FastMath.exp's
    /// formula (Cephes `expf`, 1e-7 relative).
    @inline(__always)
    static func softmaxExpSum(_ p: UnsafeMutablePointer<Float>, count: Int, shift: Float) -> Float {
        typealias V8 = SIMD8<Float>
        let raw = UnsafeMutableRawPointer(p)
        let m = V8(repeating: shift), lo = V8(repeating: -87.3365447504)
        let magic = V8(repeating: 12_582_912), log2e = V8(repeating: 1.44269504088896341)
        let ln2Hi = V8(repeating: -0.693359375), ln2Lo = V8(repeating: 2.12194440e-4)
        var acc = V8()
        var i = 0
        while i < count {
            var x = raw.loadUnaligned(fromByteOffset: i * 4, as: V8.self) - m
            x = x.replacing(with: lo, where: x .< lo)
            // Plain multiplies and adds: LLVM scalarised some lanes of `addingProduct` here.
            let t = x * log2e + magic
            let n = t - magic
            let r = x + n * ln2Hi + n * ln2Lo
            var poly = V8(repeating: 1.9875691500e-4) * r + 1.3981999507e-3
            poly = poly * r + 8.3334519073e-3
            poly = poly * r + 4.1665795894e-2
            poly = poly * r + 1.6666665459e-1
            poly = poly * r + 5.0000001201e-1
            let y = poly * r * r + r + 1
            let nInt = unsafeBitCast(t, to: SIMD8<UInt32>.self) &- 0x4B40_0000
            let e = y * unsafeBitCast((nInt &+ 127) &<< 23, to: V8.self)
            raw.storeBytes(of: e, toByteOffset: i * 4, as: V8.self)
            acc += e
            i += 8
        }
        return acc.sum()
    }
}
