import Foundation

/// `sdrepl merge`: joins the transcripts of the N shards of one sweep (`run --shard K/N`) into one
/// transcript of the whole sweep, which `run --check` verifies.
///
/// Every shard ran every command, so the lines outside the sharded `gen`s must be the same in all of
/// them (the first that differs is named, and nothing is merged). Each sharded `gen` of C images
/// becomes `gen C` followed by its C `#=> image` lines, taken from the shards by each image's
/// place in the `gen` (its seed minus the `gen`'s first seed) and numbered as the whole run numbers them.
public enum TranscriptMerge {
    /// One shard's transcript: a name for messages and its lines.
    public struct Input {
        public var name: String
        public var lines: [String]

        public init(name: String, lines: [String]) {
            self.name = name
            self.lines = lines
        }
    }

    /// The merged transcript's lines.
    /// - Throws: `ScriptError` naming the transcript and line: not a shard's transcript, shards of
    ///   different sweeps (N differs, a K twice, one missing), or of different scripts (the first
    ///   line that differs), or an image that no shard made.
    public static func merge(_ inputs: [Input]) throws -> [String] {
        var shards = try inputs.map(ShardTranscript.init)
        guard let first = shards.first else { throw fail("merge", "no transcripts given: sdrepl merge A B … -o ALL.sdscript") }
        for shard in shards where shard.shard.count != first.shard.count {
            throw fail(shard.name, "is shard \(shard.shard), but \(first.name) is shard \(first.shard): merge the shards of one sweep")
        }
        shards.sort { $0.shard.index < $1.shard.index }
        for (a, b) in zip(shards, shards.dropFirst()) where a.shard.index == b.shard.index {
            throw fail(b.name, "is shard \(b.shard), as \(a.name) is: give each shard once")
        }
        let missing = Set(1...first.shard.count).subtracting(shards.map(\.shard.index)).sorted()
        if let gap = missing.first {
            throw fail("merge", "shard \(gap)/\(first.shard.count) is missing: give all \(first.shard.count) shards' transcripts")
        }
        // A shard that failed did not make its share: said as such, not as shards of other scripts
        // (its failed line is a comment where the others have the command).
        for shard in shards {
            for case .line(let number, let text) in shard.pieces where text.hasPrefix("# error: ") {
                throw fail("\(shard.name):\(number)", "shard \(shard.shard) failed here (\(text.dropFirst(9))); "
                           + "fix that and run the shard again, then merge")
            }
        }
        let reference = shards[0]
        for other in shards.dropFirst() { try compare(reference, other) }

        var out = ["# sdrepl merge of \(shards.count) shard transcripts: " + shards.map(\.name).joined(separator: ", ")]
        // The shards' numerics, which `run --check` compares with its own: one line when they agree,
        // else all of them, so the check says its hashes cannot all match anywhere.
        let numerics = shards.compactMap(\.numerics).map { String($0.dropFirst(ScriptNumerics.prefix.count)) }
        if !numerics.isEmpty {
            let distinct = numerics.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            out.append(ScriptNumerics.prefix + (distinct.count == 1 ? distinct[0] : "mixed: " + distinct.joined(separator: " / ")))
        }
        // The model discovery found: each shard's replay takes the first shard's file where it is
        // there (the runners may keep it in other folders; `compare` refused other models).
        if let pin = shards.lazy.compactMap(\.models.first).first { out.append("# " + pin.comment) }
        out += reference.setup
        var number = 0
        for (position, piece) in reference.pieces.enumerated() {
            switch piece {
            case .line(_, let text):
                out.append(text)
            case .gen(let line, let count, _):
                out.append("gen \(count)")
                for offset in 0..<count {
                    let owners = shards.compactMap { shard -> [ResultRecord]? in
                        guard case .gen(_, _, let images) = shard.pieces[position] else { return nil }
                        return images[offset]
                    }
                    if owners.isEmpty {
                        // Shard K makes the images whose number over the script is K-1 modulo N.
                        let owner = shards[number % shards.count]
                        throw fail("\(owner.name):\(owner.pieces[position].number)", "gen \(count): image \(offset + 1) of the gen is shard \(owner.shard)'s, but its "
                                   + "transcript does not have it: the shard stopped before making it; run shard \(owner.shard) again")
                    }
                    guard let records = owners.first, owners.count == 1 else {
                        throw fail("\(reference.name):\(line)", "gen \(count): image \(offset + 1) of the gen is in \(owners.count) shards' transcripts, not in one")
                    }
                    number += 1
                    out += records.map { renumbered($0, number).description }
                }
            }
        }
        return out
    }

