import ArgumentParser
import Diffusion
import Foundation

/// `sdbench upscale` (`make bench BENCH=upscale`; `sdbench model` runs it in a child process too): a
/// 512×512 → 2048×2048 upscale by the full-size `RealESRGAN_x4plus` topology (23 blocks, 64 features,
/// growth 32) with random weights made here, tiled as the REPL tiles, against its dense floor: the
/// network's FLOPs over the whole image (no tile overlap) at the sgemm roof measured in the same run.
/// Peak RSS is this process's (it holds nothing else). The last line is one JSON object.
struct UpscaleBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upscale",
        abstract: "RealESRGAN_x4plus (random weights) on a 512x512 image, tiled: seconds, floor, peak RSS.",
        // `sdbench model` runs it by this name, which sends its progress to stderr.
        aliases: ["upscale-child"])

    @Option(help: "OpenBLAS threads (default: OpenBLAS's own choice).")
    var threads: Int?

    @Option(help: "Input side in pixels (the output is 4 times it).")
    var side = 512

    @Option(help: "Tile side in input pixels (0: the whole image at once).")
    var tile = TileOptions().tile

    @Option(help: "Context pixels around each tile.")
    var tilePad = TileOptions().tilePad

    @Option(help: "wall: elapsed time; cpu: the process's CPU time (for a loaded machine; use with --threads 1).")
    var clock: Timing.Clock = .wall

    @Flag(help: "Print where the time goes (wall time per op kind) after the run.")
    var profile = false

    func run() throws {
        if let threads { BLAS.threads = threads }
        let timing = Timing(repeats: 1, minSeconds: 0, clock: clock)
        sayMachine(clock: clock)
        let roofBefore = sampleSGEMMRoof(clock: clock)

        let config = RRDBNetConfig()  // RealESRGAN_x4plus
        let upscaler = try Upscaler(source: RandomWeights(config: config), name: "RealESRGAN_x4plus (random)")
        var rng = SplitMix64(seed: 7)
        let image = PixelImage(width: side, height: side, rgb: (0..<(side * side * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next() >> 56) })
        let tiling = TileOptions(tile: tile, tilePad: tilePad)
        let tiles = upscaler.tileCount(width: side, height: side, tiling: tiling)
        say("upscaling \(side)x\(side) -> \(4 * side)x\(4 * side) in \(tiles) tile\(tiles == 1 ? "" : "s") of \(tile) (context \(tilePad)); " + Machine.memory)
        Profiler.isEnabled = profile
        let start = timing.now()
        let result = try upscaler.upscale(image, tiling: tiling) { p in
            guard p.tileFinished else { return }
            say(String(format: "  tile %d/%d, %.1f s; ", p.tile, p.tiles, p.elapsed) + Machine.memory)
        }
        let seconds = timing.now() - start
        Profiler.isEnabled = false
        if profile {
            let wall = Profiler.totals.values.reduce(0) { $0 + $1.seconds }
            for (kind, entry) in Profiler.totals.sorted(by: { $0.value.seconds > $1.value.seconds }) {
                say(String(format: "  %@: %d calls, %.1f s, %.1f GFLOP/s on dense counts", kind.rawValue, entry.calls, entry.seconds,
                           entry.flops / max(entry.seconds, 1e-9) / 1e9))
            }
            // The profile's times are wall times: the rest is only theirs to compare with on the wall clock.
            if clock == .wall {
                say(String(format: "  the rest (concatenations, activations, residual sums, tiling): %.1f s", seconds - wall))
            }
        }
        let roof = max(roofBefore, sampleSGEMMRoof(clock: clock))
        let flops = config.flops(height: side, width: side)
        let tiledFlops = UpscaleBench.tiledFlops(config, side: side, tiling: tiling)
        let floor = flops / (roof * 1e9)
        let varied = Set(result.rgb.prefix(1 << 16)).count > 8
        say(String(format: "upscale x4 %dx%d: %.1f s, floor %.1f s (%.0f GFLOP at the %.1f GFLOP/s roof), ratio %.2f; tiles do %.2fx the whole image's work; peak RSS %.0f MB",
                   side, side, seconds, floor, flops / 1e9, roof, seconds / floor, tiledFlops / flops, Machine.status("VmHWM")))
        print(JSON.object([
            ("upscale_x4_seconds", .number(seconds, decimals: 2)),
            ("upscale_x4_floor_seconds", .number(floor, decimals: 2)),
            ("upscale_x4_ratio", .number(seconds / floor, decimals: 3)),
            ("upscale_x4_gflop", .number(flops / 1e9, decimals: 1)),
            ("upscale_x4_tile_work", .number(tiledFlops / flops, decimals: 3)),
            ("upscale_x4_tiles", .int(tiles)),
            ("upscale_x4_tile", .int(tile)),
            ("upscale_x4_tile_pad", .int(tilePad)),
            ("upscale_x4_peak_rss_mb", .number(Machine.status("VmHWM"), decimals: 0)),
            ("upscale_x4_pixels_vary", .string(varied ? "yes" : "no")),
            ("roof_gflops", .number(roof, decimals: 1)),
            ("blas_threads", .int(BLAS.threads)),
            ("clock", .string(clock.rawValue)),
            ("load_average", .string(Machine.loadAverage)),
        ]).text)
    }

    /// The fields `sdbench model` takes from the child's JSON line, in order.
    static let childFields = ["upscale_x4_seconds", "upscale_x4_floor_seconds", "upscale_x4_ratio", "upscale_x4_tile_work",
                              "upscale_x4_peak_rss_mb"]

    /// Runs `sdbench upscale-child` (this command, its progress on stderr) in a child process, so its
    /// peak RSS is the upscale's own, and returns its figures for `sdbench model`'s JSON line.
    static func runChild(threads: Int?, clock: Timing.Clock) throws -> [(String, JSON)] {
        let arguments = ["upscale-child", "--clock", clock.rawValue] + (threads.map { ["--threads", String($0)] } ?? [])
        say("x4 upscale, in a child process (\(arguments.joined(separator: " ")))")
        let object = try runBenchChild(arguments, what: "the upscale child")
        return childFields.map { key in
            (key, .number((object[key] as? NSNumber)?.doubleValue ?? .nan, decimals: key.hasSuffix("_mb") ? 0 : 3))
        }
    }

    /// The dense FLOPs the tiles run, context included (what tiling costs over one whole pass).
    static func tiledFlops(_ config: RRDBNetConfig, side: Int, tiling: TileOptions) -> Double {
        guard tiling.tile > 0 else { return config.flops(height: side, width: side) }
        let extents = stride(from: 0, to: side, by: tiling.tile).map { start in
            min(start + tiling.tile + tiling.tilePad, side) - max(start - tiling.tilePad, 0)
        }
        return extents.reduce(0.0) { sum, h in sum + extents.reduce(0.0) { $0 + config.flops(height: h, width: $1) } }
    }
}

