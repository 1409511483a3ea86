import ArgumentParser
import Diffusion
import Foundation

/// One sgemm shape SD1.5 runs at 512×512: `C[m, n] = A[m, k] · B[k, n]` (or with `B` transposed,
/// as `Linear` and `Q·Kᵀ` are).
struct GEMMShape {
    var m: Int, n: Int, k: Int
    var transB = false
    var what: String

    var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
    /// Big enough in every dimension to count towards the roof.
    var isLarge: Bool { min(m, n, k) >= 256 }

    /// The GEMMs of one 512×512 generation: UNet (64×64 latent, guidance batch 2 for the linear
    /// layers whose M spans the batch), VAE decoder, CLIP. Convolutions are im2col GEMMs,
    /// `[Cout, Cin·9] · [Cin·9, pixels]`; the VAE's full-resolution ones are shown at the band
    /// size `Tensor.conv2d` actually runs (16 MB of im2col columns).
    static let sd15: [GEMMShape] = {
        var s = [GEMMShape]()
        // UNet convolutions, per image.
        s.append(.init(m: 320, n: 4096, k: 36, what: "unet conv_in 4->320 64x64"))
        s.append(.init(m: 320, n: 4096, k: 2880, what: "unet conv3x3 320ch 64x64"))
        s.append(.init(m: 320, n: 4096, k: 5760, what: "unet up conv3x3 640->320 64x64"))
        s.append(.init(m: 320, n: 1024, k: 2880, what: "unet downsample conv3x3 s2 320ch 64->32"))
        s.append(.init(m: 640, n: 1024, k: 5760, what: "unet conv3x3 640ch 32x32"))
        s.append(.init(m: 1280, n: 256, k: 11520, what: "unet conv3x3 1280ch 16x16"))
        s.append(.init(m: 1280, n: 64, k: 11520, what: "unet conv3x3 1280ch 8x8"))
        s.append(.init(m: 320, n: 4096, k: 320, what: "unet proj_in conv1x1 320ch 64x64"))
        // UNet transformer linears at 64×64, batch 2 (M = 2 × 4096 tokens).
        s.append(.init(m: 8192, n: 320, k: 320, transB: true, what: "unet attn q/k/v/out linear 320 (64x64, batch 2)"))
        s.append(.init(m: 8192, n: 2560, k: 320, transB: true, what: "unet ff geglu proj 320->2560 (64x64, batch 2)"))
        s.append(.init(m: 8192, n: 320, k: 1280, transB: true, what: "unet ff out 1280->320 (64x64, batch 2)"))
        s.append(.init(m: 154, n: 320, k: 768, transB: true, what: "unet cross-attn k/v from context 768->320"))
        s.append(.init(m: 2, n: 1280, k: 320, transB: true, what: "unet time embedding linear 320->1280"))
        // UNet attention per (image, head): Q·Kᵀ and P·V.
        s.append(.init(m: 4096, n: 4096, k: 40, transB: true, what: "unet self-attn QK^T 64x64 head dim 40"))
        s.append(.init(m: 4096, n: 40, k: 4096, what: "unet self-attn PV 64x64 head dim 40"))
        s.append(.init(m: 128, n: 4096, k: 40, transB: true, what: "unet self-attn QK^T 128-query block, head dim 40"))
        s.append(.init(m: 128, n: 40, k: 4096, what: "unet self-attn PV 128-query block, head dim 40"))
        s.append(.init(m: 1024, n: 1024, k: 80, transB: true, what: "unet self-attn QK^T 32x32 head dim 80"))
        s.append(.init(m: 1024, n: 80, k: 1024, what: "unet self-attn PV 32x32 head dim 80"))
        s.append(.init(m: 256, n: 256, k: 160, transB: true, what: "unet self-attn QK^T 16x16 head dim 160"))
        s.append(.init(m: 4096, n: 77, k: 40, transB: true, what: "unet cross-attn QK^T 64x64 x 77 tokens"))
        s.append(.init(m: 4096, n: 40, k: 77, what: "unet cross-attn PV 64x64 x 77 tokens"))
        // VAE decoder.
        s.append(.init(m: 512, n: 4096, k: 4608, what: "vae conv3x3 512ch 64x64"))
        s.append(.init(m: 512, n: 16384, k: 4608, what: "vae conv3x3 512ch 128x128"))
        s.append(.init(m: 256, n: 7168, k: 2304, what: "vae conv3x3 256ch 256x256 (7-row band)"))
        s.append(.init(m: 128, n: 3584, k: 1152, what: "vae conv3x3 128ch 512x512 (7-row band)"))
        s.append(.init(m: 3, n: 3584, k: 1152, what: "vae conv_out 128->3 512x512 (7-row band)"))
        s.append(.init(m: 4096, n: 4096, k: 512, transB: true, what: "vae mid attn QK^T 64x64 dim 512"))
        s.append(.init(m: 4096, n: 512, k: 4096, what: "vae mid attn PV 64x64 dim 512"))
        // CLIP text encoder, batch 2 × 77 tokens.
        s.append(.init(m: 154, n: 768, k: 768, transB: true, what: "clip q/k/v/out linear 768"))
        s.append(.init(m: 154, n: 3072, k: 768, transB: true, what: "clip mlp fc1 768->3072"))
        return s
    }()
}

/// `sdbench gemm`: cblas_sgemm GFLOP/s on SD1.5's shapes, and the roof (the best large shape)
/// that every later speed figure is a ratio of.
struct GEMMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "cblas_sgemm GFLOP/s for the GEMM shapes SD1.5 uses at 512x512 (best of the timed runs).")

    @OptionGroup var options: TimingOptions

    @Option(help: "Only shapes whose description contains this text.")
    var filter: String?

    func run() {
        options.apply()
        var results = [JSON]()
        var roof = 0.0
        for shape in GEMMShape.sd15 where filter.map({ shape.what.contains($0) }) ?? true {
            let gflops = GEMMBench.measure(shape, timing: options.timing)
            if shape.isLarge { roof = max(roof, gflops) }
            results.append(.object([
                ("m", .int(shape.m)), ("n", .int(shape.n)), ("k", .int(shape.k)),
                ("gflops", .number(gflops, decimals: 1)), ("what", .string(shape.what)),
            ]))
        }
        print(JSON.object([
            ("roof_gflops", .number(roof, decimals: 1)),
            ("stat", .string("best of >= \(options.repeats) runs after 1 warm-up, \(options.clock.rawValue) clock")),
            ("blas_threads", .int(BLAS.threads)),
            ("shapes", .array(results)),
        ]).text)
    }

    /// The best GFLOP/s of `shape` on random-free constant operands (sgemm's speed does not depend
    /// on the values, only on denormals, which constants avoid).
    static func measure(_ shape: GEMMShape, timing: Timing) -> Double {
        let a = [Float](repeating: 0.5, count: shape.m * shape.k)
        let b = [Float](repeating: 0.25, count: shape.k * shape.n)
        var c = [Float](repeating: 0, count: shape.m * shape.n)
        let seconds = a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    timing.best {
                        BLAS.sgemm(transB: shape.transB, m: shape.m, n: shape.n, k: shape.k,
                                   a: ap.baseAddress!, lda: shape.k,
                                   b: bp.baseAddress!, ldb: shape.transB ? shape.k : shape.n,
                                   c: cp.baseAddress!, ldc: shape.n)
                    }
                }
            }
        }
        return shape.flops / seconds / 1e9
    }
}