    /// The first difference between two shards' transcripts outside their sharded images.
    private static func compare(_ a: ShardTranscript, _ b: ShardTranscript) throws {
        // What ran before the script (`--model`): shards of other models make other images. The
        // machines may keep the model in other folders, so only its file name counts.
        func models(_ shard: ShardTranscript) -> [String] {
            shard.setup.filter { $0.hasPrefix("model ") }.map { URL(fileURLWithPath: String($0.dropFirst(6))).lastPathComponent }
        }
        if models(a) != models(b) {
            func named(_ shard: ShardTranscript) -> String { models(shard).first.map { "--model …/\($0)" } ?? "no --model" }
            throw fail(b.name, "it ran with \(named(b)) where \(a.name) ran with \(named(a)): shards of different models "
                       + "are not merged; run every shard with the same model")
        }
        let hashes = [a, b].map { Set($0.models.compactMap(\.hash)) }
        if !hashes[0].isEmpty && !hashes[1].isEmpty && hashes[0] != hashes[1] {
            throw fail(b.name, "its model's hash is \(hashes[1].sorted().joined(separator: ", ")) where \(a.name)'s is "
                       + "\(hashes[0].sorted().joined(separator: ", ")) (the '# model' lines): shards of different models are not merged; "
                       + "run every shard with the same model")
        }
        for (x, y) in zip(a.pieces, b.pieces) {
            switch (x, y) {
            case (.line(_, let text), .line(_, let other)) where text == other:
                continue
            case (.gen(_, let count, _), .gen(_, let other, _)) where count == other:
                continue
            default:
                throw fail("\(b.name):\(y.number)", "'\(y.text)' differs from \(a.name):\(x.number) '\(x.text)': "
                           + "these are shards of different scripts, and are not merged")
            }
        }
        if a.pieces.count != b.pieces.count {
            let (longer, shorter) = a.pieces.count > b.pieces.count ? (a, b) : (b, a)
            let extra = longer.pieces[shorter.pieces.count]
            throw fail("\(longer.name):\(extra.number)", "'\(extra.text)' is not in \(shorter.name), which ends before it: "
                       + "shards of different scripts, or a shard that stopped early")
        }
    }

    private static func renumbered(_ record: ResultRecord, _ number: Int) -> ResultRecord {
        switch record {
        case .image(_, let seed, let width, let height, let sha256):
            return .image(index: number, seed: seed, width: width, height: height, sha256: sha256)
        case .saved(_, let path):
            return .saved(index: number, path: path)
        }
    }

    static func fail(_ place: String, _ reason: String) -> ScriptError {
        .notReady(command: "merge", reason: place == "merge" ? reason : "\(place): \(reason)")
    }
}

/// One shard's transcript, read: the lines before its `#% shard K/N` line that set it up (the
/// model), and after it the lines and sharded `gen`s in order.
private struct ShardTranscript {
    enum Piece {
        case line(number: Int, text: String)
        /// A sharded `gen` of `count` images starting at line `number`; this shard's images by
        /// their place in the gen, each with its result lines.
        case gen(number: Int, count: Int, images: [Int: [ResultRecord]])

        var number: Int {
            switch self {
            case .line(let number, _), .gen(let number, _, _): return number
            }
        }

