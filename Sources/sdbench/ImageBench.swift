import ArgumentParser
import Diffusion
import Foundation

/// `sdbench images` (`make bench BENCH=images`): the work that continues from a picture, on the
/// full-size synthetic SD1.5. Each low-memory workload runs in a child process of its own so its
/// peak RSS (VmHWM) is its own: img2img and inpainting at 512×512, and a 512→1024 hires fix without
/// and with VAE tiling. Then, in this process in fast mode, the hires fix timed against its dense
/// floor: the dense FLOPs the engine's hooks count during the run, at the sgemm roof measured in the
/// same run.
struct ImageBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "Peak RSS of img2img, inpainting and a 512->1024 hires fix in low-memory mode, and the hires fix's time against its dense floor.")

    @OptionGroup var options: ModelBenchOptions

    @Option(help: "First-pass steps of the timed hires fix (dpmpp-2m, 512x512).")
    var steps = 20

    @Option(help: "Second-pass steps of the timed hires fix (1024x1024, strength 0.7).")
    var hiresSteps = 10

    @Flag(help: "Skip the low-memory children (peak RSS).")
    var skipLow = false

    func run() throws {
        let url = try options.start()
        var fields: [(String, JSON)] = []
        if !skipLow {
            for workload in ImageWorkload.allCases {
                let child = try runChild(workload, url: url)
                fields.append(("low_\(workload.rawValue)_peak_rss_mb", .number(child["peak_rss_mb"] as? Double ?? .nan, decimals: 0)))
                fields.append(("low_\(workload.rawValue)_seconds", .number(child["seconds"] as? Double ?? .nan, decimals: 2)))
            }
        }
        var roof = sampleSGEMMRoof(clock: options.clock)
        let pipeline = try StableDiffusionPipeline(url: url, options: LoadOptions(memoryMode: .fast))
        let request = ImageWorkload.hires.request(steps: steps, hiresSteps: hiresSteps)
        _ = try pipeline.prepare(request)  // fast mode converts the text encoder's weights here, untimed
        Profiler.reset()
        Profiler.isEnabled = true
        let timing = options.timing
        let begin = timing.now()
        let image = try pipeline.generate(request) { p in
            say(String(format: "  hires fix: step %d/%d, %.1f s", p.step, p.total, p.elapsed))
        }[0].image
        let seconds = timing.now() - begin
        Profiler.isEnabled = false
        let flops = Profiler.totals.values.reduce(0) { $0 + $1.flops }
        roof = max(roof, sampleSGEMMRoof(clock: options.clock))
        let floor = flops / (roof * 1e9)
        let varied = Set(image.rgb.prefix(1 << 16)).count > 8
        say(String(format: "hires fix 512->1024 (%d + %d steps): %.1f s; dense floor %.1f s (%.1f GFLOP at the roof %.1f GFLOP/s)",
                   steps, hiresSteps, seconds, floor, flops / 1e9, roof))
        fields += [
            ("roof_gflops", .number(roof, decimals: 1)),
            ("hires_seconds", .number(seconds, decimals: 2)),
            ("hires_gflop", .number(flops / 1e9, decimals: 1)),
            ("hires_floor_seconds", .number(floor, decimals: 2)),
            ("hires_floor_ratio", .number(seconds / floor, decimals: 3)),
            ("hires_finite", .string(varied ? "yes" : "no")),
            ("blas_threads", .int(BLAS.threads)),
            ("clock", .string(options.clock.rawValue)),
            ("load_average", .string(Machine.loadAverage)),
        ]
        print(JSON.object(fields).text)
    }

    /// Runs `sdbench images-child` for `workload` and returns its JSON line.
    func runChild(_ workload: ImageWorkload, url: URL) throws -> [String: Any] {
        var arguments = ["images-child", workload.rawValue, "--checkpoint", url.path, "--clock", options.clock.rawValue]
        arguments += options.childArguments
        say("low-memory \(workload.rawValue), in a child process (\(arguments.joined(separator: " ")))")
        return try runBenchChild(arguments, what: "the \(workload.rawValue) child")
    }
}

/// What `sdbench images` measures the peak RSS of, each a short low-memory run.
enum ImageWorkload: String, CaseIterable, ExpressibleByArgument {
    case img2img, inpaint, hires
    /// The hires fix with VAE tiling, which the low-memory mode needs to stay small at 1024×1024.
    case hiresTiled = "hires_tiled"

    /// A request that exercises the workload's memory at its size with few steps (the peak does not
    /// grow with the step count).
    func request(steps: Int = 4, hiresSteps: Int = 1) -> GenerationRequest {
        var request = GenerationRequest(prompt: Workload.prompt, seed: 1, steps: steps, guidanceScale: 7.5,
                                        width: 512, height: 512, sampler: .dpmpp2m)
        switch self {
        case .img2img, .inpaint:
            // A picture with structure at every scale, so the encoder's work is a real picture's.
            let rgb = (0..<(512 * 512 * 3)).map { UInt8(truncatingIfNeeded: ($0 / 3 % 512) ^ ($0 / 1536)) }
            request.initImage = PixelImage(width: 512, height: 512, rgb: rgb)
            request.strength = 0.75
            if self == .inpaint {
                request.mask = InpaintMask(width: 512, height: 512, values: (0..<(512 * 512)).map { $0 / 512 < 256 ? 255 : 0 })
            }
        case .hires, .hiresTiled:
            request.hires = HiresFix(width: 1024, height: 1024, steps: hiresSteps, strength: 0.7)
            request.vaeTiling = self == .hiresTiled
        }
        return request
    }
}

/// `sdbench images-child WORKLOAD` (hidden): one low-memory workload of `sdbench images` in its own
/// process; prints its seconds and peak RSS as one JSON line.
struct ImageBenchChild: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "images-child", shouldDisplay: false)

    @Argument var workload: ImageWorkload

    @OptionGroup var options: ModelBenchOptions

    func run() throws {
        options.apply()
        guard let path = options.checkpoint else { throw ValidationError("--checkpoint is required") }
        let timing = options.timing
        let pipeline = try StableDiffusionPipeline(url: URL(fileURLWithPath: path), options: LoadOptions(memoryMode: .low))
        let begin = timing.now()
        _ = try pipeline.generate(workload.request()) { p in
            say(String(format: "  low %@: step %d/%d, %.1f s; %@", workload.rawValue, p.step, p.total, p.elapsed, Machine.memory))
        }
        let seconds = timing.now() - begin
        print(JSON.object([("seconds", .number(seconds, decimals: 2)),
                           ("peak_rss_mb", .number(Machine.status("VmHWM"), decimals: 0))]).text)
    }
}
