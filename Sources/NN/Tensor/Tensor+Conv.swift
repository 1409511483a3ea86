import Foundation

// Convolution as GEMM. 3×3 stride-1 convolutions over enough 4×4 tiles go through Winograd
// F(4×4, 3×3) (Tensor+Winograd.swift), a quarter of the multiplies. The rest runs one band of output
// rows at a time, so scratch memory stays bounded (a full im2col of the VAE's 512×512×128
// convolution would be 1.2 GB; a band is at most `convColumnBudget` floats, 16 MB). Three
// strategies, chosen by shape (`convStrategy`):
//   - direct: 1×1 stride 1 is one sgemm on the input as it lies;
//   - shifted (stride 1, output rows ≥ 28 wide): k² GEMMs over shifted views of a zero-padded
//     copy of the band, no im2col (`convShiftedBand`);
//   - im2col (stride 2, small maps): patch matrix of the band, then one GEMM (`im2colBand`).
// When there are at least as many bands (over the batch) as cores, each core runs whole bands with a
// single-threaded sgemm: no serial copies and no fork-join per GEMM. Otherwise the copies (padding,
// im2col, copy-out) are split over the cores and the GEMM uses OpenBLAS's threads.
//
// Nearly all the time is sgemm's: 0.88–0.95 of the sgemm roof on dense counts at most of SD1.5's
// shapes, ~0.7 where a side is short; Winograd 1.1–2.1 (README "Performance", `make bench BENCH=ops`).

extension Tensor {
    /// The most floats one im2col band may hold (16 MB).
    static let convColumnBudget = 1 << 22

    /// A 2-D convolution, PyTorch `nn.Conv2d` with square kernels.
    ///
    /// - Parameters:
    ///   - weight: `[Cout, Cin, k, k]`.
    ///   - bias: `[Cout]`, or nil.
    ///   - stride: the step between output positions (SD uses 1, and 2 for downsampling).
    ///   - padding: zeros added on every side.
    /// - Returns: `[N, Cout, Hout, Wout]` with `Hout = (H + 2·padding − k) / stride + 1`.
    /// - Precondition: `self` is `[N, Cin, H, W]`, the kernel fits the padded input.
    ///
    /// Under `BLAS.withPrecision(.bf16)` convolutions still multiply in fp32 (3×3 ones with Winograd):
    /// their long sums over channels and kernel taps are where bf16's rounding costs the UNet's output
    /// most (README "bf16" has the measurements), and Winograd already gives the 3×3 ones much of what
    /// bf16 would.
    public func conv2d(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int) -> Tensor {
        if BLAS.precision == .bf16 {
            return BLAS.withPrecision(.fp32) { conv2d(weight: weight, bias: bias, stride: stride, padding: padding) }
        }
        return conv2d(weight: weight, bias: bias, stride: stride, padding: padding, columnBudget: Tensor.convColumnBudget)
    }

    /// How `conv2d` turns a convolution into GEMMs. `conv2d` picks one by shape; forcing one is for
    /// benchmarks and tests (all give the same result to rounding).
    public enum ConvStrategy: String, Sendable, CaseIterable {
        /// 1×1, stride 1, no padding: the input already is the `[Cin, H·W]` matrix.
        case direct
        /// Stride 1: `k²` GEMMs over shifted views of a zero-padded band (see `convShiftedBand`).
        case shifted
        /// Any stride: im2col of a band, then one GEMM (see `im2colBand`).
        case im2col
        /// 3×3, stride 1, padding 1: Winograd F(4×4, 3×3), a quarter of the multiplies
        /// (see Tensor+Winograd.swift).
        case winograd
    }

