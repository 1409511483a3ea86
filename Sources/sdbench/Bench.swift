import ArgumentParser
import HostCheck
import Diffusion

/// sdrepl's benchmark. Each subcommand measures one thing and ends with one JSON line, so a
/// script can take the last line of any of them. `sdbench` alone runs `gemm`; `make bench` runs
/// `model` (`BENCH=gemm`, `BENCH=ops` or `BENCH=images` another).
@main
struct Bench: ParsableCommand {
    /// Checks the CPU and sets the engine's environment (see `HostCheck`, `EngineEnvironment`) before
    /// ArgumentParser runs any command.
    static func main() {
        HostCheck.exitIfUnsupported(program: "sdbench")
        EngineEnvironment.restartWithEngineSettingsIfNeeded()
        // As a pipeline does when it opens, so `sdbench gemm` and `ops` measure the ops as the
        // engine runs them.
        MemoryMode.keepFreedBlocksForReuse()
        main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "sdbench",
        abstract: "sdrepl's benchmark: prints one JSON line of measurements.",
        subcommands: [GEMMBench.self, OpsBench.self, ModelBench.self, ModelBenchChild.self, ImageBench.self, ImageBenchChild.self,
                      UpscaleBench.self, DeepCacheBench.self, DefaultModeBenchChild.self, DraftBenchCommand.self,
                      DraftBenchChild.self],
        defaultSubcommand: GEMMBench.self
    )
}

/// Options shared by every measurement.
struct TimingOptions: ParsableArguments {
    @Option(help: "Timed repetitions per case (after one warm-up run).")
    var repeats: Int = 5

    @Option(help: "Keep repeating a case until it has run this many seconds in total.")
    var minSeconds: Double = 0.5

    @Option(help: "OpenBLAS threads (default: OpenBLAS's own choice, the core count or OPENBLAS_NUM_THREADS).")
    var threads: Int?

    @Option(help: "wall: elapsed time; cpu: the process's CPU time (for a loaded machine; use with --threads 1).")
    var clock: Timing.Clock = .wall

    func apply() {
        if let threads { BLAS.threads = threads }
    }

    var timing: Timing { Timing(repeats: repeats, minSeconds: minSeconds, clock: clock) }
}
