import Crypto
import Foundation

/// `run --shard K/N`: the K-th of N deterministic shares of a script's images.
///
/// The unit is one image: every image of every `gen` gets a global number 0, 1, 2 … in script
/// order, and shard K makes the images whose number is K-1 modulo N. Every other command runs in
/// every shard, so each shard's settings are the unsharded run's at each `gen`.
public struct Shard: Equatable, Sendable, CustomStringConvertible {
    /// K, from 1.
    public let index: Int
    /// N.
    public let count: Int

    /// Reads `K/N`.
    /// - Throws: `ScriptError.badArgument` for anything but two whole numbers with 1 ≤ K ≤ N.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]) else {
            throw ScriptError.badArgument(command: "run --shard", argument: text,
                                          reason: "expected K/N, the K-th of N shares (such as 1/3), got")
        }
        guard count >= 1 else {
            throw ScriptError.badArgument(command: "run --shard", argument: text, reason: "N (the number of shares) must be at least 1, got")
        }
        guard (1...count).contains(index) else {
            throw ScriptError.badArgument(command: "run --shard", argument: text,
                                          reason: "K must be from 1 to N (here 1 to \(count)), got")
        }
        self.index = index
        self.count = count
    }

    /// Whether image `number` (0-based, over the whole script) is this shard's.
    func takes(_ number: Int) -> Bool { number % count == index - 1 }

    public var description: String { "\(index)/\(count)" }
}

/// A sharded run's bookkeeping.
final class ShardState {
    let shard: Shard
    /// The global number of the next `gen`'s first image.
    var cursor = 0
    /// The last `gen`'s image count and the positions in it of the images this shard made.
    var lastGen: (count: Int, offsets: [Int])?

    init(shard: Shard) { self.shard = shard }
}

/// The lines that open and close a sharded `gen` in a shard's transcript (`TranscriptMerge` reads them).
enum ShardMarkers {
    static let header = "#% shard"
    static let genStart = "#% shard gen"
    static let genEnd = "#% end shard gen"
}

extension Session {
    /// Makes this session run shard `shard` of `script` (the script's text): random seeds come from
    /// a generator seeded by the script's SHA-256, so every shard draws the same ones, and
    /// `#% shard K/N of PATH` is recorded for `sdrepl merge`.
    public func startShard(_ shard: Shard, script text: String, path: String) {
        sharding = ShardState(shard: shard)
        let digest = Array(SHA256.hash(data: Data(text.utf8)))
        var state = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        // SplitMix64 (Steele, Lea and Flood), its top 32 bits: A1111 draws seeds below 2^32.
        drawSeed = {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return (z ^ (z >> 31)) >> 32
        }
        log.recordLine("\(ShardMarkers.header) \(shard) of \(absolute(path))")
    }

    /// A sharded `gen` of `count` images from seed `base`: makes this shard's images one by one and
    /// records them as `seed S` / `gen 1` pairs between the shard markers, then `seed base` again.
    func generateShare(count: Int, base: UInt64, in state: ShardState) throws {
        let first = state.cursor
        state.cursor += count
        state.lastGen = (count, [])
        history.startBatch()
        // Settled for the whole `gen`, also by a shard that takes none of its images, so that every
        // shard records the same `set precision` line.
        _ = settledPrecision(settings.request.precision, drafting: settings.resources.draft != nil)
        var body: [String] = []
        func close() { log.line.expansion = ["\(ShardMarkers.genStart) \(count)"] + body + ["seed \(base)", ShardMarkers.genEnd] }
        close()
        for offset in 0..<count where state.shard.takes(first + offset) {
            let seed = base &+ UInt64(offset)
            let results = log.line.results.count
            // Counted before rendering: a failed autosave still leaves the image in the batch.
            state.lastGen?.offsets.append(offset)
            try renderGen(try resolvedRequest(seed: seed, count: 1), base: seed)
            body += ["seed \(seed)", "gen 1"] + log.line.results[results...].map(\.description)
            close()
        }
    }

    /// Before a command in a sharded run: refuses what needs images another shard made, and says
    /// true (skip it) for a `save` after a `gen` none of whose images are this shard's.
    func shardSkips(_ command: String, _ argument: String) throws -> Bool {
        guard let state = sharding else { return false }
        let words = argument.lowercased().words
        let reason = "not in a sharded run: each shard has only some of the images; run it on the merged transcript's images"
        switch command {
        case "upscale", "final": throw ScriptError.unavailable(command: command, reason: reason)
        case "grid":
            throw ScriptError.unavailable(command: command, reason: "not in a sharded run: its sheet needs every cell, and each shard "
                                          + "makes only some; run the grid on one machine")
        case "init" where Int(argument) != nil, "set" where words.first == "init" && words.count == 2 && Int(words[1]) != nil:
            throw ScriptError.unavailable(command: "init", reason: reason)
        case "seed" where words == ["last"]: throw ScriptError.unavailable(command: "seed last", reason: reason)
        case "save" where lastBatch.isEmpty && state.lastGen != nil:
            io.output("save: none of the last gen's images is in shard \(state.shard)")
            return true
        default: return false
        }
    }

    /// The number `save PATH` gives image `number` of the last batch (`PATH-3.png`), or nil for a
    /// lone image (`PATH.png`). A shard numbers by the image's place in the whole `gen`, so the
    /// shards of a sweep never write the same name.
    func fileNumber(ofBatchImage number: Int) -> Int? {
        if let gen = sharding?.lastGen, number < gen.offsets.count { return gen.count > 1 ? gen.offsets[number] + 1 : nil }
        return lastBatch.count > 1 ? number + 1 : nil
    }
}

extension Session {
    /// The lines of a script or transcript file (LF or CRLF, a byte-order mark dropped).
    /// - Throws: the file system's or the decoder's error.
    public static func scriptLines(at path: String) throws -> [String] {
        var lines = lines(of: try String(contentsOfFile: path, encoding: .utf8))
        if let first = lines.first { lines[0] = droppingByteOrderMark(first) }
        return lines
    }
}
