import CKernels
import Foundation

// 3×3 stride-1 convolution by Winograd's minimal filtering F(4×4, 3×3) (Lavin & Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016): each 4×4 output tile is
//     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ) ] A
// for the 6×6 input patch d and the 3×3 kernel g, so the 36 products of a tile replace the 144
// multiply-adds of direct convolution. Summed over channels, the element-wise product becomes 36
// independent GEMMs, one per position of the 6×6 transform domain:
//     M[p] (Cout × T) = U[p] (Cout × Cin) · V[p] (Cin × T),
// U = G g Gᵀ the transformed weights, V = Bᵀ d B the transformed input tiles, T the tiles.
// The dense count of a convolution is 2·9·Cin·Cout per output pixel; here the GEMMs do
// 2·36/16 = 4.5 multiply-adds per pixel and channel pair, a quarter, plus the transforms.
//
// Matrices (interpolation points 0, ±1, ±2 and ∞), as in Lavin & Gray and every F(4×4, 3×3) since:
//   Bᵀ = [4  0 −5  0  1  0]   G = [ 1/4     0     0 ]   Aᵀ = [1  1  1  1  1  0]
//        [0 −4 −4  1  1  0]       [−1/6  −1/6  −1/6 ]        [0  1 −1  2 −2  0]
//        [0  4 −4 −1  1  0]       [−1/6   1/6  −1/6 ]        [0  1  1  4  4  0]
//        [0 −2 −1  2  1  0]       [1/24  1/12   1/6 ]        [0  1 −1  8 −8  1]
//        [0  2 −1 −2  1  0]       [1/24 −1/12   1/6 ]
//        [0  4  0 −5  0  1]       [   0     0     1 ]
// In Float32 the transforms cost accuracy: the error relative to the output's scale grows from
// ~1e-7 (direct) to ~1e-6 per layer (WinogradTests measures it against a Double reference), well
// inside the model parity tolerance of 1e-4 (UNetTests and VAETests run with Winograd forced on).
//
// Work is cut into blocks of whole tile rows (over the batch). A block's input tiles are
// transformed into `V` ([36][Cin][tiles], in panels of 16 tiles), multiplied by 36 single-threaded
// products into `M` ([36][Cout][tiles]) and transformed back into the output, all by one worker, so
// the block's data stays in that core's caches. Transforms run on `SIMD8<Float>` across 8
// neighbouring tiles. The products are the engine's own kernel (`sd_sgemm_panels`): the input
// transform writes V in the panels it reads, where OpenBLAS's sgemm copies both operands into its
// own layout on every call and zero-fills M first. In-process A/B runs measure it faster for most
// convolutions, most at TAESD's 64 channels; whole UNet steps could not tell the two apart on a
// noisy machine (README "Performance"). Replays of transcripts recorded before it
// (`EngineNumerics.v1`) keep OpenBLAS's.
//
// Reaches 1.1–2.1 of the sgemm roof on dense counts, from 32 tiles up (README "Performance").

extension Tensor {
    /// Winograd is used where a convolution has at least this many 4×4 output tiles over the batch;
    /// below it the 36 GEMMs are too narrow for sgemm and the weight transform's cost shows.
    /// Tests lower it to force the Winograd path on small fixture models.
    nonisolated(unsafe) static var winogradMinTiles = 32

    /// Output tiles per block (a block is whole tile rows): wide enough for the products' panels,
    /// small enough that `V` and `M` of a 512-channel block (36 · 1024 · 144 floats with the panels'
    /// padding, 21 MB) stay in the shared 32 MB L3 cache. (Chosen by that reasoning; other sizes
    /// were not measured.)
    static let winogradBlockTiles = 128

    /// Blocks are not split below this many tiles to give every worker one: narrower GEMMs lose
    /// more than the single-threaded transforms of one block on all cores do.
    static let winogradMinBlockTiles = 64

