import ArgumentParser
import Diffusion
import Foundation

/// One engine operation at an SD1.5 shape, with its dense FLOP count (multiply-add = 2).
struct OpCase {
    var what: String
    var flops: Double
    /// Builds the inputs once and returns the timed call, or nil when the case cannot run here.
    var prepare: () -> (() -> Void)?

    static func conv(_ what: String, n: Int, cin: Int, cout: Int, size: Int, k: Int = 3, stride: Int = 1) -> OpCase {
        let out = (size + 2 * (k / 2) - k) / stride + 1
        return OpCase(what: what, flops: 2 * Double(n * cout * cin * k * k) * Double(out * out)) {
            let x = Tensor(shape: [n, cin, size, size], repeating: 0.5)
            let w = Tensor(shape: [cout, cin, k, k], repeating: 0.01), b = Tensor(shape: [cout], repeating: 0.1)
            if let forced = OpCase.convStrategy, forced != .direct || k == 1, forced != .shifted || stride == 1,
               forced != .winograd || (k == 3 && stride == 1) {
                return { _ = x.conv2d(weight: w, bias: b, stride: stride, padding: k / 2, strategy: forced) }
            }
            return { _ = x.conv2d(weight: w, bias: b, stride: stride, padding: k / 2) }
        }
    }

    /// Set by `sdbench ops --conv`: force one convolution strategy where it applies.
    nonisolated(unsafe) static var convStrategy: Tensor.ConvStrategy?

    static func attention(_ what: String, batch: Int, queries: Int, keys: Int, heads: Int, dim: Int) -> OpCase {
        OpCase(what: what, flops: 4 * Double(batch * heads) * Double(queries * keys * dim)) {
            // Varied values, as in a model: constant ones would never move a row's running max,
            // and the online softmax would skip all its rescaling.
            let scale = Float(ProcessInfo.processInfo.environment["SDBENCH_ATTN_SCALE"] ?? "1") ?? 1
            func varied(_ n: Int, _ seed: UInt64) -> Tensor {
                var state = seed
                return Tensor(shape: [batch, n, heads * dim], data: (0..<(batch * n * heads * dim)).map { _ in
                    state = state &* 6364136223846793005 &+ 1442695040888963407
                    return (Float(state >> 40) / Float(1 << 24) - 0.5) * 2 * scale
                })
            }
            let q = varied(queries, 1), k = varied(keys, 2), v = varied(keys, 3)
            return { _ = Tensor.attention(q: q, k: k, v: v, heads: heads) }
        }
    }

    static func linear(_ what: String, rows: Int, inFeatures: Int, outFeatures: Int) -> OpCase {
        OpCase(what: what, flops: 2 * Double(rows * inFeatures * outFeatures)) {
            let x = Tensor(shape: [rows, inFeatures], repeating: 0.5)
            let w = Tensor(shape: [outFeatures, inFeatures], repeating: 0.01), b = Tensor(shape: [outFeatures], repeating: 0)
            return { _ = x.linear(weight: w, bias: b) }
        }
    }

    /// Memory-bound ops have no FLOP figure worth a ratio; they report time only (flops 0).
    static func timed(_ what: String, _ prepare: @escaping () -> (() -> Void)?) -> OpCase {
        OpCase(what: what, flops: 0, prepare: prepare)
    }