    /// The strategy for a shape: Winograd for 3×3 stride-1 convolutions with enough 4×4 output
    /// tiles; else shifted views when the output rows are wide enough that the `k − 1` wasted
    /// columns per row stay under 7 %, im2col otherwise (small maps, stride 2).
    static func convStrategy(kernel k: Int, stride: Int, padding: Int, batch: Int, outHeight: Int, outWidth: Int) -> ConvStrategy {
        if k == 1 && stride == 1 && padding == 0 { return .direct }
        if k == 3 && stride == 1 && padding == 1
            && batch * ((outHeight + 3) / 4) * ((outWidth + 3) / 4) >= winogradMinTiles { return .winograd }
        if stride == 1 && outWidth >= 14 * (k - 1) { return .shifted }
        return .im2col
    }

    /// `conv2d` with a forced strategy, for benchmarks and tests.
    public func conv2d(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int, strategy: ConvStrategy) -> Tensor {
        conv2d(weight: weight, bias: bias, stride: stride, padding: padding, columnBudget: Tensor.convColumnBudget, strategy: strategy)
    }

    /// `conv2d` with an explicit strategy and band budget (floats of scratch per band), so tests
    /// can force every path and many bands on small inputs.
    func conv2d(weight: Tensor, bias: Tensor?, stride: Int, padding: Int, columnBudget: Int,
                strategy forced: ConvStrategy? = nil) -> Tensor {
        precondition(rank == 4, "conv2d input must be NCHW, got \(shape)")
        precondition(weight.rank == 4 && weight.shape[2] == weight.shape[3],
                     "conv2d weight must be [Cout, Cin, k, k], got \(weight.shape)")
        let n = shape[0], cin = shape[1], h = shape[2], w = shape[3]
        let cout = weight.shape[0], k = weight.shape[2]
        precondition(weight.shape[1] == cin, "conv2d: input has \(cin) channels, weight \(weight.shape)")
        precondition(stride >= 1 && padding >= 0, "conv2d: bad stride \(stride) or padding \(padding)")
        precondition(h + 2 * padding >= k && w + 2 * padding >= k, "conv2d: kernel \(k) larger than padded input \(shape)")
        if let bias { precondition(bias.count == cout, "conv2d bias \(bias.shape) is not [\(cout)]") }
        let hout = (h + 2 * padding - k) / stride + 1
        let wout = (w + 2 * padding - k) / stride + 1
        let plane = hout * wout, kdim = cin * k * k
        let strategy = forced ?? Tensor.convStrategy(kernel: k, stride: stride, padding: padding, batch: n,
                                                     outHeight: hout, outWidth: wout)
        precondition(strategy != .shifted || stride == 1, "shifted convolution needs stride 1")
        precondition(strategy != .direct || (k == 1 && stride == 1 && padding == 0), "direct convolution needs 1×1, stride 1, no padding")
        precondition(strategy != .winograd || (k == 3 && stride == 1 && padding == 1), "Winograd convolution needs 3×3, stride 1, padding 1")

        if strategy == .winograd {
            // Every output element is written by the output transform.
            var out = Tensor(uninitializedShape: [n, cout, hout, wout])
            let slice = max(8, min(cout, Tensor.winogradWeightBudget / (36 * cin)))
            out.data.withUnsafeMutableBufferPointer { o in
                data.withUnsafeBufferPointer { xb in
                    (bias?.data ?? []).withUnsafeBufferPointer { bb in
                        for first in Swift.stride(from: 0, to: cout, by: slice) {
                            let outputs = first..<min(cout, first + slice)
                            let u = Tensor.winogradWeights(weight, outputs: outputs)
                            u.withUnsafeBufferPointer { ub in
                                Tensor.convWinograd(xb.baseAddress!, batch: n, channels: cin, height: h, width: w,
                                                    transformedWeights: ub.baseAddress!, outChannels: outputs.count,
                                                    bias: bb.isEmpty ? bb : UnsafeBufferPointer(rebasing: bb[outputs]),
                                                    into: o.baseAddress! + first * h * w, outChannelStride: cout)
                            }
                        }
                    }
                }
            }
            return out
        }

        // Every element is written: by the bias copy or a GEMM with beta = 0, or by the shifted
        // path's copy-out.
        var out = Tensor(uninitializedShape: [n, cout, hout, wout])
        let paddedWidth = w + 2 * padding
        let perRow = strategy == .shifted ? max(cin, cout) * paddedWidth : kdim * wout
        var bandRows = strategy == .direct ? hout : max(1, min(hout, columnBudget / max(1, perRow)))
        var bands = (hout + bandRows - 1) / bandRows
        // With enough bands for every core, each worker runs whole bands (copy, GEMMs, copy-out) on
        // its own core with a single-threaded sgemm: no fork-join per GEMM, band data stays in that
        // core's cache. Bands are evened out so the tasks divide among the workers.
        let workers = Parallel.workers
        if strategy != .direct && workers > 1 {
            while (n * bands) % workers != 0 && bands < hout { bands += 1 }
            bandRows = (hout + bands - 1) / bands
            bands = (hout + bandRows - 1) / bandRows
        }
        let perWorker = strategy != .direct && workers > 1 && n * bands >= workers
        let scratchPerBand: Int
        switch strategy {
        case .direct, .winograd: scratchPerBand = 0
        case .im2col: scratchPerBand = kdim * bandRows * wout
        case .shifted:
            scratchPerBand = cin * Tensor.shiftedChannelStride(rows: bandRows, kernel: k, paddedWidth: paddedWidth)
                + cout * bandRows * paddedWidth
        }
        // Each band writes all of its scratch that it reads: the patch matrix or padded rows (zeros
        // included), and the shifted GEMMs' result with beta = 0 first.
        var scratch = [Float](unsafeUninitializedCapacity: scratchPerBand * (perWorker ? workers : 1)) { _, initialized in
            initialized = scratchPerBand * (perWorker ? workers : 1)
        }
        let taps = strategy == .shifted ? Tensor.weightTaps(weight) : []
        let biasValues = bias?.data ?? []

        out.data.withUnsafeMutableBufferPointer { o in
            data.withUnsafeBufferPointer { xb in
                weight.data.withUnsafeBufferPointer { wb in
                    scratch.withUnsafeMutableBufferPointer { sb in
                        taps.withUnsafeBufferPointer { tb in
                            biasValues.withUnsafeBufferPointer { bb in
                                let wp = wb.baseAddress!, out = SharedPointer(o.baseAddress!), scratchBase = SharedPointer(sb.baseAddress!)
                                if strategy == .direct {
                                    for b in 0..<n {
                                        let y = out.base + b * cout * plane
                                        if !bb.isEmpty { for co in 0..<cout { (y + co * plane).update(repeating: bb[co], count: plane) } }
                                        BLAS.sgemm(m: cout, n: plane, k: cin, a: wp, lda: cin, b: xb.baseAddress! + b * cin * h * w,
                                                   ldb: plane, beta: bb.isEmpty ? 0 : 1, c: y, ldc: plane)
                                    }
                                    return
                                }
                                // One band: output rows row0 ..< row0 + rows of image b.
                                func band(_ b: Int, _ row0: Int, scratch: UnsafeMutablePointer<Float>, concurrently: Bool) {
                                    let x = xb.baseAddress! + b * cin * h * w
                                    let y = out.base + b * cout * plane
                                    let rows = min(bandRows, hout - row0)
                                    if strategy == .shifted {
                                        Tensor.convShiftedBand(x, channels: cin, height: h, width: w, kernel: k, padding: padding,
                                                               taps: tb.baseAddress!, outChannels: cout, bias: bb,
                                                               outHeight: hout, outWidth: wout, firstRow: row0, rows: rows,
                                                               scratch: scratch, bandRows: bandRows, into: y, concurrently: concurrently)
                                        return
                                    }
                                    if !bb.isEmpty {
                                        for co in 0..<cout { (y + co * plane + row0 * wout).update(repeating: bb[co], count: rows * wout) }
                                    }
                                    Tensor.im2colBand(x, channels: cin, height: h, width: w, kernel: k, stride: stride,
                                                      padding: padding, outWidth: wout, firstRow: row0, rows: rows,
                                                      into: scratch, concurrently: concurrently)
                                    BLAS.sgemm(m: cout, n: rows * wout, k: kdim, a: wp, lda: kdim, b: scratch, ldb: rows * wout,
                                               beta: bb.isEmpty ? 0 : 1, c: y + row0 * wout, ldc: plane)
                                }
                                if perWorker {
                                    BLAS.withSingleThread {
                                        Parallel.forEachWorker(n * bands) { worker, tasks in
                                            for t in tasks {
                                                band(t / bands, (t % bands) * bandRows,
                                                     scratch: scratchBase.base + worker * scratchPerBand, concurrently: false)
                                            }
                                        }
                                    }
                                } else {
                                    for t in 0..<(n * bands) {
                                        band(t / bands, (t % bands) * bandRows, scratch: scratchBase.base, concurrently: true)
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

    /// The weights `[Cout, Cin, k, k]` regrouped per kernel tap as `[k·k][Cout, Cin]`, so each tap
    /// is a plain row-major GEMM operand.
    static func weightTaps(_ weight: Tensor) -> [Float] {
        let cout = weight.shape[0], cin = weight.shape[1], kk = weight.shape[2] * weight.shape[3]
        var taps = [Float](repeating: 0, count: weight.count)
        taps.withUnsafeMutableBufferPointer { tb in
            let t = SharedPointer(tb.baseAddress!)
            weight.data.withUnsafeBufferPointer { wb in
                let w = wb.baseAddress!
                Parallel.forEach(cout, grain: max(1, 65536 / max(1, cin * kk))) { range in
                    for co in range {
                        for ci in 0..<cin {
                            for tap in 0..<kk { t.base[(tap * cout + co) * cin + ci] = w[(co * cin + ci) * kk + tap] }
                        }
                    }
                }
            }
        }
        return taps
    }

    /// Floats per channel of the shifted path's padded band: `rows + k − 1` padded rows, and
    /// `k − 1` more so the last tap's view of the wasted columns stays inside the buffer.
    static func shiftedChannelStride(rows: Int, kernel k: Int, paddedWidth: Int) -> Int {
        (rows + k - 1) * paddedWidth + k - 1
    }

    /// One band of a stride-1 convolution without im2col.
    ///
    /// The band's input rows are copied once, zero-padded, as `[Cin, (rows + k − 1)·Wp]` with
    /// `Wp = W + 2·padding`. In that layout the input under kernel tap `(ky, kx)` for output
    /// position `(r, ox)` sits at column `(r + ky)·Wp + ox + kx`, so for each tap the whole
    /// `[Cin, rows·Wp]` operand is the padded band shifted by `ky·Wp + kx`: a strided view, no copy.
    /// `k²` GEMMs `C += W_tap · view_tap` accumulate a `[Cout, rows·Wp]` result whose last `k − 1`
    /// columns per row are junk (they straddle two rows); the copy-out drops them and adds the bias.
    static func convShiftedBand(
        _ x: UnsafePointer<Float>, channels cin: Int, height: Int, width: Int, kernel k: Int, padding: Int,
        taps: UnsafePointer<Float>, outChannels cout: Int, bias bb: UnsafeBufferPointer<Float>,
        outHeight: Int, outWidth: Int, firstRow: Int, rows: Int,
        scratch: UnsafeMutablePointer<Float>, bandRows: Int, into y: UnsafeMutablePointer<Float>, concurrently: Bool = true
    ) {
        let wp = width + 2 * padding
        let channelStride = shiftedChannelStride(rows: rows, kernel: k, paddedWidth: wp)
        let band = SharedPointer(scratch)
        let result = SharedPointer(scratch + cin * shiftedChannelStride(rows: bandRows, kernel: k, paddedWidth: wp))
        let inRows = rows + k - 1
        // The padded band input.
        Parallel.forEach(cin, grain: max(1, 32768 / max(1, channelStride)), concurrently: concurrently) { range in
            for c in range {
                let dst = band.base + c * channelStride
                for j in 0..<inRows {
                    let line = dst + j * wp
                    let iy = firstRow + j - padding
                    if iy < 0 || iy >= height {
                        line.update(repeating: 0, count: wp)
                    } else {
                        line.update(repeating: 0, count: padding)
                        (line + padding).update(from: x + (c * height + iy) * width, count: width)
                        (line + padding + width).update(repeating: 0, count: padding)
                    }
                }
                (dst + inRows * wp).update(repeating: 0, count: k - 1)
            }
        }
        // One GEMM per tap, accumulating.
        let cols = rows * wp
        for tap in 0..<(k * k) {
            let ky = tap / k, kx = tap % k
            BLAS.sgemm(m: cout, n: cols, k: cin, a: taps + tap * cout * cin, lda: cin,
                       b: band.base + ky * wp + kx, ldb: channelStride,
                       beta: tap == 0 ? 0 : 1, c: result.base, ldc: cols)
        }
        // Copy out the valid columns, adding the bias.
        let plane = outHeight * outWidth
        let out = SharedPointer(y)
        Parallel.forEach(cout, grain: max(1, 32768 / max(1, cols)), concurrently: concurrently) { range in
            for co in range {
                let v = FastMath.V(repeating: bb.isEmpty ? 0 : bb[co])
                for r in 0..<rows {
                    FastMath.map(result.base + co * cols + r * wp, out.base + co * plane + (firstRow + r) * outWidth,
                                 count: outWidth) { $0 + v }
                }
            }
        }
    }

    /// Writes the `[Cin·k·k, rows·outWidth]` patch matrix of output rows
    /// `firstRow ..< firstRow + rows` of one image: row `(c·k + ky)·k + kx`, column
    /// `r·outWidth + ox` holds `x[c, (firstRow + r)·stride − padding + ky, ox·stride − padding + kx]`,
    /// or 0 in the padding.
    static func im2colBand(
        _ x: UnsafePointer<Float>, channels: Int, height: Int, width: Int,
        kernel k: Int, stride: Int, padding: Int, outWidth: Int, firstRow: Int, rows: Int,
        into column: UnsafeMutablePointer<Float>, concurrently: Bool = true
    ) {
        let cols = rows * outWidth
        let col = SharedPointer(column)
        Parallel.forEach(channels * k * k, grain: max(1, 16384 / max(1, cols)), concurrently: concurrently) { range in
            for idx in range {
                let c = idx / (k * k), ky = (idx / k) % k, kx = idx % k
                let src = x + c * height * width
                let dstRow = col.base + idx * cols
                // Output columns whose input column lies inside the image: ix = ox·stride − padding + kx ∈ [0, width).
                let oxLo = min(outWidth, max(0, (padding - kx + stride - 1) / stride))
                let lastIx = width - 1 + padding - kx  // ox·stride ≤ lastIx; floor division, so test the sign
                let oxHi = lastIx < 0 ? oxLo : max(oxLo, min(outWidth, lastIx / stride + 1))
                for r in 0..<rows {
                    let dst = dstRow + r * outWidth
                    let iy = (firstRow + r) * stride - padding + ky
                    if iy < 0 || iy >= height {
                        dst.update(repeating: 0, count: outWidth)
                        continue
                    }
                    let line = src + iy * width
                    if oxLo > 0 { dst.update(repeating: 0, count: oxLo) }
                    if stride == 1 {
                        (dst + oxLo).update(from: line + (oxLo - padding + kx), count: oxHi - oxLo)
                    } else {
                        for ox in oxLo..<oxHi { dst[ox] = line[ox * stride - padding + kx] }
                    }
                    if oxHi < outWidth { (dst + oxHi).update(repeating: 0, count: outWidth - oxHi) }
                }
            }
        }
    }
}
