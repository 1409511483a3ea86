import Diffusion
import Foundation

extension VAETiling {
    /// The VAE's tile side in pixels (SD1.5's `sample_size`): diffusers tiles only larger pictures.
    static let tileSide = 512

    /// The peak a whole decode of a `width`×`height` picture adds: the decoder's activations, 2.9 GB
    /// at 1024×1024 (`sdbench images`, the untiled low-memory hires fix), growing with the pixels.
    static func wholeDecodeBytes(width: Int, height: Int) -> Int {
        Int(2.9e9 * Double(width * height) / Double(1024 * 1024))
    }

    /// `on`, `off` or `auto`, with the spellings `set` takes for other switches (yes/no, true/false, 1/0).
    init?(setting text: String) {
        switch text.lowercased() {
        case "auto": self = .auto
        case "on", "yes", "true", "1": self = .on
        case "off", "no", "false", "0": self = .off
        default: return nil
        }
    }
}

extension Session {
    /// Whether a picture of the final size `width`×`height` is encoded and decoded in tiles, settling
    /// `set vae-tiling auto` on the first picture over 512 a side: the session's setting becomes
    /// explicit and the transcript records it before the command, so a replay decodes alike on any
    /// machine. `auto` becomes
    /// - `on` in low-memory mode, where a whole 1024×1024 decode takes 2.9 GB against about 1 GB in
    ///   tiles, and in fast mode when the free memory would not hold a whole decode beside the weights;
    /// - `off` otherwise (diffusers' own pixels), and always in a sharded run (every shard must record
    ///   the same line whatever its machine) and under `run --check` (a transcript without the line
    ///   was made when tiling was off unless asked for).
    /// - Parameter choice: the request's own setting (a grid cell keeps the one it was made with).
    /// - Throws: the model's load error, naming `command`.
    func settleVAETiling(_ choice: VAETiling, width: Int, height: Int, command: String) throws -> Bool {
        guard choice == .auto else { return choice == .on }
        guard max(width, height) > VAETiling.tileSide else { return false }
        if settings.request.vaeTiling == .auto {
            let reason = sharding == nil && !frames.checking ? try tilingReason(width: width, height: height, command: command) : nil
            settings.request.vaeTiling = reason == nil ? .off : .on
            log.line.preamble.append("set vae-tiling \(settings.request.vaeTiling.rawValue)")
            if let reason {
                io.output("note: \(reason): pictures over 512 a side are now encoded and decoded in 512-pixel tiles "
                          + "(about 1 GB for 1024x1024 instead of 2.9 GB; diffusers' enable_vae_tiling, slightly different pixels); "
                          + "'set vae-tiling off' decodes them whole")
            }
        }
        return settings.request.vaeTiling == .on
    }

    /// Why a whole decode would not fit, or nil when it does.
    private func tilingReason(width: Int, height: Int, command: String) throws -> String? {
        let generator = try loadedGenerator(for: command)
        switch generator.memoryMode {
        case .low?:
            return "low-memory mode"
        case .fast?:
            guard let available = MemoryMode.usableMemoryBytes() else { return nil }
            // The weights may not be resident yet (fast mode keeps them from their first use).
            let needed = VAETiling.wholeDecodeBytes(width: width, height: height) + (generator.keptWeightBytes ?? 0) + (1 << 30)
            return available < needed ? "\(available >> 20) MiB free, less than a whole \(width)x\(height) decode needs beside the model" : nil
        default:
            return nil
        }
    }
}
