import Diffusion
import Foundation
import ModelStore

/// A full-size SD1.5 checkpoint with random weights, in the original single-file LDM layout, fp16
/// (about 2 GB), so the benchmark needs no download.
///
/// The tensor list comes from the engine's own models (`ShapeRecorder.checkpointTensors()`) and the
/// names from `KeyMap`'s table run backwards, so there is no second list of SD1.5's shapes. The VAE
/// encoder is there, for the image-to-image measurements.
///
/// Values are deterministic: each tensor draws from its own SplitMix64 stream, seeded from its name.
/// - weights of convolutions and linear layers: uniform with standard deviation `1/√fan_in`, which
///   keeps activations of order one through the residual stacks (and through 20 sampler steps);
/// - biases 0, normalisation weights 1; embeddings with standard deviation 0.02.
///
/// The file is cached (`${XDG_CACHE_HOME:-~/.cache}/sdrepl/bench/`) with a sidecar holding its size
/// and a hash of sampled blocks; a file that does not match (truncated, other generator version) is
/// rebuilt. The writer only renames the finished file into place, so an interrupted run leaves a
/// `.partial` file, never a short one under the final name.
enum SyntheticCheckpoint {
    /// Bumped whenever the values or the tensor list change, so an old cache is rebuilt.
    static let version = 3

    static var defaultURL: URL {
        URL(fileURLWithPath: XDGDirectories().cache).appendingPathComponent("sdrepl/bench/sd15-random-fp16.safetensors")
    }

    /// The cached file at `url`, written first when missing or not matching its sidecar.
    /// - Parameter log: progress lines for the human reader.
    static func ensure(at url: URL, log: (String) -> Void) throws -> URL {
        let check = url.appendingPathExtension("check")
        if let expected = try? String(contentsOf: check, encoding: .utf8),
           expected == (try? fingerprint(of: url)) {
            log("checkpoint: \(url.path) (cached, \(fileSize(url) / 1_000_000) MB, check ok)")
            return url
        }
        if FileManager.default.fileExists(atPath: url.path) {
            log("checkpoint: \(url.path) does not match \(check.lastPathComponent); rebuilding it")
        }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let start = Date()
        try write(to: url)
        try fingerprint(of: url).write(to: check, atomically: true, encoding: .utf8)
        log(String(format: "checkpoint: wrote %@ (%d MB) in %.1f s", url.path, fileSize(url) / 1_000_000,
                   Date().timeIntervalSince(start)))
        return url
    }

    /// The single-file tensors: LDM name, LDM shape, and the `Checkpoint` key it maps to.
    static func tensors() throws -> [(name: String, shape: [Int])] {
        let tensors = try ShapeRecorder.checkpointTensors(vaeEncoder: true)
        guard let names = ShapeRecorder.singleFileNames(for: tensors) else {
            throw BenchError("a tensor has no single-file name (KeyMap and the models disagree)")
        }
        return names.sorted { $0.name < $1.name }
    }

    static func write(to url: URL) throws {
        let list = try tensors()
        let writer = try SafetensorsWriter(
            url: url, tensors: list.map { .init(name: $0.name, dtype: .f16, shape: $0.shape) },
            metadata: ["format": "pt", "sdrepl_bench": "random SD1.5 weights, generator version \(version)"])
        var chunk = [Float](repeating: 0, count: 1 << 20)
        for (name, shape) in list {
            let count = shape.reduce(1, *)
            let (scale, constant) = distribution(name: name, shape: shape)
            var rng = SplitMix64(seed: fnv1a(name) ^ UInt64(version))
            var done = 0
            while done < count {
                let n = min(chunk.count, count - done)
                if let constant {
                    for i in 0..<n { chunk[i] = constant }
                } else {
                    // uniform on [-a, a] has standard deviation a/√3
                    let a = Float(3.0.squareRoot()) * scale
                    for i in 0..<n { chunk[i] = a * rng.nextSigned() }
                }
                try chunk.withUnsafeBufferPointer { try writer.append(UnsafeBufferPointer(rebasing: $0[0..<n])) }
                done += n
            }
        }
        try writer.finish()
    }

    /// The standard deviation of a random tensor, or the constant it is filled with.
    /// Every 1-D weight of SD1.x is a normalisation's scale; LDM names do not say "norm"
    /// (`in_layers.0`, `out.0`), so the rank decides.
    static func distribution(name: String, shape: [Int]) -> (scale: Float, constant: Float?) {
        if name.hasSuffix(".bias") { return (0, 0) }
        if shape.count == 1 { return (0, 1) }
        if name.hasSuffix("token_embedding.weight") || name.hasSuffix("position_embedding.weight") { return (0.02, nil) }
        let fanIn = shape.dropFirst().reduce(1, *)
        return (1 / Float(max(fanIn, 1)).squareRoot(), nil)
    }

    /// `size:<bytes> version:<n> hash:<FNV-1a of the first MiB, a 64 KiB block every 64 MiB and the
    /// last 64 KiB>`: cheap to compute on 2 GB and catches truncation and a different generator.
    static func fingerprint(of url: URL) throws -> String {
        let size = fileSize(url)
        guard size > 0, let handle = FileHandle(forReadingAtPath: url.path) else { throw BenchError("cannot read \(url.path)") }
        defer { try? handle.close() }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func absorb(_ offset: Int, _ length: Int) throws {
            try handle.seek(toOffset: UInt64(offset))
            for byte in try handle.read(upToCount: length) ?? Data() { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        try absorb(0, 1 << 20)
        var offset = 64 << 20
        while offset < size { try absorb(offset, 64 << 10); offset += 64 << 20 }
        try absorb(max(0, size - (64 << 10)), 64 << 10)
        return "size:\(size) version:\(version) hash:\(String(hash, radix: 16))"
    }

    static func fileSize(_ url: URL) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    static func fnv1a(_ s: String) -> UInt64 {
        s.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and the same on every platform.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    /// Uniform on [-1, 1): the top 24 bits as a fraction.
    mutating func nextSigned() -> Float { Float(next() >> 40) * (2 / Float(1 << 24)) - 1 }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
