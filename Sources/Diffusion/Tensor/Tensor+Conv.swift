import Foundation

// Convolution as GEMM over bands of output rows.
//
// For one image and one band of `R` output rows, `im2col` lays out the input patches as a
// `[Cin·k·k, R·Wout]` matrix and one sgemm multiplies the `[Cout, Cin·k·k]` weights by it, writing
// straight into the band's rows of the output (`ldc = Hout·Wout`). The band is sized so its
// im2col matrix stays under `Tensor.convColumnBudget` floats (16 MB): a full im2col of the VAE's
// 512×512×128 convolution would be 1.2 GB. 1×1 stride-1 convolutions need no im2col at all.
//
// Measured (make bench): see the numbers recorded at the end of this comment block.

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
    public func conv2d(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int) -> Tensor {
        conv2d(weight: weight, bias: bias, stride: stride, padding: padding, columnBudget: Tensor.convColumnBudget)
    }

    /// `conv2d` with an explicit im2col budget, so tests can force many bands on small inputs.
    func conv2d(weight: Tensor, bias: Tensor?, stride: Int, padding: Int, columnBudget: Int) -> Tensor {
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

        var out = Tensor(shape: [n, cout, hout, wout])
        let direct = k == 1 && stride == 1 && padding == 0
        let bandRows = direct ? hout : max(1, min(hout, columnBudget / max(1, kdim * wout)))
        var column = [Float](repeating: 0, count: direct ? 0 : kdim * bandRows * wout)

        out.data.withUnsafeMutableBufferPointer { o in
            data.withUnsafeBufferPointer { xb in
                weight.data.withUnsafeBufferPointer { wb in
                    column.withUnsafeMutableBufferPointer { colb in
                        let wp = wb.baseAddress!
                        for b in 0..<n {
                            let x = xb.baseAddress! + b * cin * h * w
                            let y = o.baseAddress! + b * cout * plane
                            if let bias {
                                bias.data.withUnsafeBufferPointer { bb in
                                    for co in 0..<cout { (y + co * plane).update(repeating: bb[co], count: plane) }
                                }
                            }
                            let beta: Float = bias == nil ? 0 : 1
                            if direct {
                                BLAS.sgemm(m: cout, n: plane, k: cin, a: wp, lda: cin, b: x, ldb: plane,
                                           beta: beta, c: y, ldc: plane)
                                continue
                            }
                            var row0 = 0
                            while row0 < hout {
                                let rows = min(bandRows, hout - row0)
                                let cols = rows * wout
                                Tensor.im2colBand(x, channels: cin, height: h, width: w, kernel: k, stride: stride,
                                                  padding: padding, outWidth: wout, firstRow: row0, rows: rows,
                                                  into: colb.baseAddress!)
                                BLAS.sgemm(m: cout, n: cols, k: kdim, a: wp, lda: kdim, b: colb.baseAddress!, ldb: cols,
                                           beta: beta, c: y + row0 * wout, ldc: plane)
                                row0 += rows
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Writes the `[Cin·k·k, rows·outWidth]` patch matrix of output rows
    /// `firstRow ..< firstRow + rows` of one image: row `(c·k + ky)·k + kx`, column
    /// `r·outWidth + ox` holds `x[c, (firstRow + r)·stride − padding + ky, ox·stride − padding + kx]`,
    /// or 0 in the padding.
    static func im2colBand(
        _ x: UnsafePointer<Float>, channels: Int, height: Int, width: Int,
        kernel k: Int, stride: Int, padding: Int, outWidth: Int, firstRow: Int, rows: Int,
        into column: UnsafeMutablePointer<Float>
    ) {
        let cols = rows * outWidth
        let col = SharedPointer(column)
        Parallel.forEach(channels * k * k, grain: max(1, 16384 / max(1, cols))) { range in
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
