import Diffusion
import Foundation
import XCTest
@testable import NN
@testable import SDScript

/// `set precision fp32|bf16|auto`: what reaches the request, the refusal where there is no bf16, and
/// `auto`, which the transcript records as the precision each generation took.
final class PrecisionSettingTests: XCTestCase {
    private var saved: Result<BF16Support.Backend, BF16Support.Unavailable>!
    override func setUp() { saved = BF16Support.detected }
    override func tearDown() { BF16Support.detected = saved }

    private let noBF16 = BF16Support.Unavailable(description: "this CPU has no bf16 instructions (AVX512_BF16 or AMX)")

    func testWithoutBF16TheSettingSaysSoAndKeepsFP32() throws {
        BF16Support.detected = .failure(noBF16)
        let io = BufferIO()
        let loader = CountingLoader()
        let session = makeSession(io: io, loader: loader)
        XCTAssertEqual(SettingKey.named("precision")?.show(session.settings), "fp32", "fp32 by default")
        XCTAssertEqual(session.execute("prompt a fox"), .ok)
        guard case .failed(let refused) = session.execute("set precision bf16") else { return XCTFail("bf16 accepted without bf16") }
        XCTAssertEqual(refused.description, "set precision: bf16 is not available here: this CPU has no bf16 instructions "
                       + "(AVX512_BF16 or AMX); keeping fp32")
        guard case .failed(let typo) = session.execute("set precision bf61") else { return XCTFail("bf61 accepted") }
        XCTAssertEqual(typo.description, "set precision: expected fp32, bf16 or auto, got 'bf61' (did you mean 'bf16'?)")
        XCTAssertEqual(session.execute("set precision auto"), .ok)
        XCTAssertTrue(io.lines.contains("precision: auto is fp32 on this machine (this CPU has no bf16 instructions (AVX512_BF16 or AMX))"),
                      "\(io.lines)")
        XCTAssertEqual(SettingKey.named("precision")?.show(session.settings), "auto (fp32 here)")
        session.settings.resources.draft = DraftPreset(lora: "lcm", sampler: .lcm, steps: 4, cfg: 1, spacing: nil, vae: nil)
        XCTAssertEqual(session.execute("gen"), .ok)
        XCTAssertEqual(loader.generator.requests.map(\.precision), [.fp32], "auto drafts in fp32 without bf16")
    }