    /// The most floats of transformed weights held at once (64 MB). A 2560 → 1280 kernel's U is
    /// 472 MB, more than low-memory mode's whole budget, so wide convolutions run in slices of
    /// output channels, each with its own slice of U. The input transform is redone per slice; it
    /// costs ~36·Cin·tiles operations against the slice's 72·Cout·Cin·tiles of products.
    static let winogradWeightBudget = 1 << 24

    /// The transformed weights `U = G g Gᵀ` of a `[Cout, Cin, 3, 3]` kernel, laid out `[36][Cout][Cin]`
    /// so that each transform position is a row-major GEMM operand.
    ///
    /// Computed on each call rather than kept: one output channel's kernels are transposed to
    /// `[9][Cin]`, then transformed eight input channels at a time: ~29 ns of CPU per channel pair
    /// (0.05 s for a 1280×1280 kernel), mostly writing U's 36 floats, so a 512×512 UNet step spends
    /// ~0.9 s of CPU on its ~30 M pairs, ~5 % of the step on two cores. Keeping U instead would cost
    /// four times those levels' 3×3 weights, ~4 GB, and low-memory mode could not keep it at all.
    /// - Parameter outputs: the output channels to transform (all by default); the result then has
    ///   `outputs.count` rows per position.
    public static func winogradWeights(_ weight: Tensor, outputs: Range<Int>? = nil) -> [Float] {
        precondition(weight.rank == 4 && weight.shape[2] == 3 && weight.shape[3] == 3, "Winograd needs a 3×3 kernel, got \(weight.shape)")
        let outputs = outputs ?? 0..<weight.shape[0]
        precondition(outputs.lowerBound >= 0 && outputs.upperBound <= weight.shape[0], "output channels \(outputs) outside \(weight.shape)")
        let cout = outputs.count, cin = weight.shape[1]
        let plane = cout * cin, lanesPadded = (cin + 7) / 8 * 8
        return [Float](unsafeUninitializedCapacity: 36 * plane) { buffer, initialized in
            let u = SharedPointer(buffer.baseAddress!)
            weight.data.withUnsafeBufferPointer { wb in
                let g = wb.baseAddress! + outputs.lowerBound * cin * 9
                Parallel.forEach(cout, grain: max(1, 8192 / max(1, cin))) { range in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: 9 * lanesPadded) { tmp in
                        let taps = tmp.baseAddress!
                        taps.initialize(repeating: 0, count: 9 * lanesPadded)
                        let raw = UnsafeRawPointer(taps)
                        for co in range {
                            // [Cin][9] → [9][Cin], so each tap is a contiguous row over the input channels.
                            let src = g + co * cin * 9
                            for ci in 0..<cin { for t in 0..<9 { taps[t * lanesPadded + ci] = src[ci * 9 + t] } }
                            var ci = 0
                            while ci < cin {
                                @inline(__always) func tap(_ t: Int) -> FastMath.V {
                                    raw.loadUnaligned(fromByteOffset: (t * lanesPadded + ci) * 4, as: FastMath.V.self)
                                }
                                // G·g over the kernel's rows, one column at a time …
                                let c0 = winogradKernelTransform(tap(0), tap(3), tap(6))
                                let c1 = winogradKernelTransform(tap(1), tap(4), tap(7))
                                let c2 = winogradKernelTransform(tap(2), tap(5), tap(8))
                                // … then ·Gᵀ over the columns, one row a of U at a time.
                                let lanes = min(8, cin - ci)
                                @inline(__always) func store(_ a: Int, _ r: (FastMath.V, FastMath.V, FastMath.V, FastMath.V, FastMath.V, FastMath.V)) {
                                    let dst = u.base + 6 * a * plane + co * cin + ci
                                    @inline(__always) func put(_ b: Int, _ v: FastMath.V) {
                                        if lanes == 8 {
                                            UnsafeMutableRawPointer(dst + b * plane).storeBytes(of: v, as: FastMath.V.self)
                                        } else {
                                            for l in 0..<lanes { dst[b * plane + l] = v[l] }
                                        }
                                    }
                                    put(0, r.0); put(1, r.1); put(2, r.2); put(3, r.3); put(4, r.4); put(5, r.5)
                                }
                                store(0, winogradKernelTransform(c0.0, c1.0, c2.0))
                                store(1, winogradKernelTransform(c0.1, c1.1, c2.1))
                                store(2, winogradKernelTransform(c0.2, c1.2, c2.2))
                                store(3, winogradKernelTransform(c0.3, c1.3, c2.3))
                                store(4, winogradKernelTransform(c0.4, c1.4, c2.4))
                                store(5, winogradKernelTransform(c0.5, c1.5, c2.5))
                                ci += 8
                            }
                        }
                    }
                }
            }
            initialized = 36 * plane
        }
    }

    /// `G·(g0, g1, g2)`: one column (or row) of the kernel into the transform domain.
    @inline(__always)
    static func winogradKernelTransform(_ g0: FastMath.V, _ g1: FastMath.V, _ g2: FastMath.V)
        -> (FastMath.V, FastMath.V, FastMath.V, FastMath.V, FastMath.V, FastMath.V) {
        let even = g0 + g2
        let sixth = FastMath.V(repeating: 1.0 / 6), twelfth = FastMath.V(repeating: 1.0 / 12)
        let quarterEven = g0 * (1.0 / 24) + g2 * (1.0 / 6)
        return (g0 * 0.25,
                -(even + g1) * sixth,
                -(even - g1) * sixth,
                quarterEven + g1 * twelfth,
                quarterEven - g1 * twelfth,
                g2)
    }

    /// `Bᵀ·(d0 … d5)`: six input values (a column or a row of a patch) into the transform domain.
    @inline(__always)
    static func winogradInputTransform(
        _ d0: FastMath.V, _ d1: FastMath.V, _ d2: FastMath.V, _ d3: FastMath.V, _ d4: FastMath.V, _ d5: FastMath.V
    ) -> (FastMath.V, FastMath.V, FastMath.V, FastMath.V, FastMath.V, FastMath.V) {
        let s12 = d1 + d2, s34 = d3 + d4, m12 = d1 - d2, m43 = d4 - d3
        let m42 = d4 - d2, m31 = d3 - d1
        return (d0 * 4 - d2 * 5 + d4,
                s34 - s12 * 4,
                m43 + m12 * 4,
                m42 + m31 * 2,
                m42 - m31 * 2,
                d1 * 4 - d3 * 5 + d5)
    }

    /// `Aᵀ·(m0 … m5)`: six transform-domain values back to four outputs.
    @inline(__always)
    static func winogradOutputTransform(
        _ m0: FastMath.V, _ m1: FastMath.V, _ m2: FastMath.V, _ m3: FastMath.V, _ m4: FastMath.V, _ m5: FastMath.V
    ) -> (FastMath.V, FastMath.V, FastMath.V, FastMath.V) {
        let s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4
        return (m0 + s12 + s34,
                d12 + d34 * 2,
                s12 + s34 * 4,
                d12 + d34 * 8 + m5)
    }

    /// A 3×3, stride-1, padding-1 convolution of `[N, Cin, H, W]` by F(4×4, 3×3), into `y`
    /// (`[N, Cout, H, W]`, every element written).
    ///
    /// - Parameters:
    ///   - u: the transformed weights of `winogradWeights`, `[36][Cout][Cin]`.
    ///   - bias: `Cout` values, or empty.
    ///   - outChannelStride: the output's channel count, when these `Cout` channels are a slice of
    ///     it starting at `y`.
    static func convWinograd(
        _ x: UnsafePointer<Float>, batch n: Int, channels cin: Int, height h: Int, width w: Int,
        transformedWeights u: UnsafePointer<Float>, outChannels cout: Int, bias: UnsafeBufferPointer<Float>,
        into y: UnsafeMutablePointer<Float>, outChannelStride: Int? = nil
    ) {
        let tileRows = (h + 3) / 4, tileCols = (w + 3) / 4
        let groups = (tileCols + 7) / 8
        let totalRows = n * tileRows
        let workers = Parallel.workers
        let panels = Tensor.numerics >= .v2
        // Blocks of about `winogradBlockTiles` tiles. With a block for every worker, each worker
        // runs whole blocks with single-threaded products (`perWorker`); with fewer (small maps),
        // the blocks run one after another, transforms and products split over the cores.
        var rowsPerBlock = max(1, min(totalRows, winogradBlockTiles / tileCols))
        while (totalRows + rowsPerBlock - 1) / rowsPerBlock < workers && rowsPerBlock * tileCols >= 2 * winogradMinBlockTiles {
            rowsPerBlock = (rowsPerBlock + 1) / 2
        }
        let blocks = (totalRows + rowsPerBlock - 1) / rowsPerBlock
        let perWorker = workers > 1 && blocks >= workers
        // Tile columns of a block, plus 8 of slack: the last group of 8 tiles may read past the last
        // tile. With panels, V holds whole panels of 16 and M a row for each of their columns.
        let blockTiles = rowsPerBlock * tileCols
        let paddedTiles = (blockTiles + 15) / 16 * 16
        let stride = panels ? paddedTiles + 16 : blockTiles + 8
        let layout = VLayout(panels: panels, channels: cin, stride: stride)
        // Transformed rows of the input: column c' holds input column c' − 1; 32 columns per group
        // of 8 tiles, with room for the second, 4-column-shifted load of the last group.
        let rowWidth = 32 * groups + 40
        let vFloats = 36 * layout.positionStride, blockFloats = vFloats + 36 * cout * stride + 16
        let rowScratch = 6 * rowWidth + (w + 8)
        let copies = perWorker ? min(workers, blocks) : 1
        // V and M are written before they are read (the products read only the tiles' columns, and
        // a panel's columns past the last tile are zeroed); only the rows' scratch needs zeros,
        // where the input's edges and the slack after it are never written.
        var scratch = [Float](unsafeUninitializedCapacity: copies * blockFloats + workers * rowScratch) { buffer, initialized in
            (buffer.baseAddress! + copies * blockFloats).initialize(repeating: 0, count: workers * rowScratch)
            initialized = buffer.count
        }
        let out = SharedPointer(y)

        scratch.withUnsafeMutableBufferPointer { sb in
            let scratchBase = SharedPointer(sb.baseAddress!)
            // One block: tile rows row0 ..< row0 + rows (over the batch); `concurrently` splits its
            // transforms over the channels and its products over the positions (row scratch per
            // worker), else all runs on this thread with the row scratch of `worker`.
            func run(block: Int, products: UnsafeMutablePointer<Float>, worker: Int, concurrently: Bool) {
                // V starts on a 64-byte line, for the panels' loads.
                let v = products + (16 - Int(bitPattern: products) / 4 % 16) % 16, m = v + vFloats
                let row0 = block * rowsPerBlock, rows = min(rowsPerBlock, totalRows - row0)
                let tiles = rows * tileCols
                let rowBase = scratchBase.base + copies * blockFloats
                // Input tiles → V.
                Parallel.forEachWorker(cin, concurrently: concurrently) { part, channels in
                    let t = rowBase + (concurrently ? part : worker) * rowScratch, zeros = t + 6 * rowWidth
                    for ci in channels {
                        for r in 0..<rows {
                            let image = (row0 + r) / tileRows, tileRow = (row0 + r) % tileRows
                            transformInputRow(x + (image * cin + ci) * h * w, height: h, width: w, tileRow: tileRow,
                                              rowWidth: rowWidth, zeros: zeros, scratch: t)
                            for g in 0..<groups {
                                scatterInputGroup(t, group: g, rowWidth: rowWidth, into: v, layout: layout, channel: ci,
                                                  firstTile: r * tileCols + 8 * g, lanes: min(8, tileCols - 8 * g))
                            }
                        }
                        // The last panel's columns past the tiles, which its products read.
                        if panels && tiles % 16 != 0 {
                            for p in 0..<36 {
                                (v + p * layout.positionStride + layout.offset(channel: ci, tile: tiles))
                                    .update(repeating: 0, count: 16 - tiles % 16)
                            }
                        }
                    }
                }
                // The 36 products.
                if panels {
                    Parallel.forEachWorker(36, concurrently: concurrently) { _, positions in
                        for p in positions {
                            sd_sgemm_panels(Int32(cout), Int32(tiles), Int32(cin), u + p * cout * cin, Int32(cin),
                                            v + p * layout.positionStride, m + p * cout * stride, Int32(stride))
                        }
                    }
                } else {
                    for p in 0..<36 {
                        BLAS.sgemm(m: cout, n: tiles, k: cin, a: u + p * cout * cin, lda: cin,
                                   b: v + p * layout.positionStride, ldb: stride, c: m + p * cout * stride, ldc: stride)
                    }
                }
                // M → output tiles.
                Parallel.forEachWorker(cout, concurrently: concurrently) { _, channels in
                    for co in channels {
                        let b = bias.isEmpty ? 0 : bias[co]
                        for r in 0..<rows {
                            let image = (row0 + r) / tileRows, tileRow = (row0 + r) % tileRows
                            let plane = out.base + (image * (outChannelStride ?? cout) + co) * h * w
                            for g in 0..<groups {
                                gatherOutputGroup(m + co * stride + r * tileCols + 8 * g, positionStride: cout * stride, bias: b,
                                                  into: plane, height: h, width: w, tileRow: tileRow, firstTile: 8 * g,
                                                  lanes: min(8, tileCols - 8 * g))
                            }
                        }
                    }
                }
            }
            if perWorker {
                BLAS.withSingleThread {
                    Parallel.forEachWorker(blocks) { worker, range in
                        for block in range {
                            run(block: block, products: scratchBase.base + worker * blockFloats, worker: worker, concurrently: false)
                        }
                    }
                }
            } else {
                for block in 0..<blocks { run(block: block, products: scratchBase.base, worker: 0, concurrently: true) }
            }
        }
    }

    /// Where V's values go: `[36][Cin][stride]` rows for OpenBLAS, or for `sd_sgemm_panels` panels
    /// of 16 tiles, each `[Cin][16]`.
    struct VLayout {
        let panels: Bool, channels: Int, stride: Int

        /// Floats from one transform position's matrix to the next.
        var positionStride: Int { channels * stride }

        @inline(__always)
        func offset(channel: Int, tile: Int) -> Int {
            panels ? (tile / 16) * 16 * channels + channel * 16 + tile % 16 : channel * stride + tile
        }
    }

    /// The six input rows of tile row `tileRow` (rows 4·tileRow − 1 … 4·tileRow + 4, zero outside
    /// the image), combined by Bᵀ into six rows of `scratch` (`rowWidth` each; column c' is input
    /// column c' − 1, columns outside the image stay zero as the caller zero-filled them).
    @inline(__always)
    static func transformInputRow(
        _ plane: UnsafePointer<Float>, height h: Int, width w: Int, tileRow: Int, rowWidth: Int,
        zeros: UnsafePointer<Float>, scratch t: UnsafeMutablePointer<Float>
    ) {
        @inline(__always) func source(_ k: Int) -> UnsafePointer<Float> {
            let iy = 4 * tileRow - 1 + k
            return iy >= 0 && iy < h ? plane + iy * w : zeros
        }
        let s0 = UnsafeRawPointer(source(0)), s1 = UnsafeRawPointer(source(1)), s2 = UnsafeRawPointer(source(2))
        let s3 = UnsafeRawPointer(source(3)), s4 = UnsafeRawPointer(source(4)), s5 = UnsafeRawPointer(source(5))
        let dst = UnsafeMutableRawPointer(t + 1)
        let rowBytes = rowWidth * 4
        var j = 0
        while j + 8 <= w {
            let o = j * 4
            let r = winogradInputTransform(
                s0.loadUnaligned(fromByteOffset: o, as: FastMath.V.self), s1.loadUnaligned(fromByteOffset: o, as: FastMath.V.self),
                s2.loadUnaligned(fromByteOffset: o, as: FastMath.V.self), s3.loadUnaligned(fromByteOffset: o, as: FastMath.V.self),
                s4.loadUnaligned(fromByteOffset: o, as: FastMath.V.self), s5.loadUnaligned(fromByteOffset: o, as: FastMath.V.self))
            dst.storeBytes(of: r.0, toByteOffset: o, as: FastMath.V.self)
            dst.storeBytes(of: r.1, toByteOffset: rowBytes + o, as: FastMath.V.self)
            dst.storeBytes(of: r.2, toByteOffset: 2 * rowBytes + o, as: FastMath.V.self)
            dst.storeBytes(of: r.3, toByteOffset: 3 * rowBytes + o, as: FastMath.V.self)
            dst.storeBytes(of: r.4, toByteOffset: 4 * rowBytes + o, as: FastMath.V.self)
            dst.storeBytes(of: r.5, toByteOffset: 5 * rowBytes + o, as: FastMath.V.self)
            j += 8
        }
        if j < w {
            // The ragged tail through the same formula, lanes past the row's end left out.
            let lanes = w - j
            var d = [FastMath.V](repeating: .zero, count: 6)
            for k in 0..<6 { let row = source(k); for l in 0..<lanes { d[k][l] = row[j + l] } }
            let r = winogradInputTransform(d[0], d[1], d[2], d[3], d[4], d[5])
            let values = [r.0, r.1, r.2, r.3, r.4, r.5]
            for i in 0..<6 { for l in 0..<lanes { t[i * rowWidth + 1 + j + l] = values[i][l] } }
        }
    }

    /// Eight neighbouring tiles (group `group`) of the six Bᵀ-combined rows, combined by B over
    /// their columns and stored as transform position `6·i + c` of channel `channel` in V, one lane
    /// per tile, tiles `firstTile …` of the block. Tile `k` of the group reads columns
    /// `32·group + 4k … + 5`, split into stride-4 vectors by even/odd halving.
    @inline(__always)
    static func scatterInputGroup(
        _ t: UnsafePointer<Float>, group: Int, rowWidth: Int,
        into v: UnsafeMutablePointer<Float>, layout: VLayout, channel: Int, firstTile: Int, lanes: Int
    ) {
        let dst = v + layout.offset(channel: channel, tile: firstTile), positionStride = layout.positionStride
        // Eight tiles from a multiple of 8 lie in one panel; others may cross into the next.
        let contiguous = lanes == 8 && (!layout.panels || firstTile % 8 == 0)
        for i in 0..<6 {
            let raw = UnsafeRawPointer(t + i * rowWidth + 32 * group)
            let a = raw.loadUnaligned(as: SIMD32<Float>.self)
            let b = raw.loadUnaligned(fromByteOffset: 16, as: SIMD32<Float>.self)
            let ae = a.evenHalf, ao = a.oddHalf
            let r = winogradInputTransform(ae.evenHalf, ao.evenHalf, ae.oddHalf, ao.oddHalf,
                                           b.evenHalf.evenHalf, b.oddHalf.evenHalf)
            if contiguous {
                let base = dst + 6 * i * positionStride
                UnsafeMutableRawPointer(base).storeBytes(of: r.0, as: FastMath.V.self)
                UnsafeMutableRawPointer(base + positionStride).storeBytes(of: r.1, as: FastMath.V.self)
                UnsafeMutableRawPointer(base + 2 * positionStride).storeBytes(of: r.2, as: FastMath.V.self)
                UnsafeMutableRawPointer(base + 3 * positionStride).storeBytes(of: r.3, as: FastMath.V.self)
                UnsafeMutableRawPointer(base + 4 * positionStride).storeBytes(of: r.4, as: FastMath.V.self)
                UnsafeMutableRawPointer(base + 5 * positionStride).storeBytes(of: r.5, as: FastMath.V.self)
            } else {
                let values = [r.0, r.1, r.2, r.3, r.4, r.5]
                for l in 0..<lanes {
                    let lane = v + layout.offset(channel: channel, tile: firstTile + l) + 6 * i * positionStride
                    for c in 0..<6 { lane[c * positionStride] = values[c][l] }
                }
            }
        }
    }

    /// Eight neighbouring tiles of one output channel from `M` (position `p` at
    /// `m + p·positionStride`, one lane per tile), through Aᵀ·M·A plus the bias, written to the
    /// output plane; rows and columns past the image's edge are dropped.
    @inline(__always)
    static func gatherOutputGroup(
        _ m: UnsafePointer<Float>, positionStride: Int, bias: Float,
        into plane: UnsafeMutablePointer<Float>, height h: Int, width w: Int, tileRow: Int, firstTile: Int, lanes: Int
    ) {
        @inline(__always) func load(_ p: Int) -> FastMath.V {
            UnsafeRawPointer(m + p * positionStride).loadUnaligned(as: FastMath.V.self)
        }
        // Aᵀ over the rows of the 6×6 block, column by column: column b gives rows 0…3 of Aᵀ·M.
        let k0 = winogradOutputTransform(load(0), load(6), load(12), load(18), load(24), load(30))
        let k1 = winogradOutputTransform(load(1), load(7), load(13), load(19), load(25), load(31))
        let k2 = winogradOutputTransform(load(2), load(8), load(14), load(20), load(26), load(32))
        let k3 = winogradOutputTransform(load(3), load(9), load(15), load(21), load(27), load(33))
        let k4 = winogradOutputTransform(load(4), load(10), load(16), load(22), load(28), load(34))
        let k5 = winogradOutputTransform(load(5), load(11), load(17), load(23), load(29), load(35))
        let biasV = FastMath.V(repeating: bias)
        for r in 0..<4 {
            let oy = 4 * tileRow + r
            if oy >= h { break }
            let o: (FastMath.V, FastMath.V, FastMath.V, FastMath.V)
            switch r {
            case 0: o = winogradOutputTransform(k0.0, k1.0, k2.0, k3.0, k4.0, k5.0)
            case 1: o = winogradOutputTransform(k0.1, k1.1, k2.1, k3.1, k4.1, k5.1)
            case 2: o = winogradOutputTransform(k0.2, k1.2, k2.2, k3.2, k4.2, k5.2)
            default: o = winogradOutputTransform(k0.3, k1.3, k2.3, k3.3, k4.3, k5.3)
            }
            let c0 = o.0 + biasV, c1 = o.1 + biasV, c2 = o.2 + biasV, c3 = o.3 + biasV
            let line = plane + oy * w + 4 * firstTile
            if lanes == 8 && 4 * (firstTile + 8) <= w {
                for l in 0..<8 {
                    line[4 * l] = c0[l]; line[4 * l + 1] = c1[l]; line[4 * l + 2] = c2[l]; line[4 * l + 3] = c3[l]
                }
            } else {
                let columns = w - 4 * firstTile
                for l in 0..<lanes {
                    let x0 = 4 * l
                    if x0 < columns { line[x0] = c0[l] }
                    if x0 + 1 < columns { line[x0 + 1] = c1[l] }
                    if x0 + 2 < columns { line[x0 + 2] = c2[l] }
                    if x0 + 3 < columns { line[x0 + 3] = c3[l] }
                }
            }
        }
    }
}
