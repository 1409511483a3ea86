import Foundation

/// How model weights are held in memory once a checkpoint is open.
public enum MemoryMode: String, Sendable, CaseIterable, Codable {
    /// Pick `low` or `fast` from the RAM available when the model loads.
    case auto
    /// Weights stay in the mmap'd file and are converted to Float32 layer by layer, on each use.
    case low
    /// Every weight is converted to Float32 once, on first use, and kept.
    case fast
}

/// How a checkpoint is loaded: kept apart from the model's config and from a generation's request.
public struct LoadOptions: Sendable, Equatable {
    /// `.auto` resolves to `.fast` or `.low` when the checkpoint opens (see `MemoryMode.resolve`).
    public var memoryMode: MemoryMode
    /// Threads for the math (nil: one per core). Stored for the engine; loading itself does not use it.
    public var threads: Int?
    /// The diffusers weight variant to prefer, e.g. `"fp16"` for `*.fp16.safetensors`. With nil the
    /// plain files are preferred (they are what diffusers loads by default, so outputs match it), and
    /// a variant is used only for a component that has no plain file.
    public var variant: String?

    public init(memoryMode: MemoryMode = .auto, threads: Int? = nil, variant: String? = nil) {
        self.memoryMode = memoryMode
        self.threads = threads
        self.variant = variant
    }
}

extension MemoryMode {
    /// Memory kept free beside fast mode's Float32 weights: activations at 512×512 (the VAE decoder's
    /// 128-channel 512×512 maps and the UNet's chunked attention) and the rest of the system.
    public static let fastModeHeadroomBytes = 3 << 30

    /// The concrete mode for a model whose weights take `float32Bytes` as Float32.
    ///
    /// `.auto` picks `.fast` when the available memory exceeds `float32Bytes` plus
    /// `fastModeHeadroomBytes`, else `.low`; `.low` and `.fast` are returned unchanged.
    /// - Parameters:
    ///   - float32Bytes: the weights' size once converted (4 bytes per element).
    ///   - availableBytes: free memory; nil reads `MemAvailable` from `/proc/meminfo`, and when that
    ///     is unreadable `.auto` chooses `.low`, which works everywhere.
    public func resolve(float32Bytes: Int, availableBytes: Int? = nil) -> MemoryMode {
        guard self == .auto else { return self }
        guard let available = availableBytes ?? Self.availableMemoryBytes() else { return .low }
        return available >= float32Bytes + Self.fastModeHeadroomBytes ? .fast : .low
    }

    /// `MemAvailable` from `/proc/meminfo` (the kernel's estimate of memory usable without swapping,
    /// page cache included), or nil where there is no such file.
    public static func availableMemoryBytes(meminfo: String? = nil) -> Int? {
        guard let text = meminfo ?? (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            guard fields.count >= 2, let kib = Int(fields[1]) else { return nil }
            let unit = fields.count >= 3 ? fields[2].lowercased() : "kb"
            return unit == "kb" ? kib * 1024 : kib
        }
        return nil
    }
}

extension MemoryMode {
    /// Hands memory that was freed but kept by the C allocator back to the system (glibc's
    /// `malloc_trim(0)`, looked up at run time; a no-op where there is none).
    ///
    /// After a UNet step the heap holds a few hundred MB of freed activations and converted
    /// weights that glibc keeps for reuse (its mmap threshold adapts upwards to the sizes freed, so
    /// blocks of up to 32 MB come from the heap, which it trims only from the top). The VAE decode
    /// that follows needs its own, larger blocks, so without this the two add up in the peak RSS.
    /// Cheap: it walks the free lists and `madvise`s whole free pages.
    public static func returnFreedMemory() {
        guard let trim = mallocTrim else { return }
        _ = trim(0)
    }

    /// Lets the C allocator keep freed blocks of any size for reuse (glibc's `mallopt`
    /// `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` at 2 GB; looked up at run time, a no-op where
    /// there is none). Done once per process, when the first pipeline opens.
    ///
    /// By default glibc serves blocks over 32 MB with a fresh `mmap` and unmaps them on `free`, so
    /// every large activation and scratch buffer (a UNet step allocates gigabytes of them) comes
    /// back as new pages that the kernel must fault in and zero: up to 80 % of a Winograd weight
    /// transform's time, and a fifth of the process's CPU time in `make bench` (sys time). Kept on
    /// the heap, the blocks are reused at once; `returnFreedMemory` still hands them back when
    /// low-memory mode asks.
    public static func keepFreedBlocksForReuse() { _ = allocatorConfigured }

    nonisolated(unsafe) private static let allocatorConfigured: Bool = {
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(nil, "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let mmapThreshold: Int32 = -3, trimThreshold: Int32 = -1  // glibc's M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
        return mallopt(mmapThreshold, Int32.max) == 1 && mallopt(trimThreshold, Int32.max) == 1
    }()

    private typealias Trim = @convention(c) (Int) -> Int32
    nonisolated(unsafe) private static let mallocTrim: Trim? = dlsym(nil, "malloc_trim").map { unsafeBitCast($0, to: Trim.self) }
}
