import Diffusion
import Foundation
import NN

/// The draft figures of `sdbench model`: a batch-1 UNet step (guidance ≤ 1), a TAESD decode at
/// 512×512, and a whole draft (4 `lcm` steps, guidance 1, a rank-64 LoRA on the LCM script's target
/// modules fused, TAESD decode), each against its dense-FLOP floor at the roof.
enum DraftBench {
    /// TAESD's decoder at 512×512 (64 channels, 3-3-3-1 blocks): counted from its convolutions.
    static let taesdDecodeFLOPs = 141.0e9
    static let lcmTargets = [".to_q", ".to_k", ".to_v", ".to_out.0", ".proj_in", ".proj_out", ".ff.net.0.proj", ".ff.net.2",
                             ".conv1", ".conv2", ".conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", ".time_emb_proj"]

    /// The draft's dense FLOPs: four batch-1 UNet steps, TAESD's decode, the prompt alone through the
    /// text encoder.
    static let draftFLOPs = 4 * ReferenceFLOPs.unetStep / 2 + taesdDecodeFLOPs + ReferenceFLOPs.textEncoder / 2

    /// The draft's request: 4 `lcm` steps at guidance 1 with the bench LoRA's tag.
    static let request = GenerationRequest(prompt: Workload.prompt + " <lora:bench-lcm-r64:1>", seed: 1, steps: 4, guidanceScale: 1,
                                           width: 512, height: 512, sampler: .lcm)

    /// The folder of the bench LoRA and TAESD's file, both written beside the synthetic checkpoint on
    /// first use.
    static func files() throws -> (loraFolder: URL, taesd: URL) {
        let folder = SyntheticCheckpoint.defaultURL.deletingLastPathComponent()
        let lora = folder.appendingPathComponent("bench-lcm-r64.safetensors")
        if !FileManager.default.fileExists(atPath: lora.path) { try writeLoRA(to: lora) }
        return (folder, try taesdFile())
    }

    /// TAESD's file (2.4 MB), written beside the synthetic checkpoint on first use.
    static func taesdFile() throws -> URL {
        let taesd = SyntheticCheckpoint.defaultURL.deletingLastPathComponent().appendingPathComponent("bench-taesd.safetensors")
        if !FileManager.default.fileExists(atPath: taesd.path) {
            try FileManager.default.createDirectory(at: taesd.deletingLastPathComponent(), withIntermediateDirectories: true)
            try writeTAESD(to: taesd)
        }
        return taesd
    }

    /// Sets `pipeline` up for drafts: the bench LoRA's folder and TAESD as its decoder.
    static func prepare(_ pipeline: StableDiffusionPipeline) throws -> TinyAutoencoderDecoder {
        let (folder, taesdURL) = try files()
        let taesd = try TinyAutoencoderDecoder.load(taesdURL)
        pipeline.loraDirectories = [folder]
        pipeline.decoder = taesd
        return taesd
    }

