import ArgumentParser
import Diffusion
import Foundation

/// Dense FLOP counts of the reference (torch `FlopCounterMode` on diffusers' modules, a
/// multiply-add = 2 FLOPs), at 512×512 with guidance.
enum ReferenceFLOPs {
    static let unetStep = 1606.5e9      // batch 2, 64×64 latent, 77-token context
    static let vaeDecode = 2514.5e9     // 64×64 latent -> 512×512
    static let textEncoder = 26.6e9     // batch 2 (prompt and negative prompt), 77 tokens
}

/// Options shared by the parent (`model`) and the child process (`model-child`).
struct ModelBenchOptions: ParsableArguments {
    @Option(help: "The checkpoint to measure (default: the synthetic SD1.5, made once and cached).")
    var checkpoint: String?

    @Option(help: "OpenBLAS threads (default: OpenBLAS's own choice).")
    var threads: Int?

    @Option(help: "wall: elapsed time; cpu: the process's CPU time (for a loaded machine; use with --threads 1).")
    var clock: Timing.Clock = .wall

    @Option(help: "The engine's numerics version: 2 (current) or 1 (Winograd's products on OpenBLAS, for replays of older transcripts).")
    var engineNumerics: EngineNumerics = .current

    func apply() {
        if let threads { BLAS.threads = threads }
        Tensor.numerics = engineNumerics
    }
    var timing: Timing { Timing(repeats: 1, minSeconds: 0, clock: clock) }

    /// The options a child process measures with, as its arguments.
    var childArguments: [String] {
        (threads.map { ["--threads", String($0)] } ?? []) + ["--engine-numerics", String(engineNumerics.rawValue)]
    }

    /// A benchmark's start: the threads applied, the machine said, and the checkpoint to measure
    /// (the synthetic one, made on first use, unless `--checkpoint` names one).
    func start() throws -> URL {
        apply()
        let url = try checkpoint.map { URL(fileURLWithPath: $0) } ?? SyntheticCheckpoint.ensure(at: SyntheticCheckpoint.defaultURL, log: say)
        sayMachine(clock: clock)
        return url
    }
}

/// The machine line every benchmark begins with.
func sayMachine(clock: Timing.Clock) {
    say("machine: \(Machine.cpuModel), \(ProcessInfo.processInfo.activeProcessorCount) cores, load \(Machine.loadAverage); "
        + "BLAS threads \(BLAS.threads), \(clock.rawValue) clock, engine numerics \(Tensor.numerics.rawValue)")
}

