import ArgumentParser
import Diffusion
import Foundation

/// `sdbench deepcache`: what DeepCache saves on full-size SD1.5 at 512×512 with guidance (batch 2),
/// step by step, in fast mode: a whole UNet step against a cached one (interval 3, branch 0), the
/// VAE decode, and the 20-step `dpmpp-2m` speedup those imply. `sdbench model --full` measures the
/// two whole generations instead (`deepcache_generation_seconds`, `deepcache_speedup`); this is the
/// quick check, a few minutes rather than two generations.
struct DeepCacheBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deepcache",
        abstract: "Full-size SD1.5 at 512x512: a whole UNet step against a DeepCache step, and the 20-step speedup they imply.")

    /// The interval `make bench ARGS=--full` measures, the paper's usual one.
    static let interval = 3

    @OptionGroup var options: ModelBenchOptions

    @Option(help: "Timed runs of each step after the warm-up (the best is kept).")
    var repeats = 2

    @Option(help: "Steps of the generation the speedup is projected for.")
    var steps = 20

    /// `deepcache_generation_seconds` and `deepcache_speedup` for `sdbench model --full`.
    static func fields(_ generation: (seconds: Double, varied: Bool), against plain: Double) -> [(String, JSON)] {
        [("deepcache_generation_seconds", .number(generation.seconds, decimals: 2)),
         ("deepcache_speedup", .number(plain / generation.seconds, decimals: 3)),
         ("deepcache_generation_finite", .string(generation.varied ? "yes" : "no"))]
    }

    func run() throws {
        let url = try options.start()
        let timing = Timing(repeats: max(repeats, 1), minSeconds: 0, clock: options.clock)
        let pipeline = try StableDiffusionPipeline(url: url, options: LoadOptions(memoryMode: .fast))
        let context = try Workload.context(pipeline)
        let latents = Workload.latents(batch: 2)
        let unet = pipeline.unet
        let full = timing.best { _ = unet(latents, timestep: 999, context: context) }
        say(String(format: "whole UNet step (batch 2, 64x64): %.2f s", full))
        // Positions 0 then 1 of a schedule: a full step keeps the feature, every later call at
        // position 1 is a cached step on it.
        var cache = DeepCache(interval: Self.interval)
        let schedule: [Float] = [999, 500]
        _ = try cache.evaluate(unet, latents, stepIndex: 0, timesteps: schedule, context: context, residuals: nil, cancellation: nil)
        let (cached, profile) = bestProfiled(repeats: timing.repeats, timing) {
            _ = try? cache.evaluate(unet, latents, stepIndex: 1, timesteps: schedule, context: context, residuals: nil, cancellation: nil)
        }
        // The engine's own dense count (Winograd convolutions counted as dense), against the reference's whole step.
        let cachedGFLOP = profile.values.reduce(0) { $0 + $1.flops } / 1e9
        say(String(format: "DeepCache step (branch 0): %.3f s, %.3f of a whole step; %.1f dense GFLOP (a whole step: %.1f)",
                   cached, cached / full, cachedGFLOP, ReferenceFLOPs.unetStep / 1e9))
        let decode = timing.best { _ = pipeline.vae.decode(latents.slice(batch: 0)) }
        say(String(format: "vae decode (512x512): %.2f s", decode))

        let timesteps = try Sampler.dpmpp2m.makeScheduler(config: pipeline.schedulerConfig, steps: steps).timesteps
        var counter = DeepCache(interval: Self.interval)
        let fullSteps = timesteps.indices.filter { counter.isFullStep(stepIndex: $0, of: timesteps) }.count
        let plain = Double(timesteps.count) * full + decode
        let withCache = Double(fullSteps) * full + Double(timesteps.count - fullSteps) * cached + decode
        say(String(format: "%d-step dpmpp-2m: %d whole steps and %d cached; projected %.1f s against %.1f s, %.2fx",
                   steps, fullSteps, timesteps.count - fullSteps, withCache, plain, plain / withCache))
        print(JSON.object([
            ("deepcache_full_step_seconds", .number(full, decimals: 3)),
            ("deepcache_cached_step_seconds", .number(cached, decimals: 3)),
            ("deepcache_step_ratio", .number(cached / full, decimals: 4)),
            ("deepcache_cached_step_gflop", .number(cachedGFLOP, decimals: 1)),
            ("vae_decode_seconds", .number(decode, decimals: 3)),
            ("deepcache_projected_speedup", .number(plain / withCache, decimals: 3)),
            ("blas_threads", .int(BLAS.threads)),
            ("clock", .string(options.clock.rawValue)),
            ("load_average", .string(Machine.loadAverage)),
        ]).text)
    }
}