    /// The cases at 512×512: UNet with guidance (batch 2, 64×64 latent), VAE decoder (batch 1).
    static let sd15: [OpCase] = [
        conv("unet conv3x3 320ch 64x64 batch 2", n: 2, cin: 320, cout: 320, size: 64),
        conv("unet conv3x3 640ch 32x32 batch 2", n: 2, cin: 640, cout: 640, size: 32),
        conv("unet conv3x3 1280ch 16x16 batch 2", n: 2, cin: 1280, cout: 1280, size: 16),
        conv("unet conv3x3 1280ch 8x8 batch 2", n: 2, cin: 1280, cout: 1280, size: 8),
        conv("unet downsample conv3x3 s2 320ch 64->32 batch 2", n: 2, cin: 320, cout: 320, size: 64, stride: 2),
        conv("unet conv1x1 320ch 64x64 batch 2", n: 2, cin: 320, cout: 320, size: 64, k: 1),
        conv("vae conv3x3 512ch 128x128", n: 1, cin: 512, cout: 512, size: 128),
        conv("vae conv3x3 256ch 256x256", n: 1, cin: 256, cout: 256, size: 256),
        conv("vae conv3x3 128ch 512x512", n: 1, cin: 128, cout: 128, size: 512),
        conv("unet conv3x3 320ch 64x64 batch 1", n: 1, cin: 320, cout: 320, size: 64),
        conv("unet conv3x3 640ch 32x32 batch 1", n: 1, cin: 640, cout: 640, size: 32),
        conv("unet conv3x3 1280ch 16x16 batch 1", n: 1, cin: 1280, cout: 1280, size: 16),
        conv("unet conv3x3 2560->1280ch 16x16 batch 1", n: 1, cin: 2560, cout: 1280, size: 16),
        conv("unet conv3x3 1280ch 8x8 batch 1", n: 1, cin: 1280, cout: 1280, size: 8),
        conv("taesd conv3x3 64ch 128x128", n: 1, cin: 64, cout: 64, size: 128),
        conv("taesd conv3x3 64ch 256x256", n: 1, cin: 64, cout: 64, size: 256),
        conv("taesd conv3x3 64ch 512x512", n: 1, cin: 64, cout: 64, size: 512),
        attention("unet self-attn 64x64 8 heads dim 40 batch 2", batch: 2, queries: 4096, keys: 4096, heads: 8, dim: 40),
        attention("unet cross-attn 64x64 x 77 8 heads dim 40 batch 2", batch: 2, queries: 4096, keys: 77, heads: 8, dim: 40),
        attention("unet self-attn 32x32 8 heads dim 80 batch 2", batch: 2, queries: 1024, keys: 1024, heads: 8, dim: 80),
        attention("unet self-attn 16x16 8 heads dim 160 batch 2", batch: 2, queries: 256, keys: 256, heads: 8, dim: 160),
        attention("vae mid attn 64x64 1 head dim 512", batch: 1, queries: 4096, keys: 4096, heads: 1, dim: 512),
        attention("clip causal-size attn 77 tokens 12 heads dim 64 batch 2", batch: 2, queries: 77, keys: 77, heads: 12, dim: 64),
        linear("unet ff geglu proj 320->2560 64x64 batch 2", rows: 8192, inFeatures: 320, outFeatures: 2560),
        linear("unet linear q/k/v/out 320->320 64x64 batch 2", rows: 8192, inFeatures: 320, outFeatures: 320),
        linear("unet linear ff out 1280->320 64x64 batch 2", rows: 8192, inFeatures: 1280, outFeatures: 320),
        linear("unet linear q/k/v/out 640->640 32x32 batch 2", rows: 2048, inFeatures: 640, outFeatures: 640),
        linear("unet linear q/k/v/out 1280->1280 16x16 batch 2", rows: 512, inFeatures: 1280, outFeatures: 1280),
        timed("winograd weight transform 1280x1280") {
            let w = Tensor(shape: [1280, 1280, 3, 3], repeating: 0.01)
            return { _ = Tensor.winogradWeights(w) }
        },
        timed("unet groupnorm+silu 320ch 64x64 batch 2") {
            let x = Tensor(shape: [2, 320, 64, 64], repeating: 0.5)
            let w = Tensor(shape: [320], repeating: 1), b = Tensor(shape: [320])
            return { _ = x.groupNorm(groups: 32, weight: w, bias: b, eps: 1e-5, fusedSiLU: true) }
        },
        timed("vae groupnorm+silu 128ch 512x512") {
            let x = Tensor(shape: [1, 128, 512, 512], repeating: 0.5)
            let w = Tensor(shape: [128], repeating: 1), b = Tensor(shape: [128])
            return { _ = x.groupNorm(groups: 32, weight: w, bias: b, eps: 1e-6, fusedSiLU: true) }
        },
        timed("taesd decode 64x64 -> 512x512 (the bench's random weights)") {
            guard let taesd = try? TinyAutoencoderDecoder.load(DraftBench.taesdFile()) else { return nil }
            let latents = Workload.latents(batch: 1)
            return { _ = try? taesd.decode(latents, cancellation: nil) }
        },
        timed("text encoder 77 tokens batch 1 (the synthetic checkpoint, fast mode)") {
            // Only where `sdbench model` has made the checkpoint: `ops` does not write 2 GB on its own.
            let url = SyntheticCheckpoint.defaultURL
            guard FileManager.default.fileExists(atPath: url.path),
                  let pipeline = try? StableDiffusionPipeline(url: url, options: LoadOptions(memoryMode: .fast)) else { return nil }
            return { _ = try? pipeline.encodeText(prompt: Workload.prompt, negativePrompt: "", clipSkip: 1, guidance: false) }
        },
        timed("taesd relu 64ch 512x512") {
            let x = Tensor(shape: [1, 64, 512, 512], repeating: 0.5)
            return { _ = x.relu() }
        },
        timed("taesd upsample nearest 2x 64ch 256->512") {
            let x = Tensor(shape: [1, 64, 256, 256], repeating: 0.5)
            return { _ = x.upsampleNearest2x() }
        },
        timed("unet layernorm 8192x320") {
            let x = Tensor(shape: [2, 4096, 320], repeating: 0.5)
            let w = Tensor(shape: [320], repeating: 1), b = Tensor(shape: [320])
            return { _ = x.layerNorm(weight: w, bias: b, eps: 1e-5) }
        },
        timed("unet geglu 8192x2560") {
            let x = Tensor(shape: [2, 4096, 2560], repeating: 0.5)
            return { _ = x.geglu() }
        },
        timed("unet nchwToTokens 320ch 64x64 batch 2") {
            let x = Tensor(shape: [2, 320, 64, 64], repeating: 0.5)
            return { _ = x.nchwToTokens() }
        },
    ]
}

