import Foundation

/// Fused attention for head dims that are multiples of 40 (SD1.5's 64×64 blocks: 8 heads of 40;
/// see Tensor+Attention.swift for when it is chosen and what it measures). Flash-attention style:
/// the score block never leaves L1 and K, V stream from L2 rather than L3.
///
/// Work is cut into tasks of (batch, head, chunk of `chunkTiles · tileRows` = 96 queries). Per
/// head, a worker re-lays K and V once so that every tile reads them contiguously:
///   Kᵀ_h  [Nk'/16, D, 16]  (Nk' = Nk rounded up to 16, padding keys zero): panels of 16 keys
///   V_h   [Nk', D]         (padding rows zero)
/// A task walks the keys in blocks of `keyBlock` (256; its K and V, 80 KB at D = 40, stay in the
/// 512 KB L2 while all 16 tiles of the chunk pass over them). For each block and each tile of 6
/// queries:
///   1. S = Q'·Kᵀ  [6, 256]: 6×16 outputs per step in 12 accumulators, the rows' lane maxima kept
///      as the tiles are stored. Q' = Q · scale · log₂e, so the scores are in log₂ units and the
///      softmax takes powers of two.
///   2. Online softmax (Milakov & Gimelshein 2018; Dao et al. 2022): with m the row's running
///      maximum and ℓ its running sum, a block maximum m' > m rescales O and ℓ by 2^(m − m');
///      then P = 2^(S − m) in place and ℓ += ΣP.
///   3. O += P·V  [6, D]: two rows × 40 columns per pass (10 accumulators, each V vector loaded
///      once for both rows), V in sub-blocks of 64 keys that stay in L1 for the tile's three passes.
/// At the end of the chunk each O row is multiplied by 1/ℓ and stored. Every step's order is fixed
/// by the shapes, and a task is one worker's, so results are bit-identical run to run. Workers stop
/// between tasks when `Interruption` asks (a 2048×2048 picture's attention takes minutes).
///
/// The multiply-adds are `addingProduct` (FMA with AVX2 + FMA in release builds; an unoptimised
/// build without them calls `fmaf` per lane: correct, slow).
enum FusedAttention {
    typealias V8 = SIMD8<Float>

    /// Query rows per register tile.
    static let tileRows = 6
    /// Keys per softmax block: the running maximum and sum are updated once per block and row.
    static let keyBlock = 256
    /// Keys per P·V sub-block: V rows that stay in L1 while the tile's three row pairs pass over them.
    static let valueSubBlock = 64
    /// Register tiles per task: the queries that share one pass over K and V.
    static let chunkTiles = 16

    /// Whether the kernel handles this head dimension (P·V works in slabs of 40 columns).
    static func supports(headDim d: Int) -> Bool { d > 0 && d % 40 == 0 }