    /// The draft figures on `pipeline` (fast mode, loaded), with per-op profiles; `roof` samples the
    /// roof again and returns the best sample so far. With `lowMemory` (the checkpoint and the
    /// options for the child), the same draft runs in low-memory mode in a child process too.
    static func fields(_ pipeline: StableDiffusionPipeline, timing: Timing, roof: () -> Double,
                       lowMemory: (url: URL, options: ModelBenchOptions)?) throws -> [(String, JSON)] {
        var fields: [(String, JSON)] = []
        if let (url, options) = lowMemory {
            var arguments = ["draft-child", "--checkpoint", url.path, "--clock", options.clock.rawValue]
            arguments += options.childArguments
            say("low-memory draft, in a child process (\(arguments.joined(separator: " ")))")
            let child = try runBenchChild(arguments, what: "the low-memory draft child")
            fields += [("low_draft_peak_rss_mb", .number(child["peak_rss_mb"] as? Double ?? .nan, decimals: 0)),
                       ("low_draft_seconds", .number(child["seconds"] as? Double ?? .nan, decimals: 2))]
        }
        let saved = pipeline.decoder
        let taesd = try prepare(pipeline)
        defer { pipeline.decoder = saved }

        var cond = Tensor(shape: [0])
        let text = timing.best { cond = (try? pipeline.encodeText(prompt: Workload.prompt, negativePrompt: "", clipSkip: 1, guidance: false).0) ?? cond }
        say(String(format: "text encoder (batch 1, 77 tokens): %.3f s", text))
        let latents = Workload.latents(batch: 1)
        var out = Tensor(shape: [0])
        let (step, stepProfile) = bestProfiled(repeats: timing.repeats, timing) { out = pipeline.unet(latents, timestep: 999, context: cond) }
        say(String(format: "unet step (batch 1, 64x64, no guidance): %.2f s", step))
        let (decode, decodeProfile) = bestProfiled(repeats: max(timing.repeats, 3), timing) {
            out = (try? taesd.decode(latents, cancellation: nil)) ?? out
        }
        say(String(format: "taesd decode (512x512): %.3f s", decode))

        _ = try pipeline.generate(request)  // fuses the LoRA once; the timed run reuses it
        var failure: Error?
        let (draft, draftProfile) = bestProfiled(repeats: 1, timing) {
            do { _ = try pipeline.generate(request) } catch { failure = error }
        }
        if let failure { throw failure }
        let roofGFLOPs = roof()
        let floor = draftFLOPs / (roofGFLOPs * 1e9)
        say(String(format: "draft (4 lcm steps, rank-64 LoRA fused, TAESD): %.2f s, floor %.2f s (%.3f)", draft, floor, draft / floor))
        printProfile("unet step (batch 1)", stepProfile, total: step, roof: roofGFLOPs, reference: ReferenceFLOPs.unetStep / 2)
        printProfile("taesd decode", decodeProfile, total: decode, roof: roofGFLOPs, reference: taesdDecodeFLOPs)
        printProfile("draft", draftProfile, total: draft, roof: roofGFLOPs, reference: draftFLOPs)
        return fields + [("text_encoder_b1_seconds", .number(text, decimals: 3)),
                         ("unet_step_b1_seconds", .number(step, decimals: 3)),
                         ("taesd_decode_seconds", .number(decode, decimals: 3)),
                         ("draft_seconds", .number(draft, decimals: 2)),
                         ("draft_floor_seconds", .number(floor, decimals: 2)),
                         ("draft_roof_gflops", .number(roofGFLOPs, decimals: 1)),  // the best sample so far, which the floor uses
                         ("draft_floor_ratio", .number(draft / floor, decimals: 3)),
                         ("unet_b1_profile", profileJSON(stepProfile, total: step)),
                         ("taesd_profile", profileJSON(decodeProfile, total: decode))]
    }

    /// A kohya-layout LoRA, rank 64 and alpha 64 as latent-consistency/lcm-lora-sdv1-5, with small
    /// random values (fp16) on every UNet weight the LCM script targets.
    static func writeLoRA(to url: URL) throws {
        let targets = try ShapeRecorder.checkpointTensors().filter { key, _ in
            key.hasPrefix("unet.") && lcmTargets.contains { key.hasSuffix($0 + ".weight") }
        }
        var declarations: [SafetensorsWriter.Declaration] = []
        for (key, shape) in targets {
            let name = "lora_unet_" + key.dropFirst("unet.".count).dropLast(".weight".count).replacingOccurrences(of: ".", with: "_")
            declarations += [.init(name: name + ".lora_down.weight", dtype: .f16, shape: [64] + shape.dropFirst()),
                             .init(name: name + ".lora_up.weight", dtype: .f16, shape: [shape[0], 64] + (shape.count == 4 ? [1, 1] : [])),
                             .init(name: name + ".alpha", dtype: .f16, shape: [])]
        }
        try writeRandom(declarations, to: url)
    }

    /// TAESD's decoder in diffusers' layout with random weights: the shapes as the model asks for them.
    static func writeTAESD(to url: URL) throws {
        let recorder = ShapeRecorder()
        _ = try TinyAutoencoderDecoder(weights: Weights(source: recorder, prefix: "decoder.layers.", keepConverted: false))
        try writeRandom(recorder.tensors.map { .init(name: $0.key, dtype: .f16, shape: $0.shape) }, to: url)
    }

    private static func writeRandom(_ declarations: [SafetensorsWriter.Declaration], to url: URL) throws {
        let partial = url.appendingPathExtension("partial")
        let writer = try SafetensorsWriter(url: partial, tensors: declarations)
        for declaration in declarations {
            var rng = SplitMix64(seed: SyntheticCheckpoint.fnv1a(declaration.name))
            let count = declaration.shape.reduce(1, *)
            // alpha = rank; the factors small enough that the fused weights stay near the checkpoint's
            try writer.append(declaration.name.hasSuffix(".alpha") ? [64] : (0..<count).map { _ in 0.01 * rng.nextSigned() })
        }
        try writer.finish()
        try FileManager.default.moveItem(at: partial, to: url)
    }
}
