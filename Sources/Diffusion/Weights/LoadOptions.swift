import Foundation

/// How model weights are held in memory once a checkpoint is open.
public enum MemoryMode: String, Sendable, CaseIterable, Codable {
    /// Pick `low` or `fast` from the RAM available when the model loads.
    case auto
    /// Weights stay in the mmap'd file and are converted to Float32 layer by layer, on each use.
    case low
    /// The UNet's weights are converted once, on first use, and kept: as Float32, or, for an fp16
    /// or bf16 file's large weights, as two-byte copies widened on each use (`Parameter`). The text
    /// encoder and the VAE, run once a generation, convert theirs on each use as in `low`.
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
    /// Memory kept free beside the weights fast mode keeps: activations at 512×512 (the VAE
    /// decoder's 128-channel 512×512 maps and the UNet's chunked attention), the text encoder's and
    /// the VAE's weights while they are converted for one use, layers a LoRA was merged into (kept as
    /// Float32), and the rest of the system.
    public static let fastModeHeadroomBytes = 3 << 30

    /// The concrete mode for a model whose kept weights take `fastModeBytes` in fast mode.
    ///
    /// `.auto` picks `.fast` when the available memory exceeds `fastModeBytes` plus
    /// `fastModeHeadroomBytes`, else `.low`; `.low` and `.fast` are returned unchanged.
    /// - Parameters:
    ///   - fastModeBytes: what fast mode keeps (`Checkpoint.fastModeByteCount`: SD1.5's UNet is
    ///     1.6 GiB from an fp16 file, 3.2 GiB from an fp32 one).
    ///   - availableBytes: free memory; nil reads it (`usableMemoryBytes`: `MemAvailable`, or less
    ///     in a container with a memory limit), and when that is unreadable `.auto` chooses `.low`,
    ///     which works everywhere.
    public func resolve(fastModeBytes: Int, availableBytes: Int? = nil) -> MemoryMode {
        guard self == .auto else { return self }
        guard let available = availableBytes ?? Self.usableMemoryBytes() else { return .low }
        return available >= fastModeBytes + Self.fastModeHeadroomBytes ? .fast : .low
    }

