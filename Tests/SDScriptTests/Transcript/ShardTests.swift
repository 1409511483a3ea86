import Foundation
import Imaging
import TestSupport
import XCTest
@testable import SDScript

/// `run --shard K/N` and `TranscriptMerge` on the test doubles: examples/sweep/sweep.sdscript in four
/// shards makes each of its 32 images exactly once, and the merge replays as the whole run.
final class ShardTests: XCTestCase {
    private let sweep = FixturePaths.repoRoot.appendingPathComponent("examples/sweep/sweep.sdscript").path

    /// Runs shard `shard` of `path` in a recorded session; returns the session and its transcript's lines.
    private func runShard(_ shard: Shard, _ path: String, in folder: TemporaryFolder, failing: Bool = false) throws -> (Session, [String]) {
        let recorder = try TranscriptRecorder(directory: folder.path + "/shards/\(shard.index)")
        let session = makeSession(transcript: recorder, saver: RecordingSaver())
        session.startShard(shard, script: try String(contentsOfFile: path, encoding: .utf8), path: path)
        let summary = session.runScript(at: path)
        XCTAssertEqual(summary.errors.isEmpty, !failing, "\(summary.errors)")
        return (session, recorder.lines)
    }

    func testFourShardsOfTheExampleSweepMakeEachImageOnceAndMergeIntoTheWholeRun() throws {
        let folder = TemporaryFolder()
        let whole = makeSession(saver: RecordingSaver())
        XCTAssertEqual(whole.runScript(at: sweep).errors, [])
        XCTAssertEqual(whole.images.count, 32)

        var inputs: [TranscriptMerge.Input] = []
        var made: [String] = []
        for k in 1...4 {
            let (session, lines) = try runShard(try Shard(parsing: "\(k)/4"), sweep, in: folder)
            XCTAssertEqual(session.images.count, 8, "32 images over 4 shards")
            // Each gen of 8 (seeds 1000…1007) gives shard k its images k-1 and k+3.
            let seeds = [UInt64(1000 + k - 1), UInt64(1004 + k - 1)]
            XCTAssertEqual(session.images.map(\.request.engine.seed), Array([[UInt64]](repeating: seeds, count: 4).joined()))
            made += session.images.map(\.sha256)
            inputs.append(TranscriptMerge.Input(name: "shard\(k)", lines: lines))
        }
        XCTAssertEqual(made.sorted(), whole.images.map(\.sha256).sorted(), "every image once, none else")

        let merged = try TranscriptMerge.merge(inputs.reversed())
        XCTAssertEqual(merged.filter { $0.hasPrefix("gen ") }, Array(repeating: "gen 8", count: 4))
        let replay = makeSession(saver: RecordingSaver())
        let summary = replay.runScript(lines: merged, name: "merged", options: ScriptOptions(check: true))
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.checked, 32)
        XCTAssertEqual(replay.images.map(\.sha256), whole.images.map(\.sha256), "in the whole run's order")