    /// `softmax(Q·Kᵀ · scale) · V` for every head, written into `out` ([B, Nq, H·D], every element).
    static func run(q: Tensor, k: Tensor, v: Tensor, heads: Int, scale: Float, into out: inout Tensor) {
        let b = q.shape[0], nq = q.shape[1], channels = q.shape[2], nk = k.shape[1]
        let d = channels / heads
        precondition(supports(headDim: d) && nq > 0 && nk > 0, "fused attention: head dim \(d), \(nq) queries, \(nk) keys")
        let nkPad = (nk + 15) & ~15
        let chunkRows = chunkTiles * tileRows
        let chunks = (nq + chunkRows - 1) / chunkRows
        let tasks = b * heads * chunks
        let workers = min(Parallel.workers, tasks)
        // exp(x) = 2^(x · log₂e): folding log₂e into Q saves a multiply per score.
        let qScale = scale * 1.44269504088896341
        let perWorker = 2 * nkPad * d + 2 * chunkRows * d + tileRows * keyBlock + tileRows * 8 + 9 * chunkRows
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
                                let vh = kt + nkPad * d                   // [nkPad, d]
                                let qs = vh + nkPad * d                   // [chunkRows, d], times qScale
                                let os = qs + chunkRows * d               // [chunkRows, d], unnormalised O
                                let s = os + chunkRows * d                // [tileRows, keyBlock]
                                let mx = s + tileRows * keyBlock          // [tileRows, 8], lane maxima
                                let rowMax = mx + tileRows * 8            // [chunkRows], running m
                                let rowSum = rowMax + chunkRows           // [chunkRows, 8], running ℓ as lane sums
                                var currentHead = -1
                                for task in range {
                                    if Interruption.isRequested { return }
                                    let bh = task / chunks
                                    let batch = bh / heads, head = bh % heads
                                    if bh != currentHead {
                                        currentHead = bh
                                        let kHead = kp + batch * nk * channels + head * d
                                        let vHead = vp + batch * nk * channels + head * d
                                        for j in 0..<nkPad {
                                            let panel = kt + (j & ~15) * d + (j & 15)
                                            if j < nk {
                                                let kr = kHead + j * channels
                                                for e in 0..<d { panel[e * 16] = kr[e] }
                                                (vh + j * d).update(from: vHead + j * channels, count: d)
                                            } else {
                                                for e in 0..<d { panel[e * 16] = 0 }
                                                (vh + j * d).update(repeating: 0, count: d)
                                            }
                                        }
                                    }
                                    let q0 = (task % chunks) * chunkRows
                                    let rows = min(chunkRows, nq - q0)
                                    let tiles = (rows + tileRows - 1) / tileRows
                                    // Rows past `rows` are zero queries: they compute a harmless
                                    // uniform softmax and are never stored.
                                    for r in 0..<tiles * tileRows {
                                        if r < rows {
                                            let src = UnsafeRawPointer(qp + (batch * nq + q0 + r) * channels + head * d)
                                            let dst = UnsafeMutableRawPointer(qs + r * d), f = V8(repeating: qScale)
                                            for i in stride(from: 0, to: d * 4, by: 32) {
                                                dst.storeBytes(of: src.loadUnaligned(fromByteOffset: i, as: V8.self) * f, toByteOffset: i, as: V8.self)
                                            }
                                        } else {
                                            (qs + r * d).update(repeating: 0, count: d)
                                        }
                                    }
                                    os.update(repeating: 0, count: tiles * tileRows * d)
                                    rowMax.update(repeating: -.infinity, count: tiles * tileRows)
                                    rowSum.update(repeating: 0, count: tiles * tileRows * 8)

                                    var k0 = 0
                                    while k0 < nkPad {
                                        let width = min(keyBlock, nkPad - k0)
                                        let valid = min(width, nk - k0)
                                        for t in 0..<tiles {
                                            let r0 = t * tileRows
                                            scoreTile(qs + r0 * d, UnsafeRawPointer(kt + k0 * d), d: d, keys: width,
                                                      validKeys: valid, scores: s, maxima: mx)
                                            for r in 0..<tileRows {
                                                let i = r0 + r
                                                let blockMax = UnsafeRawPointer(mx).loadUnaligned(fromByteOffset: r * 32, as: V8.self).max()
                                                if blockMax > rowMax[i] {
                                                    // Rescale by 2^(m − m'); on the first block O and ℓ are 0.
                                                    let alpha = exp2(nonPositive: V8(repeating: rowMax[i] - blockMax))[0]
                                                    multiply(rowSum + i * 8, count: 8, by: alpha)
                                                    multiply(os + i * d, count: d, by: alpha)
                                                    rowMax[i] = blockMax
                                                }
                                                // ℓ stays eight lane sums until the end: no horizontal sum per block.
                                                let sums = UnsafeMutableRawPointer(rowSum + i * 8)
                                                let blockSums = exp2Sum(s + r * keyBlock, count: width, shift: rowMax[i])
                                                sums.storeBytes(of: sums.loadUnaligned(as: V8.self) + blockSums, as: V8.self)
                                            }
                                            accumulateTile(s, UnsafeRawPointer(vh + k0 * d), d: d, keys: width, into: os + r0 * d)
                                        }
                                        k0 += width
                                    }

                                    let outRows = o.base + (batch * nq + q0) * channels + head * d
                                    for r in 0..<rows {
                                        (outRows + r * channels).update(from: os + r * d, count: d)
                                        let total = UnsafeRawPointer(rowSum + r * 8).loadUnaligned(as: V8.self).sum()
                                        multiply(outRows + r * channels, count: d, by: 1 / total)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// S = Q'·Kᵀ for one tile of `tileRows` queries and a block of `keys` (a multiple of 16) keys,
    /// into `scores` (row stride `keyBlock`), with each row's lane-wise maxima in `maxima`
    /// ([tileRows, 8]). Keys from `validKeys` on are padding: their scores become −∞.
    @inline(__always)
    static func scoreTile(_ qt: UnsafePointer<Float>, _ kPanels: UnsafeRawPointer, d: Int, keys: Int, validKeys: Int,
                          scores: UnsafeMutablePointer<Float>, maxima: UnsafeMutablePointer<Float>) {
        let sRaw = UnsafeMutableRawPointer(scores), mxRaw = UnsafeMutableRawPointer(maxima)
        maxima.update(repeating: -.infinity, count: tileRows * 8)
        let row = keyBlock * 4
        var j = 0
        while j < keys {
            var a00 = V8(), a01 = V8(), a10 = V8(), a11 = V8(), a20 = V8(), a21 = V8()
            var a30 = V8(), a31 = V8(), a40 = V8(), a41 = V8(), a50 = V8(), a51 = V8()
            var kRow = kPanels + j * d * 4
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
            if j + 16 > validKeys {
                let lane = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) &+ Int32(j)
                let pad0 = lane .>= Int32(validKeys), pad1 = lane &+ 8 .>= Int32(validKeys)
                let minusInf = V8(repeating: -.infinity)
                a00.replace(with: minusInf, where: pad0); a01.replace(with: minusInf, where: pad1)
                a10.replace(with: minusInf, where: pad0); a11.replace(with: minusInf, where: pad1)
                a20.replace(with: minusInf, where: pad0); a21.replace(with: minusInf, where: pad1)
                a30.replace(with: minusInf, where: pad0); a31.replace(with: minusInf, where: pad1)
                a40.replace(with: minusInf, where: pad0); a41.replace(with: minusInf, where: pad1)
                a50.replace(with: minusInf, where: pad0); a51.replace(with: minusInf, where: pad1)
            }
            let col = j * 4
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
            raiseMax(mxRaw, 0, a00, a01); raiseMax(mxRaw, 32, a10, a11)
            raiseMax(mxRaw, 64, a20, a21); raiseMax(mxRaw, 96, a30, a31)
            raiseMax(mxRaw, 128, a40, a41); raiseMax(mxRaw, 160, a50, a51)
            j += 16
        }
    }

    /// O += P·V for one tile: `p` is [tileRows, keys] (row stride `keyBlock`), `v` the block's
    /// [keys, d] rows, `o` [tileRows, d].
    @inline(__always)
    static func accumulateTile(_ p: UnsafePointer<Float>, _ v: UnsafeRawPointer, d: Int, keys: Int,
                               into o: UnsafeMutablePointer<Float>) {
        var j0 = 0
        while j0 < keys {
            let n = min(valueSubBlock, keys - j0)
            for c0 in stride(from: 0, to: d, by: 40) {
                for r0 in stride(from: 0, to: tileRows, by: 2) {
                    let o0 = UnsafeMutableRawPointer(o + r0 * d + c0), o1 = o0 + d * 4
                    var a0 = o0.loadUnaligned(as: V8.self), a1 = o0.loadUnaligned(fromByteOffset: 32, as: V8.self)
                    var a2 = o0.loadUnaligned(fromByteOffset: 64, as: V8.self), a3 = o0.loadUnaligned(fromByteOffset: 96, as: V8.self)
                    var a4 = o0.loadUnaligned(fromByteOffset: 128, as: V8.self)
                    var b0 = o1.loadUnaligned(as: V8.self), b1 = o1.loadUnaligned(fromByteOffset: 32, as: V8.self)
                    var b2 = o1.loadUnaligned(fromByteOffset: 64, as: V8.self), b3 = o1.loadUnaligned(fromByteOffset: 96, as: V8.self)
                    var b4 = o1.loadUnaligned(fromByteOffset: 128, as: V8.self)
                    var vRow = v + (j0 * d + c0) * 4
                    var pe = p + r0 * keyBlock + j0
                    for _ in 0..<n {
                        let x = V8(repeating: pe[0]), y = V8(repeating: pe[keyBlock])
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
                    o0.storeBytes(of: a0, as: V8.self); o0.storeBytes(of: a1, toByteOffset: 32, as: V8.self)
                    o0.storeBytes(of: a2, toByteOffset: 64, as: V8.self); o0.storeBytes(of: a3, toByteOffset: 96, as: V8.self)
                    o0.storeBytes(of: a4, toByteOffset: 128, as: V8.self)
                    o1.storeBytes(of: b0, as: V8.self); o1.storeBytes(of: b1, toByteOffset: 32, as: V8.self)
                    o1.storeBytes(of: b2, toByteOffset: 64, as: V8.self); o1.storeBytes(of: b3, toByteOffset: 96, as: V8.self)
                    o1.storeBytes(of: b4, toByteOffset: 128, as: V8.self)
                }
            }
            j0 += n
        }
    }

    /// The lane-wise maximum of the 8 floats at `raw + offset`, `u` and `w`, stored back.
    @inline(__always)
    static func raiseMax(_ raw: UnsafeMutableRawPointer, _ offset: Int, _ u: V8, _ w: V8) {
        let m = raw.loadUnaligned(fromByteOffset: offset, as: V8.self)
        let uw = u.replacing(with: w, where: w .> u)
        raw.storeBytes(of: m.replacing(with: uw, where: uw .> m), toByteOffset: offset, as: V8.self)
    }

    /// `count` (a multiple of 8) floats times `factor`, in place.
    @inline(__always)
    static func multiply(_ p: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
        let raw = UnsafeMutableRawPointer(p), f = V8(repeating: factor)
        for i in stride(from: 0, to: count * 4, by: 32) {
            raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: i, as: V8.self) * f, toByteOffset: i, as: V8.self)
        }
    }

    /// `2^x` for `x ≤ 0` to 1.7e-7 relative. `x = n + f` with `n = round(x)`, `|f| ≤ 1/2`; `2^f` by a
    /// degree-5 polynomial (a minimax fit of relative error on [−1/2, 1/2], constant term 1, FMA
    /// Horner), `2ⁿ` added into the exponent bits. Below −125 the argument is clamped (result
    /// 2^−125 ≈ 2.4e-38 rather than 0, also for −∞), which keeps `2ⁿ · 2^f` a normal float: softmax
    /// sums are ≥ 1, and the only such scores are padding keys, whose V rows are zero.
    /// Written as `V8(repeating: c).addingProduct(p, f)`, each Horner step compiles to one
    /// `vfmadd213ps` in release builds (unlike the chained FMAs FastMath avoids).
    @inline(__always)
    static func exp2(nonPositive x: V8) -> V8 {
        let lo = V8(repeating: -125), magic = V8(repeating: 12_582_912)
        let xc = x.replacing(with: lo, where: x .< lo)
        // t = 1.5·2²³ + n exactly: the addition rounds x to the nearest integer, which lands in the
        // low mantissa bits.
        let t = xc + magic
        let f = xc - (t - magic)
        var p = V8(repeating: 1.3264701701700687e-3)
        p = V8(repeating: 9.671504609286785e-3).addingProduct(p, f)
        p = V8(repeating: 5.550733581185341e-2).addingProduct(p, f)
        p = V8(repeating: 2.4022242426872253e-1).addingProduct(p, f)
        p = V8(repeating: 6.931470036506653e-1).addingProduct(p, f)
        p = V8(repeating: 1).addingProduct(p, f)
        // bits(t) = bits(1.5·2²³) + n, and bits(1.5·2²³) = 0x4B40_0000 vanishes when shifted by 23:
        // the shifted bits are n·2²³ (mod 2³²), n added to p's exponent field.
        let bits = unsafeBitCast(p, to: SIMD8<UInt32>.self) &+ (unsafeBitCast(t, to: SIMD8<UInt32>.self) &<< 23)
        return unsafeBitCast(bits, to: V8.self)
    }

    /// Replaces each of `count` (a multiple of 8) scores `x` (log₂ units) by `2^(x − shift)` and
    /// returns their eight lane sums. `shift` is at least the row's maximum, so the arguments are ≤ 0.
    @inline(__always)
    static func exp2Sum(_ p: UnsafeMutablePointer<Float>, count: Int, shift: Float) -> V8 {
        let raw = UnsafeMutableRawPointer(p), m = V8(repeating: shift)
        var acc = V8()
        for i in stride(from: 0, to: count * 4, by: 32) {
            let e = exp2(nonPositive: raw.loadUnaligned(fromByteOffset: i, as: V8.self) - m)
            raw.storeBytes(of: e, toByteOffset: i, as: V8.self)
            acc += e
        }
        return acc
    }
}