/// `sdbench ops`: the engine's own operations at SD1.5's shapes, each as GFLOP/s and as a ratio
/// of the sgemm roof measured in the same run.
struct OpsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "Tensor ops (conv, attention, norms) at SD1.5's 512x512 shapes, vs the sgemm roof.")

    @OptionGroup var options: TimingOptions

    @Option(help: "Only cases whose description contains this text.")
    var filter: String?

    @Option(help: "Force a convolution strategy where it applies: direct, shifted, im2col or winograd (default: by shape).")
    var conv: String?

    @Option(help: ArgumentHelp("The engine's numerics: 2 (current), 1 (Winograd's products on OpenBLAS, for replays of older transcripts), or both, each case timed with one and then the other, twice.", valueName: "2|1|both"))
    var engineNumerics: String = "2"

    /// The numerics each case runs with, in turn; nil for a value that names none.
    private var numericsRounds: [EngineNumerics]? {
        engineNumerics == "both" ? [.v1, .v2, .v1, .v2] : EngineNumerics(argument: engineNumerics).map { [$0] }
    }

    func validate() throws {
        if numericsRounds == nil {
            throw ValidationError("--engine-numerics must be \(EngineNumerics.allCases.map { String($0.rawValue) }.joined(separator: ", ")) or both")
        }
        if let conv, Tensor.ConvStrategy(rawValue: conv) == nil {
            throw ValidationError("--conv must be one of \(Tensor.ConvStrategy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() {
        options.apply()
        OpCase.convStrategy = conv.flatMap(Tensor.ConvStrategy.init(rawValue:))
        let roof = GEMMShape.sd15.filter { $0.what == "unet conv3x3 320ch 64x64" || $0.what == "vae conv3x3 512ch 64x64" }
            .map { GEMMBench.measure($0, timing: options.timing) }.max() ?? 0
        var results = [JSON]()
        for op in OpCase.sd15 where filter.map({ op.what.contains($0) }) ?? true {
            guard let call = op.prepare() else {
                say("\(op.what): skipped (its weights are not here; `sdbench model` makes them)")
                continue
            }
            var best: [EngineNumerics: Double] = [:]
            for numerics in numericsRounds ?? [.current] {
                Tensor.numerics = numerics
                best[numerics] = min(best[numerics] ?? .infinity, options.timing.best(call))
            }
            Tensor.numerics = .current
            for numerics in EngineNumerics.allCases {
                guard let seconds = best[numerics] else { continue }
                let what = best.count > 1 ? op.what + " [numerics \(numerics.rawValue)]" : op.what
                var fields: [(String, JSON)] = [("what", .string(what)), ("seconds", .number(seconds, decimals: 4))]
                if op.flops > 0 {
                    let gflops = op.flops / seconds / 1e9
                    fields += [("gflops", .number(gflops, decimals: 1)), ("roof_ratio", .number(gflops / roof, decimals: 3))]
                }
                results.append(.object(fields))
            }
        }
        print(JSON.object([
            ("roof_gflops", .number(roof, decimals: 1)),
            ("stat", .string("best of >= \(options.repeats) runs after 1 warm-up, \(options.clock.rawValue) clock")),
            ("blas_threads", .int(BLAS.threads)),
            ("conv_strategy", .string(conv ?? "by shape")),
            ("ops", .array(results)),
        ]).text)
    }
}