/// `sdbench model` (what `make bench` runs): SD1.5 at full size, 512×512 with guidance, on a
/// synthetic checkpoint. Measures, in one run and as ratios of the sgemm roof measured in the same
/// run: the text encoder, one UNet step and the VAE decode (fast mode, with a per-op profile); then,
/// in a child process in low-memory mode, the time from a cold model to the first step, a steady
/// step and decode, and the peak RSS; with `--full`, a whole 20-step `dpmpp-2m` generation too, in
/// both modes (fast here for the time, low in the child for the peak RSS of a whole generation).
/// Another child measures the default (fast) mode's peak RSS over a short whole generation
/// (`default_peak_rss_mb`, skipped with the low child). The last line is one JSON object.
struct ModelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Full-size SD1.5 at 512x512: text encoder, UNet step, VAE decode, first step, peak RSS.")

    @OptionGroup var options: ModelBenchOptions

    @Flag(help: "Also run a whole 20-step dpmpp-2m generation, in fast and in low-memory mode (about 7 more minutes).")
    var full = false

    @Option(help: ArgumentHelp("Steps of the --full generation (fewer: a quick check of the path; the floor ratio assumes 20).", visibility: .hidden))
    var fullSteps = 20

    // Two: on a shared machine one run is often caught by another job; the roof is a best of
    // several samples too.
    @Option(help: "Timed runs of the UNet step and the VAE decode after the warm-up (the best is kept).")
    var repeats: Int = 2

    @Flag(help: "Skip the low-memory and default-mode child processes (first step, peak RSS).")
    var skipLow = false

    @Flag(help: "Skip the draft figures (batch-1 UNet step, TAESD decode, a 4-step LCM draft with a rank-64 LoRA, in fast mode and in a low-memory child).")
    var skipDraft = false

    @Flag(help: "Skip the x4 upscale (a child process running `sdbench upscale`, about 1 minute).")
    var skipUpscale = false

    func run() throws {
        let url = try options.start()
        let timing = Timing(repeats: max(repeats, 1), minSeconds: 0, clock: options.clock)

        // The roof, sampled again before each measurement (`sampleSGEMMRoof`); the best sample counts.
        var roofSamples: [Double] = []
        func sampleRoof() { roofSamples.append(sampleSGEMMRoof(clock: options.clock)) }
        sampleRoof()

        // The low-memory child first, while this process is still small.
        var low: [String: Any] = [:]
        var defaultMode: [(String, JSON)] = []
        if !skipLow {
            low = try runChild(url: url)
            defaultMode = try DefaultModeBenchChild.runChild(url: url, options: options)
        }

        // Fast mode, in this process.
        let pipeline = try StableDiffusionPipeline(url: url, options: LoadOptions(memoryMode: .fast))
        var textSeconds = 0.0
        var context = Tensor(shape: [0])
        textSeconds = timing.best {
            context = (try? Workload.context(pipeline)) ?? context
        }
        say(String(format: "text encoder (batch 2, 77 tokens): %.3f s, %.1f GFLOP/s", textSeconds,
                   ReferenceFLOPs.textEncoder / textSeconds / 1e9))

        let latents = Workload.latents(batch: 2)
        var noise = Tensor(shape: [0])
        sampleRoof()
        let (unetSeconds, unetProfile) = profiled(timing) { noise = pipeline.unet(latents, timestep: 999, context: context) }
        let unetGFLOPs = ReferenceFLOPs.unetStep / unetSeconds / 1e9
        say(String(format: "unet step (batch 2, 64x64, guidance): %.2f s, %.1f GFLOP/s", unetSeconds, unetGFLOPs))

        let bf16Fields = BF16Bench.fields(pipeline, latents: latents, context: context, fp32Noise: noise, timing: timing,
                                          clock: options.clock)

        var image = Tensor(shape: [0])
        sampleRoof()
        let (vaeSeconds, vaeProfile) = profiled(timing) { image = pipeline.vae.decode(latents.slice(batch: 0)) }
        let vaeGFLOPs = ReferenceFLOPs.vaeDecode / vaeSeconds / 1e9
        say(String(format: "vae decode (512x512): %.2f s, %.1f GFLOP/s", vaeSeconds, vaeGFLOPs))
        var generation: (seconds: Double, varied: Bool)?
        var deepCacheGeneration: (seconds: Double, varied: Bool)?
        if full {
            sampleRoof()
            generation = try Workload.generate(pipeline, steps: fullSteps, timing: timing, label: "fast")
            deepCacheGeneration = try Workload.generate(pipeline, steps: fullSteps, timing: timing, label: "fast",
                                                        deepCache: DeepCacheBench.interval)
        }
        sampleRoof()
        let roof = roofSamples.max() ?? 0
        say(String(format: "roof: cblas_sgemm %.1f GFLOP/s (best of the %d samples); unet %.3f of roof, vae %.3f of roof",
                    roof, roofSamples.count, unetGFLOPs / roof, vaeGFLOPs / roof))
        printProfile("unet step", unetProfile, total: unetSeconds, roof: roof, reference: ReferenceFLOPs.unetStep)
        printProfile("vae decode", vaeProfile, total: vaeSeconds, roof: roof, reference: ReferenceFLOPs.vaeDecode)

        let finite = [context, noise, image].allSatisfy { $0.data.allSatisfy(\.isFinite) }
        if !finite { say("WARNING: non-finite values in the outputs") }

        var fields: [(String, JSON)] = [
            ("roof_gflops", .number(roof, decimals: 1)),
            ("roof_samples", .array(roofSamples.map { .number($0, decimals: 1) })),
            ("unet_step_seconds", .number(unetSeconds, decimals: 3)),
            ("unet_gflops", .number(unetGFLOPs, decimals: 1)),
            ("unet_ratio", .number(unetGFLOPs / roof, decimals: 3)),
            ("vae_decode_seconds", .number(vaeSeconds, decimals: 3)),
            ("vae_gflops", .number(vaeGFLOPs, decimals: 1)),
            ("vae_ratio", .number(vaeGFLOPs / roof, decimals: 3)),
            ("text_encoder_seconds", .number(textSeconds, decimals: 3)),
            ("text_encoder_gflops", .number(ReferenceFLOPs.textEncoder / textSeconds / 1e9, decimals: 1)),
        ] + bf16Fields
        if !skipDraft {
            fields += try DraftBench.fields(pipeline, timing: timing, roof: { sampleRoof(); return roofSamples.max() ?? 0 },
                                            lowMemory: (url, options))
        }
        if !skipLow {
            let lowStep = low["unet_step_seconds"] as? Double ?? .nan
            let lowVAE = low["vae_decode_seconds"] as? Double ?? .nan
            fields += [
                // New process, checkpoint dropped from the page cache, low-memory mode: open + build +
                // tokenize + encode, up to the moment the first UNet step starts (what mmap and lazy
                // conversion keep short) ...
                ("first_step_seconds", .number(low["first_step_seconds"] as? Double ?? .nan, decimals: 3)),
                // ... and up to the end of that step (a 1606.5-GFLOP step cannot take under 3 s here)
                ("first_step_done_seconds", .number(low["first_step_done_seconds"] as? Double ?? .nan, decimals: 3)),
                ("cold_page_cache", .string(low["cold_page_cache"] as? String ?? "unknown")),
                ("peak_rss_mb", .number(low["peak_rss_mb"] as? Double ?? .nan, decimals: 0)),
                ("low_unet_step_seconds", .number(lowStep, decimals: 3)),
                ("low_vae_decode_seconds", .number(lowVAE, decimals: 3)),
                ("low_unet_step_conversion_seconds", .number(low["unet_step_conversion_seconds"] as? Double ?? .nan, decimals: 3)),
                // (low − fast) / fast over a UNet step plus a decode: 0.15 is 15% slower
                ("low_mode_slowdown", .number((lowStep + lowVAE) / (unetSeconds + vaeSeconds) - 1, decimals: 3)),
            ]
            if full {
                fields += [
                    ("low_generation_seconds", .number(low["generation_seconds"] as? Double ?? .nan, decimals: 2)),
                    ("low_generation_finite", .string(String(describing: low["generation_finite"] ?? "unknown"))),
                ]
            }
        }
        fields += defaultMode
        if let generation, let lowGeneration = low["generation_seconds"] as? Double {
            // Whole generations, one after the other in the same run: the steadier comparison.
            fields.append(("low_generation_slowdown", .number(lowGeneration / generation.seconds - 1, decimals: 3)))
        }
        if let generation {
            // The stretch goal: a whole generation against the dense-FLOP floor at the roof.
            let floor = (Double(fullSteps) * ReferenceFLOPs.unetStep + ReferenceFLOPs.vaeDecode + ReferenceFLOPs.textEncoder) / (roof * 1e9)
            fields += [
                ("generation_seconds", .number(generation.seconds, decimals: 2)),
                ("generation_floor_seconds", .number(floor, decimals: 2)),
                ("generation_floor_ratio", .number(generation.seconds / floor, decimals: 3)),
                ("generation_finite", .string(generation.varied ? "yes" : "no")),
            ]
            if let deepCacheGeneration { fields += DeepCacheBench.fields(deepCacheGeneration, against: generation.seconds) }
        }
        if !skipUpscale {
            fields += try UpscaleBench.runChild(threads: options.threads, clock: options.clock)
        }
        fields += [
            ("unet_profile", profileJSON(unetProfile, total: unetSeconds)),
            ("vae_profile", profileJSON(vaeProfile, total: vaeSeconds)),
            ("finite", .string(finite ? "yes" : "no")),
            ("blas_threads", .int(BLAS.threads)),
            ("clock", .string(options.clock.rawValue)),
            ("load_average", .string(Machine.loadAverage)),
        ]
        print(JSON.object(fields).text)
    }

    /// The best of the timed runs after one warm-up, and the per-op profile of that run.
    func profiled(_ timing: Timing, _ body: () -> Void) -> (Double, [Profiler.Kind: Profiler.Entry]) {
        body()  // warm-up: fast mode converts the weights here
        return bestProfiled(repeats: timing.repeats, timing, body)
    }

    /// Runs `sdbench model-child` on `url` and returns its JSON line.
    func runChild(url: URL) throws -> [String: Any] {
        var arguments = ["model-child", "--checkpoint", url.path, "--clock", options.clock.rawValue, "--repeats", String(repeats)]
        arguments += options.childArguments
        if full { arguments += ["--full", "--steps", String(fullSteps)] }
        say("low-memory mode, in a child process (\(arguments.joined(separator: " ")))")
        return try runBenchChild(arguments, what: "the low-memory child")
    }
}

