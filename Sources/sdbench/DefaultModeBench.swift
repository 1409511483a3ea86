import ArgumentParser
import Diffusion
import Foundation

/// `sdbench default-child` (hidden): a whole generation in the default memory mode (`.fast`: kept
/// weights, two-byte copies of an fp16 file's large ones) in its own process, so its peak RSS is the
/// default mode's own, as `model-child` measures low-memory mode's. Prints one JSON line.
struct DefaultModeBenchChild: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "default-child", shouldDisplay: false)

    @OptionGroup var options: ModelBenchOptions

    // The peak is reached in the first step and the decode; more steps only add time.
    @Option(help: "Steps of the generation.")
    var steps = 3

    func run() throws {
        options.apply()
        guard let path = options.checkpoint else { throw ValidationError("--checkpoint is required") }
        let pipeline = try StableDiffusionPipeline(url: URL(fileURLWithPath: path), options: LoadOptions(memoryMode: .fast))
        let generation = try Workload.generate(pipeline, steps: steps, timing: options.timing, label: "default")
        say("  default: " + Machine.memory)
        print(JSON.object([("generation_seconds", .number(generation.seconds, decimals: 2)),
                           ("generation_finite", .string(generation.varied ? "yes" : "no")),
                           ("peak_rss_mb", .number(Machine.status("VmHWM"), decimals: 0))]).text)
    }

    /// Runs the child on `url` and returns `sdbench model`'s field for it.
    static func runChild(url: URL, options: ModelBenchOptions) throws -> [(String, JSON)] {
        var arguments = ["default-child", "--checkpoint", url.path, "--clock", options.clock.rawValue]
        arguments += options.childArguments
        say("default memory mode, a whole generation in a child process (\(arguments.joined(separator: " ")))")
        let child = try runBenchChild(arguments, what: "the default-mode child")
        return [("default_peak_rss_mb", .number(child["peak_rss_mb"] as? Double ?? .nan, decimals: 0))]
    }
}