        // Shards run under other numerics (another thread count): the merge names them all, and its
        // check says before comparing that the hashes cannot all match.
        let numbered = inputs.enumerated().map { k, input in
            TranscriptMerge.Input(name: input.name, lines: ["# numerics: OpenBLAS Zen kernels, \(k % 2 + 1) BLAS threads, 2 cores"] + input.lines)
        }
        let mixed = try TranscriptMerge.merge(numbered)
        XCTAssertEqual(mixed[1], "# numerics: mixed: OpenBLAS Zen kernels, 1 BLAS threads, 2 cores / OpenBLAS Zen kernels, 2 BLAS threads, 2 cores")
        let io = BufferIO()
        _ = makeSession(io: io, saver: RecordingSaver()).runScript(lines: mixed, name: "mixed", options: ScriptOptions(check: true))
        XCTAssertTrue(io.diagnostics.first?.hasPrefix("mixed:2: check: recorded with mixed: ") ?? false, "\(io.diagnostics.prefix(2))")
    }

    /// A shard stopped part-way through its last `gen` (Ctrl-C) keeps the images it made; merging it
    /// names the shard whose image is missing and says to run it again.
    func testAShardThatStoppedPartWayIsNamedByTheMerge() throws {
        let folder = TemporaryFolder()
        let script = folder.write("s.sdscript", "prompt x\nset size 64x64\nset steps 1\nseed 5\ngen 4\n")
        var inputs: [TranscriptMerge.Input] = []
        for k in 1...2 {
            var (_, lines) = try runShard(try Shard(parsing: "\(k)/2"), script, in: folder)
            if k == 2 {
                // Shard 2 makes seeds 6 and 8; as if stopped after the first, its share ends at seed 6.
                let from = try XCTUnwrap(lines.firstIndex(of: "seed 8"))
                let to = try XCTUnwrap(lines[from...].firstIndex(of: "seed 5"))
                lines.removeSubrange(from..<to)
            }
            inputs.append(TranscriptMerge.Input(name: "shard\(k)", lines: lines))
        }
        XCTAssertThrowsError(try TranscriptMerge.merge(inputs)) { error in
            XCTAssertTrue("\(error)".contains("shard2:"), "\(error)")
            XCTAssertTrue("\(error)".contains("gen 4: image 4 of the gen is shard 2/2's, but its transcript does not have it: "
                                              + "the shard stopped before making it; run shard 2/2 again"), "\(error)")
        }
    }

    /// A shard that failed at a line (its init image missing on that machine) is named as failed,
    /// with the error, not as a shard of another script; nor do failed shards merge into a
    /// transcript that checks nothing.
    func testAShardThatFailedIsNamedWithItsError() throws {
        let folder = TemporaryFolder()
        let script = folder.write("s.sdscript", "prompt x\nset size 64x64\nset steps 1\nseed 5\ninit \(folder.path)/in.png\ngen 2\n")
        try Data(try PNGFile.encode(try RGBImage(width: 8, height: 8, pixels: Array(repeating: 9, count: 192)), chunks: []))
            .write(to: URL(fileURLWithPath: folder.path + "/in.png"))
        let (_, first) = try runShard(try Shard(parsing: "1/2"), script, in: folder)
        try FileManager.default.removeItem(atPath: folder.path + "/in.png")
        let (_, second) = try runShard(try Shard(parsing: "2/2"), script, in: folder, failing: true)
        let failed = try XCTUnwrap(second.firstIndex { $0.hasPrefix("# error: ") }) + 1
        XCTAssertThrowsError(try TranscriptMerge.merge([TranscriptMerge.Input(name: "shard1", lines: first),
                                                       TranscriptMerge.Input(name: "shard2", lines: second)])) { error in
            XCTAssertTrue("\(error)".hasPrefix("merge: shard2:\(failed): shard 2/2 failed here (init: "), "\(error)")
            XCTAssertTrue("\(error)".hasSuffix("); fix that and run the shard again, then merge"), "\(error)")
        }
    }

    /// Shards that ran with different `--model`s (their transcripts' first command) are not merged:
    /// the merged transcript would check one model's images against another's hashes.
    func testShardsOfDifferentModelsAreNotMerged() throws {
        let folder = TemporaryFolder()
        let script = folder.write("s.sdscript", "prompt x\nset size 64x64\nset steps 1\nseed 5\ngen 2\n")
        var inputs: [TranscriptMerge.Input] = []
        for k in 1...2 {
            let (_, lines) = try runShard(try Shard(parsing: "\(k)/2"), script, in: folder)
            inputs.append(TranscriptMerge.Input(name: "shard\(k)", lines: lines))
        }
        func withModels(_ first: String, _ second: String) -> [TranscriptMerge.Input] {
            [TranscriptMerge.Input(name: "shard1", lines: ["model \(first)"] + inputs[0].lines),
             TranscriptMerge.Input(name: "shard2", lines: ["model \(second)"] + inputs[1].lines)]
        }
        XCTAssertThrowsError(try TranscriptMerge.merge(withModels("/models/a.safetensors", "/models/b.safetensors"))) { error in
            XCTAssertEqual("\(error)", "merge: shard2: it ran with --model …/b.safetensors where shard1 ran with --model …/a.safetensors: "
                           + "shards of different models are not merged; run every shard with the same model")
        }
        // The same model kept in another folder on the other machine merges.
        XCTAssertNoThrow(try TranscriptMerge.merge(withModels("/home/ann/models/a.safetensors", "/srv/models/a.safetensors")))
    }

    /// What needs another shard's images is refused in a sharded run (`final N` and `grid` number
    /// their images by the whole history); a `save PATH` after a failed cell still names its file.
    func testCommandsThatNeedTheWholeHistoryAreRefusedInAShard() throws {
        let folder = TemporaryFolder()
        let script = folder.write("s.sdscript", "prompt x\nset size 64x64\nset steps 1\nseed 5\ngen 3\n")
        let session = makeSession(saver: RecordingSaver())
        session.startShard(try Shard(parsing: "3/3"), script: try String(contentsOfFile: script, encoding: .utf8), path: script)
        XCTAssertEqual(session.runScript(at: script).errors, [])
        for line in ["final 1", "grid X=seed:1-2", "upscale 1"] {
            guard case .failed(let diagnostic) = session.execute(line) else { return XCTFail("\(line) ran in a shard") }
            XCTAssertTrue(diagnostic.description.contains("not in a sharded run"), diagnostic.description)
        }
        XCTAssertEqual(session.execute("save \(folder.path)/pic.png"), .ok)
        XCTAssertEqual(session.images.first?.savedPaths.last, "\(folder.path)/pic-3.png", "the third image of the gen")
    }
}