        var text: String {
            switch self {
            case .line(_, let text): return text
            case .gen(_, let count, _): return "gen \(count)"
            }
        }
    }

    let name: String
    let shard: Shard
    var setup: [String] = []
    var pieces: [Piece] = []
    /// Its `# numerics:` header line, when it has one.
    var numerics: String?
    /// The models discovery found for it (its `# model` lines), which the shard made its images with
    /// but which need not be the same files on every runner.
    var models: [ScriptModelPin] = []

    init(_ input: TranscriptMerge.Input) throws {
        name = input.name
        let headerPrefix = ShardMarkers.header + " "
        guard let header = input.lines.firstIndex(where: { $0.hasPrefix(headerPrefix) && !$0.hasPrefix(ShardMarkers.genStart) }) else {
            throw TranscriptMerge.fail(name, "not a shard's transcript (no '#% shard K/N' line); 'sdrepl run --shard K/N FILE' records one")
        }
        let value = input.lines[header].dropFirst(headerPrefix.count).split(separator: " ").first.map(String.init) ?? ""
        do {
            shard = try Shard(parsing: value)
        } catch {
            throw TranscriptMerge.fail("\(name):\(header + 1)", "cannot read the shard line '\(input.lines[header])'")
        }
        // The session's own comments (when it started, how to replay it) are this file's, not the merge's.
        setup = input.lines[..<header].filter { !$0.hasPrefix("#") }
        numerics = input.lines[..<header].first { $0.hasPrefix(ScriptNumerics.prefix) }
        var index = header + 1
        while index < input.lines.count {
            let text = input.lines[index]
            let number = index + 1
            index += 1
            if text.hasPrefix(ShardMarkers.genStart + " ") {
                let (gen, next) = try Self.readGen(input.lines, from: index, header: text, number: number, name: name)
                pieces.append(gen)
                index = next
            } else if case .saved? = ResultRecord(line: text) {
                continue  // a `save` after a sharded gen saved this shard's images only: informational
            } else if let pin = ScriptModelPin(line: text) {
                models.append(pin)  // written where this shard first loaded it, which differs between shards
            } else {
                pieces.append(.line(number: number, text: text))
            }
        }
    }

    /// Reads a sharded gen's lines up to its end marker: `seed S`, `gen 1`, results …, `seed BASE`.
    private static func readGen(_ lines: [String], from start: Int, header: String, number: Int, name: String) throws -> (Piece, Int) {
        guard let count = Int(header.dropFirst(ShardMarkers.genStart.count + 1)), count > 0 else {
            throw TranscriptMerge.fail("\(name):\(number)", "cannot read '\(header)'")
        }
        var made: [(seed: UInt64, records: [ResultRecord])] = []
        var base: UInt64?
        var index = start
        while index < lines.count, lines[index] != ShardMarkers.genEnd {
            let text = lines[index]
            index += 1
            if text.hasPrefix("seed "), let seed = UInt64(text.dropFirst(5)) {
                base = seed
            } else if let record = ResultRecord(line: text) {
                if case .image(_, let seed, _, _, _) = record { made.append((seed, [])) }
                if !made.isEmpty { made[made.count - 1].records.append(record) }
            }
        }
        guard index < lines.count, let base else {
            throw TranscriptMerge.fail("\(name):\(number)", "'\(header)' has no '\(ShardMarkers.genEnd)' line: the shard stopped part-way; run it again")
        }
        var images: [Int: [ResultRecord]] = [:]
        for image in made {
            let offset = Int(image.seed &- base)
            guard (0..<count).contains(offset) else {
                throw TranscriptMerge.fail("\(name):\(number)", "an image of seed \(image.seed) is not one of this gen's seeds \(base)…\(base &+ UInt64(count - 1))")
            }
            images[offset] = image.records
        }
        return (.gen(number: number, count: count, images: images), index + 1)
    }
}
