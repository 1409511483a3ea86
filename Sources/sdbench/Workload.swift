import ArgumentParser
import Diffusion
import Foundation

/// The inputs every measurement uses.
enum Workload {
    static let prompt = "a photograph of an astronaut riding a horse"

    /// A whole `dpmpp-2m` generation at 512×512 with guidance 7.5, timed, with a progress line per
    /// step; `varied` is false for a flat image (NaNs clamped away would give one).
    /// - Parameter deepCache: DeepCache's interval, or nil for the whole UNet at every step.
    static func generate(_ pipeline: StableDiffusionPipeline, steps: Int, timing: Timing, label: String,
                         deepCache: Int? = nil) throws -> (seconds: Double, varied: Bool) {
        let request = GenerationRequest(prompt: prompt, negativePrompt: "", seed: 1, steps: steps,
                                        guidanceScale: 7.5, width: 512, height: 512, sampler: .dpmpp2m, deepCache: deepCache)
        let begin = timing.now()
        let results = try pipeline.generate(request) { p in
            say(String(format: "  %@: generation step %d/%d, %.1f s", label, p.step, p.total, p.elapsed))
        }
        let seconds = timing.now() - begin
        let pixels = results.first?.image.rgb ?? []
        let varied = Set(pixels.prefix(1 << 16)).count > 8
        say(String(format: "  %@: %d-step dpmpp-2m generation%@ %.1f s, pixels ", label, steps,
                   deepCache.map { ", DeepCache interval \($0)," } ?? "", seconds) + (varied ? "vary" : "FLAT"))
        return (seconds, varied)
    }

    /// `[2, 77, 768]`: negative (empty) and positive prompt, as the pipeline batches them.
    static func context(_ pipeline: StableDiffusionPipeline) throws -> Tensor {
        let (cond, uncond) = try pipeline.encodeText(prompt: prompt, negativePrompt: "", clipSkip: 1, guidance: true)
        return Tensor.concatBatch([uncond ?? cond, cond])
    }

    /// Seeded noise latents `[batch, 4, 64, 64]` (512×512).
    static func latents(batch: Int) -> Tensor {
        var generator = TorchGenerator(seed: 0)
        return generator.randn([batch, 4, 64, 64])
    }
}

enum Machine {
    /// A field of `/proc/self/status` in MB (`VmHWM`: peak resident set; `VmRSS`: now).
    static func status(_ field: String) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return .nan }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Double(parts[1]) { return kb / 1024 }
        }
        return .nan
    }

    /// RSS now (anonymous + file-backed) and the peak, for the progress lines.
    static var memory: String {
        String(format: "RSS %.0f MB (anon %.0f, file %.0f), peak %.0f MB", status("VmRSS"), status("RssAnon"), status("RssFile"), status("VmHWM"))
    }

    static var cpuModel: String {
        let text = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line.flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
    }

    /// Drops the file's pages from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`; pages
    /// mapped by a live process stay), so the next read of it comes from the disk: a cold start.
    /// Returns false when the file cannot be opened or the kernel refuses.
    static func evictFromPageCache(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED)) == 0
    }

    static var loadAverage: String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "").split(separator: " ").prefix(3).joined(separator: " ")
    }
}

/// Progress for the human reader, on stderr in the child (its stdout is the JSON line) and on
/// stdout in the parent, before its JSON line.
func say(_ line: String) {
    if isChildProcess {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    } else {
        print(line)
        fflush(stdout)
    }
}

let isChildProcess = CommandLine.arguments.dropFirst().first?.hasSuffix("-child") ?? false

/// One sample of the sgemm roof: the best sgemm on large SD-like shapes, as `sdbench ops` measures
/// it. On a shared machine the load changes during a run, so the benchmarks sample it before each
/// measurement and take the best sample: their ratios err low, never above 1 by luck.
func sampleSGEMMRoof(clock: Timing.Clock) -> Double {
    let sample = GEMMShape.sd15.filter { $0.what == "unet conv3x3 320ch 64x64" || $0.what == "vae conv3x3 512ch 64x64" }
        .map { GEMMBench.measure($0, timing: Timing(repeats: 5, minSeconds: 0.5, clock: clock)) }.max() ?? 0
    say(String(format: "roof sample: cblas_sgemm %.1f GFLOP/s", sample))
    return sample
}