/// Deterministic uniform weights of variance 1/fan-in (biases small), for every tensor the network
/// asks for: the shapes come from building it over a `ShapeRecorder`, so nothing here lists them.
final class RandomWeights: TensorSource, @unchecked Sendable {
    private let shapes: [String: [Int]]
    let keys: [String]

    init(config: RRDBNetConfig) throws {
        let recorder = ShapeRecorder()
        _ = try RRDBNet(weights: Weights(source: recorder, keepConverted: false), config: config, layout: .realESRGAN)
        keys = recorder.tensors.map(\.key)
        shapes = Dictionary(uniqueKeysWithValues: recorder.tensors.map { ($0.key, $0.shape) })
    }

    var sourceDescription: String { "random RRDBNet weights" }
    func shape(of key: String) -> [Int]? { shapes[key] }

    func read(_ key: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let shape = shapes[key] else { throw BenchError("no tensor \(key)") }
        // Uniform on [-a, a] has variance a²/3: a = √(3 / fan-in) gives 1/fan-in.
        let amplitude = shape.count > 1 ? Float((3.0 / Double(shape.dropFirst().reduce(1, *))).squareRoot()) : 0.01
        var rng = SplitMix64(seed: SyntheticCheckpoint.fnv1a(key))
        for i in buffer.indices { buffer[i] = rng.nextSigned() * amplitude }
    }
}
