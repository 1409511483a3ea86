import CBF16
import Diffusion
import Foundation

/// The bf16 figures of `sdbench model`: oneDNN's bf16 matmul peak (the bf16 roof), a UNet step and a
/// VAE decode with bf16 products as ratios of it, and one UNet step's error against fp32. Without bf16
/// instructions the times are null and the error is measured with the emulation, which rounds alike.
enum BF16Bench {
    /// The best GFLOP/s of oneDNN's bf16 matmul on the roof's two shapes, inputs already in bf16.
    static func roof(clock: Timing.Clock) -> (gflops: Double, implementation: String) {
        let timing = Timing(repeats: 5, minSeconds: 0.5, clock: clock)
        var best = 0.0
        var implementation = "?"
        for shape in GEMMShape.sd15 where shape.what == "unet conv3x3 320ch 64x64" || shape.what == "vae conv3x3 512ch 64x64" {
            var reason: UnsafePointer<CChar>?
            guard let matmul = sd_dnnl_matmul_create(shape.m, shape.n, shape.k, 0, 0, shape.n, 1, 0, 1, &reason) else { continue }
            defer { sd_dnnl_matmul_destroy(matmul) }
            implementation = String(cString: sd_dnnl_matmul_impl(matmul))
            let a = [UInt16](repeating: 0x3f00, count: shape.m * shape.k)  // 0.5
            let b = [UInt16](repeating: 0x3e80, count: shape.k * shape.n)  // 0.25
            var c = [Float](repeating: 0, count: shape.m * shape.n)
            let seconds = timing.best { _ = sd_dnnl_matmul_run(matmul, a, b, &c, Int32(BLAS.threads)) }
            best = max(best, shape.flops / seconds / 1e9)
        }
        say(String(format: "bf16 roof sample: oneDNN matmul (%@) %.1f GFLOP/s", implementation, best))
        return (best, implementation)
    }

    /// The fields, after the fp32 step has given `fp32Noise` for `latents` and `context`.
    static func fields(_ pipeline: StableDiffusionPipeline, latents: Tensor, context: Tensor, fp32Noise: Tensor,
                       timing: Timing, clock: Timing.Clock) -> [(String, JSON)] {
        func step() -> Tensor { BLAS.withPrecision(.bf16) { pipeline.unet(latents, timestep: 999, context: context) } }
        guard BF16Support.backend == .oneDNN else {
            let error = relativeL2(BF16Support.emulating(step), fp32Noise)
            say(String(format: "bf16: none here (%@); one UNet step's relative L2 error, emulated: %.2e", unavailableReason, error))
            return [("bf16_backend", .string("none: " + unavailableReason)), ("bf16_roof_gflops", .number(.nan, decimals: 1)),
                    ("unet_step_bf16_seconds", .number(.nan, decimals: 3)), ("unet_bf16_ratio", .number(.nan, decimals: 3)),
                    ("vae_decode_bf16_seconds", .number(.nan, decimals: 3)), ("vae_bf16_ratio", .number(.nan, decimals: 3)),
                    ("unet_bf16_rel_l2", .number(error, decimals: 5)), ("unet_bf16_rel_l2_backend", .string("emulated"))]
        }
        var roof = roof(clock: clock)
        var noise = Tensor(shape: [0])
        let unetSeconds = timing.best { noise = step() }
        let vaeSeconds = timing.best { _ = BLAS.withPrecision(.bf16) { pipeline.vae.decode(latents.slice(batch: 0)) } }
        roof.gflops = max(roof.gflops, self.roof(clock: clock).gflops)
        let error = relativeL2(noise, fp32Noise)
        let unetRatio = ReferenceFLOPs.unetStep / unetSeconds / 1e9 / roof.gflops
        let vaeRatio = ReferenceFLOPs.vaeDecode / vaeSeconds / 1e9 / roof.gflops
        say(String(format: "bf16 (%@): unet step %.2f s = %.3f of the bf16 roof %.1f GFLOP/s; vae decode %.2f s = %.3f; "
                   + "unet relative L2 error %.2e", roof.implementation, unetSeconds, unetRatio, roof.gflops, vaeSeconds, vaeRatio, error))
        return [("bf16_backend", .string("oneDNN " + roof.implementation)), ("bf16_roof_gflops", .number(roof.gflops, decimals: 1)),
                ("unet_step_bf16_seconds", .number(unetSeconds, decimals: 3)), ("unet_bf16_ratio", .number(unetRatio, decimals: 3)),
                ("vae_decode_bf16_seconds", .number(vaeSeconds, decimals: 3)), ("vae_bf16_ratio", .number(vaeRatio, decimals: 3)),
                ("unet_bf16_rel_l2", .number(error, decimals: 5)), ("unet_bf16_rel_l2_backend", .string("oneDNN"))]
    }

    private static var unavailableReason: String {
        if case .failure(let unavailable) = BF16Support.detected { return unavailable.description }
        return "the emulation only (SDREPL_BF16=emulate)"
    }

    /// ‖a − b‖ / ‖b‖.
    static func relativeL2(_ a: Tensor, _ b: Tensor) -> Double {
        var difference = 0.0, norm = 0.0
        for (x, y) in zip(a.data, b.data) {
            difference += Double(x - y) * Double(x - y)
            norm += Double(y) * Double(y)
        }
        return (difference / max(norm, .leastNonzeroMagnitude)).squareRoot()
    }
}