    /// The memory this process can use: `MemAvailable`, or the room left under its cgroup's memory
    /// limit when that is smaller (a container's `--memory`, a systemd `MemoryMax`; `/proc/meminfo`
    /// shows the whole host's). Nil when neither can be read; an unreadable cgroup is ignored.
    /// - Parameter root: where `/proc` and `/sys` are read (a fake tree in tests).
    public static func usableMemoryBytes(root: URL = URL(fileURLWithPath: "/")) -> Int? {
        let meminfo = try? String(contentsOf: root.appendingPathComponent("proc/meminfo"), encoding: .utf8)
        let host = meminfo.flatMap { availableMemoryBytes(meminfo: $0) }
        let container = (try? CgroupMemory(root: root).availableBytes()) ?? nil
        switch (host, container) {
        case let (host?, container?): return min(host, container)
        case let (host, container): return host ?? container
        }
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

/// The room left under the memory limit of this process's cgroups, as a container sees it.
///
/// Read from `/proc/self/cgroup` (which groups the process is in) and `/proc/self/mountinfo`
/// (where their hierarchies are mounted, and which part of the path a mount hides; without it
/// `/sys/fs/cgroup` and `/sys/fs/cgroup/memory`). cgroup v2 gives `memory.max` ("max": none),
/// `memory.current` and `memory.stat`; v1's memory controller `memory.limit_in_bytes` (a number
/// near 2^63: none), `memory.usage_in_bytes` and `memory.stat`. Every level from the process's
/// group up to the mount counts, as a parent's limit holds for its children; the room at a level
/// is its limit less its usage, less the inactive page cache the kernel drops before it fails an
/// allocation (what `docker stats` and the kubelet call the working set).
public struct CgroupMemory: Sendable {
    /// The file-system root the files are read under: "/" on a real system.
    public var root: URL

    public init(root: URL = URL(fileURLWithPath: "/")) {
        self.root = root
    }

    /// The smallest room left under any limit, or nil when no level has one (or there are no
    /// cgroups: no `/proc/self/cgroup`).
    /// - Throws: `CgroupError.malformed` naming a file whose text is not what the kernel writes.
    public func availableBytes() throws -> Int? {
        let membership = root.appendingPathComponent("proc/self/cgroup")
        guard let text = try? String(contentsOf: membership, encoding: .utf8) else { return nil }
        let mounts = (try? String(contentsOf: root.appendingPathComponent("proc/self/mountinfo"), encoding: .utf8))
            .map(Self.mounts) ?? []
        var rooms: [Int] = []
        for line in text.split(separator: "\n") where !line.isEmpty {
            // hierarchy-ID:controller-list:cgroup-path (the path may hold ':').
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, Int(fields[0]) != nil else {
                throw CgroupError.malformed(path: membership.path, text: String(line), expected: "ID:CONTROLLERS:PATH")
            }
            let path = String(fields[2])
            let version: Version
            if fields[0] == "0" && fields[1].isEmpty {
                version = .v2
            } else if fields[1].split(separator: ",").contains("memory") {
                version = .v1
            } else {
                continue
            }
            let mount = mounts.first { $0.version == version } ?? Mount(version: version, root: "/",
                point: version == .v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory")
            if let room = try room(in: mount, path: path) { rooms.append(room) }
        }
        return rooms.min()
    }

    private enum Version { case v1, v2 }

    /// A cgroup hierarchy's mount: its version, the cgroup path at the mount's root, and where.
    private struct Mount {
        var version: Version
        var root: String
        var point: String
    }

    /// The cgroup2 mount and the v1 mount with the memory controller, from mountinfo's lines
    /// (`ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS] - TYPE SOURCE SUPER-OPTIONS`).
    private static func mounts(_ mountinfo: String) -> [Mount] {
        mountinfo.split(separator: "\n").compactMap { line in
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { return nil }
            let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { return nil }
            let (root, point) = (unescape(left[3]), unescape(left[4]))
            if right[0] == "cgroup2" { return Mount(version: .v2, root: root, point: point) }
            if right[0] == "cgroup", right[2].split(separator: ",").contains("memory") {
                return Mount(version: .v1, root: root, point: point)
            }
            return nil
        }
    }

    /// mountinfo writes a space in a path as `\040` (and tab, newline, backslash likewise).
    private static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var index = field.utf8.startIndex
        let utf8 = field.utf8
        while index < utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "\\"), let end = utf8.index(index, offsetBy: 4, limitedBy: utf8.endIndex),
               let value = UInt8(String(decoding: utf8[utf8.index(after: index)..<end], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index = end
            } else {
                bytes.append(byte)
                index = utf8.index(after: index)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The smallest room left at any level from the group at `path` up to the mount.
    private func room(in mount: Mount, path: String) throws -> Int? {
        // The mount shows the hierarchy from `mount.root` down: a path outside it cannot be read.
        var relative = path
        if mount.root != "/" {
            guard relative == mount.root || relative.hasPrefix(mount.root + "/") else { return nil }
            relative = String(relative.dropFirst(mount.root.count))
        }
        let base = root.appendingPathComponent(String(mount.point.drop { $0 == "/" }))
        var components = relative.split(separator: "/").map(String.init)
        var smallest: Int?
        while true {
            let folder = components.reduce(base) { $0.appendingPathComponent($1) }
            if let room = try room(at: folder, version: mount.version) { smallest = min(smallest ?? room, room) }
            if components.isEmpty { break }
            components.removeLast()
        }
        return smallest
    }

    /// The room under the limit set at `folder`, or nil when it sets none.
    private func room(at folder: URL, version: Version) throws -> Int? {
        let (limitFile, usageFile, inactiveKey) = version == .v2
            ? ("memory.max", "memory.current", "inactive_file") : ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        guard let limitText = read(folder.appendingPathComponent(limitFile)) else { return nil }
        if version == .v2 && limitText == "max" { return nil }
        guard let limit = Int(limitText), limit >= 0 else {
            throw CgroupError.malformed(path: folder.appendingPathComponent(limitFile).path, text: limitText,
                                        expected: version == .v2 ? "a number of bytes or 'max'" : "a number of bytes")
        }
        // v1 writes "no limit" as the largest page-aligned count, about 2^63.
        if limit >= 1 << 62 { return nil }
        var used = 0
        if let usageText = read(folder.appendingPathComponent(usageFile)) {
            guard let usage = Int(usageText) else {
                throw CgroupError.malformed(path: folder.appendingPathComponent(usageFile).path, text: usageText, expected: "a number of bytes")
            }
            used = usage
        }
        if let stat = read(folder.appendingPathComponent("memory.stat")) {
            for line in stat.split(separator: "\n") {
                let pair = line.split(separator: " ")
                if pair.count == 2, pair[0] == inactiveKey, let inactive = Int(pair[1]) { used -= min(inactive, used) }
            }
        }
        return max(0, limit - used)
    }

    private func read(_ url: URL) -> String? {
        (try? String(contentsOf: url, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A cgroup file whose text is not what the kernel writes.
public enum CgroupError: Error, Equatable, CustomStringConvertible {
    case malformed(path: String, text: String, expected: String)

    public var description: String {
        switch self {
        case .malformed(let path, let text, let expected): return "\(path): cannot read '\(text)' (expected \(expected))"
        }
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