    func testBF16ReachesTheRequestAndUnsetGoesBackToFP32() throws {
        BF16Support.detected = .success(.emulated)
        let loader = CountingLoader()
        let session = makeSession(loader: loader)
        for line in ["prompt a fox", "set precision BF16", "gen", "unset precision", "gen", "set precision bf16", "set precision fp32", "gen"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        XCTAssertEqual(loader.generator.requests.map(\.precision), [.bf16, .fp32, .fp32])
        BF16Support.detected = .success(.emulated)
        XCTAssertEqual(session.execute("set precision auto"), .ok)
        session.settings.resources.draft = DraftPreset(lora: "lcm", sampler: .lcm, steps: 4, cfg: 1, spacing: nil, vae: nil)
        XCTAssertEqual(session.execute("gen"), .ok)
        XCTAssertEqual(loader.generator.requests.last?.precision, .fp32, "the emulation is for checks, never chosen by auto")
    }

    /// With bf16 instructions, auto drafts in bf16 and renders finals in fp32; each change is recorded
    /// before its `gen`, so the replay renders alike on a machine whose auto would choose otherwise.
    func testAutoDraftsInBF16AndTheTranscriptRecordsWhatItChose() throws {
        BF16Support.detected = .success(.oneDNN)
        let folder = TemporaryFolder()
        let recorder = try TranscriptRecorder(directory: folder.path, date: Date(timeIntervalSince1970: 1_795_000_000))
        let loader = CountingLoader()
        let session = makeSession(transcript: recorder, loader: loader)
        for line in ["prompt a fox", "seed 3", "set precision auto", "gen", "gen"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        session.settings.resources.draft = DraftPreset(lora: "lcm", sampler: .lcm, steps: 4, cfg: 1, spacing: nil, vae: nil)
        XCTAssertEqual(session.execute("gen"), .ok)
        session.settings.resources.draft = nil
        XCTAssertEqual(session.execute("gen"), .ok)
        XCTAssertEqual(loader.generator.requests.map(\.precision), [.fp32, .fp32, .bf16, .fp32])
        XCTAssertEqual(SettingKey.named("precision")?.show(session.settings), "auto (bf16 for drafts, fp32 otherwise)")
        let lines = recorder.lines.filter { $0.hasPrefix("set precision") || $0.hasPrefix("gen") }
        XCTAssertEqual(lines, ["set precision auto", "set precision fp32", "gen", "gen", "set precision bf16", "gen",
                               "set precision fp32", "gen"])
    }

    /// `final N` after an `auto` draft renders in fp32 and records it, so that a replay, whose
    /// `set precision bf16` line made its choice explicit, sets it back before `final` too.
    func testFinalAfterAnAutoDraftRecordsFP32AndReplaysAlike() throws {
        BF16Support.detected = .success(.oneDNN)
        let recorder = try TranscriptRecorder(directory: TemporaryFolder().path, date: Date(timeIntervalSince1970: 1_795_000_000))
        let loader = CountingLoader()
        let session = makeSession(transcript: recorder, loader: loader)
        XCTAssertEqual(session.execute("prompt a fox"), .ok)
        XCTAssertEqual(session.execute("set precision auto"), .ok)
        session.settings.resources.draft = DraftPreset(lora: "lcm", sampler: .lcm, steps: 4, cfg: 1, spacing: nil, vae: nil)
        for line in ["seed 3", "gen", "final 1"] { XCTAssertEqual(session.execute(line), .ok, line) }
        XCTAssertEqual(loader.generator.requests.map(\.precision), [.bf16, .fp32])
        let recorded = recorder.lines.filter { !$0.hasPrefix("#") }
        XCTAssertEqual(recorded.filter { $0.hasPrefix("set precision") || $0.hasPrefix("gen") || $0.hasPrefix("final") },
                       ["set precision auto", "set precision bf16", "gen", "set precision fp32", "final 1"])

        // The replay, draft mode set as the recorded preset would.
        let replayLoader = CountingLoader()
        let replay = makeSession(loader: replayLoader)
        for line in recorded {
            if line.hasPrefix("gen") { replay.settings.resources.draft = session.settings.resources.draft }
            XCTAssertEqual(replay.execute(line), .ok, line)
        }
        XCTAssertEqual(replayLoader.generator.requests.map(\.precision), [.bf16, .fp32])
    }

    /// In a sharded run `auto` is fp32 on every machine, and every shard records the same line,
    /// also one that takes none of the `gen`'s images.
    func testAShardedRunSettlesAutoAsFP32InEveryShard() throws {
        BF16Support.detected = .success(.oneDNN)
        let folder = TemporaryFolder()
        let script = folder.write("s.sdscript", "prompt x\nset size 64x64\nset steps 1\nset precision auto\nseed 5\ngen 1\n")
        var recordedLines: [[String]] = []
        for k in 1...2 {
            let recorder = try TranscriptRecorder(directory: folder.path + "/shards/\(k)")
            let loader = CountingLoader()
            let session = makeSession(transcript: recorder, loader: loader)
            session.settings.resources.draft = DraftPreset(lora: "lcm", sampler: .lcm, steps: 4, cfg: 1, spacing: nil, vae: nil)
            session.startShard(try Shard(parsing: "\(k)/2"), script: try String(contentsOfFile: script, encoding: .utf8), path: script)
            XCTAssertEqual(session.runScript(at: script).errors, [])
            XCTAssertEqual(loader.generator.requests.map(\.precision), k == 1 ? [.fp32] : [], "shard \(k)")
            recordedLines.append(recorder.lines.filter { $0.hasPrefix("set precision") })
        }
        XCTAssertEqual(recordedLines, [["set precision auto", "set precision fp32"], ["set precision auto", "set precision fp32"]])
    }
}
