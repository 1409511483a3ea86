import ArgumentParser
import Diffusion
import Foundation

/// `sdbench draft` (`make bench BENCH=draft`): the draft figures of `sdbench model` alone, with the
/// roof sampled in the same run: a batch-1 UNet step, TAESD's decode, a whole 4-step LCM draft in
/// fast mode against its dense floor, and (unless `--skip-low`) the same draft in low-memory mode in
/// a child process for its peak RSS.
struct DraftBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "draft",
        abstract: "A 4-step LCM draft with a rank-64 LoRA and TAESD at 512x512: fast mode against its floor, low-memory peak RSS.")

    @OptionGroup var options: ModelBenchOptions

    @Option(help: "Timed runs of the UNet step and the TAESD decode (the best is kept).")
    var repeats = 2

    @Flag(help: "Skip the low-memory draft child (peak RSS).")
    var skipLow = false

    func run() throws {
        let url = try options.start()
        var roofSamples = [sampleSGEMMRoof(clock: options.clock)]
        let pipeline = try StableDiffusionPipeline(url: url, options: LoadOptions(memoryMode: .fast))
        let timing = Timing(repeats: max(repeats, 1), minSeconds: 0, clock: options.clock)
        var fields = try DraftBench.fields(pipeline, timing: timing, roof: {
            roofSamples.append(sampleSGEMMRoof(clock: options.clock))
            return roofSamples.max() ?? 0
        }, lowMemory: skipLow ? nil : (url, options))
        fields = [("roof_gflops", .number(roofSamples.max() ?? 0, decimals: 1)),
                  ("roof_samples", .array(roofSamples.map { .number($0, decimals: 1) }))] + fields
        fields += [("blas_threads", .int(BLAS.threads)),
                   ("clock", .string(options.clock.rawValue)),
                   ("load_average", .string(Machine.loadAverage))]
        print(JSON.object(fields).text)
    }
}

/// `sdbench draft-child` (hidden): the bench draft (LoRA, `lcm`, TAESD) in low-memory mode in its
/// own process, from a cold model, so its peak RSS (VmHWM) is its own; prints one JSON line.
struct DraftBenchChild: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "draft-child", shouldDisplay: false)

    @OptionGroup var options: ModelBenchOptions

    func run() throws {
        options.apply()
        guard let path = options.checkpoint else { throw ValidationError("--checkpoint is required") }
        let timing = options.timing
        let begin = timing.now()
        let pipeline = try StableDiffusionPipeline(url: URL(fileURLWithPath: path), options: LoadOptions(memoryMode: .low))
        _ = try DraftBench.prepare(pipeline)
        _ = try pipeline.generate(DraftBench.request) { p in
            say(String(format: "  low draft: step %d/%d, %.1f s; %@", p.step, p.total, p.elapsed, Machine.memory))
        }
        let seconds = timing.now() - begin
        print(JSON.object([("seconds", .number(seconds, decimals: 2)),
                           ("peak_rss_mb", .number(Machine.status("VmHWM"), decimals: 0))]).text)
    }
}