/// Runs this executable with `arguments` (a hidden child subcommand: its peak RSS is its own) and
/// returns the JSON object of its last output line; its progress goes to our stderr.
/// - Throws: `BenchError` naming `what` with the end of its output when it fails.
func runBenchChild(_ arguments: [String], what: String) throws -> [String: Any] {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let process = Process()
    process.executableURL = URL(fileURLWithPath: exe)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: output, as: UTF8.self)
    guard process.terminationStatus == 0,
          let line = text.split(separator: "\n").last,
          let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        throw BenchError("\(what) failed (status \(process.terminationStatus)): \(text.suffix(500))")
    }
    return object
}

/// `sdbench model-child` (hidden): the low-memory half of `sdbench model`, in its own process so
/// its peak RSS (VmHWM) is its own: cold start to the first UNet step, a second step, the decode,
/// and with `--full` a whole 20-step generation. Progress goes to stderr, the JSON line to stdout.
struct ModelBenchChild: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "model-child", shouldDisplay: false)

    @OptionGroup var options: ModelBenchOptions

    @Flag var full = false

    @Option var steps = 20

    @Option var repeats = 2

    @Flag(help: "Only the VAE decode (for memory experiments).")
    var vaeOnly = false

    func run() throws {
        options.apply()
        guard let path = options.checkpoint else { throw ValidationError("--checkpoint is required") }
        let timing = options.timing
        let latents = Workload.latents(batch: 2)
        if vaeOnly {
            let pipeline = try StableDiffusionPipeline(url: URL(fileURLWithPath: path), options: LoadOptions(memoryMode: .low))
            say("  low: built, \(Machine.memory)")
            let decode = timing.best { _ = pipeline.vae.decode(latents.slice(batch: 0)) }
            say(String(format: "  low: VAE decode %.2f s; ", decode) + Machine.memory)
            print(JSON.object([("vae_decode_seconds", .number(decode, decimals: 3)),
                               ("peak_rss_mb", .number(Machine.status("VmHWM"), decimals: 0))]).text)
            return
        }

        // Cold: nothing of the checkpoint in the page cache (the parent has not opened it yet), so
        // the text encoder's weights are read from the disk, as after a reboot.
        let evicted = Machine.evictFromPageCache(path)
        let start = timing.now()
        let pipeline = try StableDiffusionPipeline(url: URL(fileURLWithPath: path), options: LoadOptions(memoryMode: .low))
        let loaded = timing.now()
        let context = try Workload.context(pipeline)
        let encoded = timing.now()
        var noise = pipeline.unet(latents, timestep: 999, context: context)
        let stepDone = timing.now()
        say(String(format: "  low: cold start (page cache %@) to the first UNet step %.2f s (open + build %.2f s, text %.2f s), "
                   + "first step done %.2f s; ", evicted ? "dropped" : "NOT dropped", encoded - start, loaded - start,
                   encoded - loaded, stepDone - start) + Machine.memory)

        // Steps after the first (the warm-up) and decodes, the best of `repeats` as in fast mode,
        // profiled for the time spent converting weights, which is what low-memory mode adds.
        func profiledOnce(_ body: () -> Void) -> (seconds: Double, conversion: Double) {
            let (seconds, profile) = bestProfiled(repeats: repeats, timing, body)
            return (seconds, profile[.weights]?.seconds ?? 0)
        }
        let (step, stepConversion) = profiledOnce { noise = pipeline.unet(latents, timestep: 500, context: context) }
        say(String(format: "  low: UNet step %.2f s (weight conversion %.2f s); ", step, stepConversion) + Machine.memory)
        var image = Tensor(shape: [0])
        let (decode, decodeConversion) = profiledOnce { image = pipeline.vae.decode(latents.slice(batch: 0)) }
        say(String(format: "  low: VAE decode %.2f s (weight conversion %.2f s); ", decode, decodeConversion) + Machine.memory)
        var fields: [(String, JSON)] = [
            ("first_step_seconds", .number(encoded - start, decimals: 3)),
            ("first_step_done_seconds", .number(stepDone - start, decimals: 3)),
            ("cold_page_cache", .string(evicted ? "yes" : "no")),
            ("unet_step_seconds", .number(step, decimals: 3)),
            ("vae_decode_seconds", .number(decode, decimals: 3)),
            ("unet_step_conversion_seconds", .number(stepConversion, decimals: 3)),
            ("vae_decode_conversion_seconds", .number(decodeConversion, decimals: 3)),
            ("finite", .string([noise, image].allSatisfy { $0.data.allSatisfy(\.isFinite) } ? "yes" : "no")),
        ]
        if full {
            let generation = try Workload.generate(pipeline, steps: steps, timing: timing, label: "low")
            fields += [("generation_seconds", .number(generation.seconds, decimals: 2)),
                       ("generation_finite", .string(generation.varied ? "yes" : "no"))]
        }
        fields.append(("peak_rss_mb", .number(Machine.status("VmHWM"), decimals: 0)))
        print(JSON.object(fields).text)
    }
}

/// The best of `repeats` timed runs of `body` (at least one), with the per-op profile of that run.
func bestProfiled(repeats: Int, _ timing: Timing, _ body: () -> Void) -> (seconds: Double, profile: [Profiler.Kind: Profiler.Entry]) {
    var best = Double.infinity
    var profile: [Profiler.Kind: Profiler.Entry] = [:]
    for _ in 0..<max(1, repeats) {
        Profiler.reset()
        Profiler.isEnabled = true
        let start = timing.now()
        body()
        let seconds = timing.now() - start
        Profiler.isEnabled = false
        if seconds < best { best = seconds; profile = Profiler.totals }
    }
    return (best, profile)
}

// By its number (`RawRepresentable`'s default).
extension EngineNumerics: ExpressibleByArgument {}
