import Foundation
import TestSupport
import XCTest

/// `sdrepl run --shard K/N` and `sdrepl merge` through the real binary on the fixture model: the
/// shards of a sweep make exactly the unsharded run's images, their merged transcript passes
/// `run --check`, and bad shares and mismatched shards are refused in one line.
final class ShardEndToEndTests: XCTestCase {
    private let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path

    /// Three gens of 3, 2 and 1 images (6 in all: each of 3 shards makes 2), the seed fixed.
    private let sweep = """
        prompt a lighthouse at dusk, (storm:1.2)
        set size 64x64
        set steps 3
        set autosave off
        seed 100
        gen 3
        seed 7
        gen 2
        set cfg 3
        gen
        save last.png
        """

    /// `#=> image` lines of a transcript as "seed sha256", in order.
    private func results(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").compactMap { line in
            guard line.hasPrefix("#=> image ") else { return nil }
            let fields = line.split(separator: " ")
            return fields.filter { $0.hasPrefix("seed=") || $0.hasPrefix("sha256=") }.joined(separator: " ")
        }
    }

    private func shardTranscripts(_ sandbox: Sandbox, _ folder: String) -> [String] {
        sandbox.files(in: folder).map { sandbox.path + "/" + folder + "/" + $0 }
    }

    func testThreeShardsMakeTheUnshardedImagesAndTheirMergePassesCheck() throws {
        let sandbox = Sandbox()
        sandbox.write("sweep.sdscript", sweep)
        let whole = try PipeRun(["run", "--model", model, "sweep.sdscript"], in: sandbox)
        XCTAssertEqual(whole.status, 0, whole.stderr)
        XCTAssertEqual(imageHashes(whole.stdout).count, 6, whole.stdout)
        // `save` never overwrites: the shard that makes the last image saves it again.
        try FileManager.default.removeItem(atPath: sandbox.path + "/last.png")

        var perShard: [[String]] = []
        for k in 1...3 {
            // --sessions before the subcommand, as a job runner's wrapper would put it.
            let shard = try PipeRun(["--sessions", "shards/\(k)", "run", "--shard", "\(k)/3", "--model", model, "sweep.sdscript"],
                                    in: sandbox)
            XCTAssertEqual(shard.status, 0, shard.stderr)
            XCTAssertTrue(shard.stdout.contains("shard \(k)/3 recorded to shards/\(k)/"), shard.stdout)
            perShard.append(imageHashes(shard.stdout))
            XCTAssertEqual(shardTranscripts(sandbox, "shards/\(k)").count, 1)
        }
        // Image i of the whole run (0-based, in script order) is made by shard i mod 3 + 1.
        let expected = imageHashes(whole.stdout)
        XCTAssertEqual(perShard, [[expected[0], expected[3]], [expected[1], expected[4]], [expected[2], expected[5]]])
        // The last gen (one image, the sixth) is shard 3's: only it saves; the others say why not.
        XCTAssertTrue(FileManager.default.fileExists(atPath: sandbox.path + "/last.png"))

        let transcripts = (1...3).reversed().flatMap { shardTranscripts(sandbox, "shards/\($0)") }
        // A shard's transcript is a script of its own: its share replays and checks.
        let one = try PipeRun(["run", "--check", transcripts[2]], in: sandbox)
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertTrue(one.stderr.contains("check: 2 images matched, 0 mismatched"), one.stderr)
        let merge = try PipeRun(["merge"] + transcripts + ["-o", "all.sdscript"], in: sandbox)
        XCTAssertEqual(merge.status, 0, merge.stderr)
        let merged = try results(sandbox.path + "/all.sdscript")
        XCTAssertEqual(merged.map { String($0.split(separator: "=").last!.prefix(16)) }, expected, "in the whole run's order")
        XCTAssertEqual(merged.prefix(3).map { String($0.prefix(8)) }, ["seed=100", "seed=101", "seed=102"])

        let check = try PipeRun(["run", "--check", "all.sdscript"], in: sandbox)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stderr.contains("check: 6 images matched, 0 mismatched"), check.stderr)
        XCTAssertFalse(check.stderr.contains("recorded with"), "the shards' numerics, this machine's: \(check.stderr)")
        let header = try String(contentsOfFile: sandbox.path + "/all.sdscript", encoding: .utf8).split(separator: "\n")[1]
        XCTAssertTrue(header.hasPrefix("# numerics: OpenBLAS "), String(header))

        let again = try PipeRun(["merge"] + transcripts + ["-o", "all.sdscript"], in: sandbox)
        XCTAssertEqual(again.status, 1)
        XCTAssertEqual(again.stderr, "merge: all.sdscript: exists already; merge never overwrites a transcript, give a new name\n")
    }

    /// Random seeds are drawn from the script's hash: two shards agree with one share of the whole.
    func testRandomSeedsAreTheSameInEveryShard() throws {
        let sandbox = Sandbox()
        sandbox.write("random.sdscript", "prompt a kite\nset size 64x64\nset steps 2\ngen 2\ngen\n")
        let one = try PipeRun(["run", "--shard", "1/1", "--sessions", "one", "--model", model, "random.sdscript"], in: sandbox)
        XCTAssertEqual(one.status, 0, one.stderr)
        var halves: [String] = []
        for k in 1...2 {
            let half = try PipeRun(["run", "--shard", "\(k)/2", "--sessions", "halves", "--model", model, "random.sdscript"], in: sandbox)
            XCTAssertEqual(half.status, 0, half.stderr)
        }
        let merge = try PipeRun(["merge"] + shardTranscripts(sandbox, "halves") + ["-o", "both.sdscript"], in: sandbox)
        XCTAssertEqual(merge.status, 0, merge.stderr)
        halves = try results(sandbox.path + "/both.sdscript")
        XCTAssertEqual(halves, try results(shardTranscripts(sandbox, "one")[0]))
        XCTAssertEqual(halves.count, 3)
    }

    func testBadSharesAndShardsOfDifferentScriptsAreRefused() throws {
        let sandbox = Sandbox()
        // Without the `save`: two shards 2/2 (of a and of b) make the last image here.
        let sweep = self.sweep.replacingOccurrences(of: "\nsave last.png", with: "")
        sandbox.write("a.sdscript", sweep)
        for (share, reason) in [("3/2", "K must be from 1 to N (here 1 to 2), got '3/2'"),
                                ("0/2", "K must be from 1 to N (here 1 to 2), got '0/2'"),
                                ("abc", "expected K/N, the K-th of N shares (such as 1/3), got 'abc'"),
                                ("1/0", "N (the number of shares) must be at least 1, got '1/0'")] {
            let run = try PipeRun(["run", "--shard", share, "a.sdscript"], in: sandbox)
            XCTAssertEqual(run.status, 64, "a usage error: " + run.stderr)
            XCTAssertTrue(run.stderr.hasPrefix("Error: run --shard: \(reason)\n"), run.stderr)
            XCTAssertEqual(sandbox.files(in: "sessions"), [], "nothing recorded")
        }
        let both = try PipeRun(["run", "--shard", "1/2", "--check", "a.sdscript"], in: sandbox)
        XCTAssertTrue(both.stderr.hasPrefix("Error: --shard and --check: check the merged transcript instead"), both.stderr)

        // The same sweep with another prompt on line 1: its shard 2 does not join a's shard 1.
        sandbox.write("b.sdscript", sweep.replacingOccurrences(of: "a lighthouse", with: "a windmill"))
        for (script, k) in [("a", 1), ("b", 2), ("a", 2)] {
            let run = try PipeRun(["run", "--shard", "\(k)/2", "--sessions", script + "\(k)", "--model", model, script + ".sdscript"], in: sandbox)
            XCTAssertEqual(run.status, 0, run.stderr)
        }
        let a1 = shardTranscripts(sandbox, "a1")[0], b2 = shardTranscripts(sandbox, "b2")[0], a2 = shardTranscripts(sandbox, "a2")[0]
        let mixed = try PipeRun(["merge", a1, b2, "-o", "mixed.sdscript"], in: sandbox)
        XCTAssertEqual(mixed.status, 1)
        // Line 6 of a shard's transcript is the script's first line (after three comments, the model and the shard line).
        XCTAssertEqual(mixed.stderr, "merge: \(b2):6: 'prompt a windmill at dusk, (storm:1.2)' differs from \(a1):6 "
                       + "'prompt a lighthouse at dusk, (storm:1.2)': these are shards of different scripts, and are not merged\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: sandbox.path + "/mixed.sdscript"))

        let missing = try PipeRun(["merge", a1, "-o", "half.sdscript"], in: sandbox)
        XCTAssertEqual(missing.stderr, "merge: shard 2/2 is missing: give all 2 shards' transcripts\n")
        let twice = try PipeRun(["merge", a2, a2, "-o", "twice.sdscript"], in: sandbox)
        XCTAssertEqual(twice.stderr, "merge: \(a2): is shard 2/2, as \(a2) is: give each shard once\n")
        let notShard = try PipeRun(["merge", "a.sdscript", a2, "-o", "x.sdscript"], in: sandbox)
        XCTAssertEqual(notShard.stderr, "merge: a.sdscript: not a shard's transcript (no '#% shard K/N' line); 'sdrepl run --shard K/N FILE' records one\n")
    }
}
