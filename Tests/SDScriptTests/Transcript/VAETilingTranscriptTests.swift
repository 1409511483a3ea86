import Diffusion
import Foundation
import XCTest
@testable import SDScript

/// `set vae-tiling auto` (the default) is settled by the first picture over 512 a side and the
/// transcript records the choice, so replays decode alike whatever the machine's memory mode.
final class VAETilingTranscriptTests: XCTestCase {
    private let lowMemoryNote = "note: low-memory mode: pictures over 512 a side are now encoded and decoded in 512-pixel tiles"

    /// On in low-memory mode (said once), off in fast mode with room to spare; either way `set
    /// vae-tiling on|off` is recorded before that `gen`. Pictures of 512 a side leave it unsettled.
    func testAutoIsSettledByTheFirstLargePictureAndRecorded() throws {
        for (memory, choice) in [(MemoryMode.low, "on"), (.fast, "off")] {
            let folder = TemporaryFolder()
            let recorder = try TranscriptRecorder(directory: folder.path, date: Date(timeIntervalSince1970: 1_795_000_000))
            let io = BufferIO()
            let loader = CountingLoader()
            loader.generator.memoryMode = memory
            let session = makeSession(io: io, transcript: recorder, loader: loader)
            for line in ["prompt x", "seed 3", "set steps 1", "gen", "set size 1024x768", "gen", "gen"] {
                XCTAssertEqual(session.execute(line), .ok, line)
            }
            XCTAssertEqual(loader.generator.requests.map(\.vaeTiling), [false, memory == .low, memory == .low], "\(memory)")
            XCTAssertEqual(session.settings.request.vaeTiling.rawValue, choice)
            XCTAssertEqual(io.lines.filter { $0.hasPrefix(lowMemoryNote) }.count, memory == .low ? 1 : 0, "\(io.lines)")
            let text = try String(contentsOfFile: recorder.path, encoding: .utf8)
            XCTAssertEqual(text.components(separatedBy: "\nset vae-tiling \(choice)\ngen\n").count, 2, text)
            XCTAssertFalse(text.contains("set vae-tiling \(choice == "on" ? "off" : "on")"), text)
        }
    }

    /// Every shard records the same line whatever its memory mode (off), so the shards still merge;
    /// `run --check` of a transcript without the line (made when tiling was off unless asked for)
    /// decodes whole in low-memory mode too, so its hashes still match.
    func testShardsAndChecksSettleAutoOff() throws {
        let folder = TemporaryFolder()
        let script = folder.write("s.sdscript", "prompt x\nset size 768x768\nset steps 1\nseed 5\ngen 1\ngen 1\n")
        var inputs: [TranscriptMerge.Input] = []
        for k in 1...2 {
            let recorder = try TranscriptRecorder(directory: folder.path + "/shards/\(k)")
            let loader = CountingLoader()
            loader.generator.memoryMode = k == 1 ? .low : .fast
            let session = makeSession(transcript: recorder, loader: loader)
            session.startShard(try Shard(parsing: "\(k)/2"), script: try String(contentsOfFile: script, encoding: .utf8), path: script)
            XCTAssertEqual(session.runScript(at: script).errors, [])
            XCTAssertEqual(loader.generator.requests.map(\.vaeTiling), [false], "shard \(k)")
            XCTAssertEqual(recorder.lines.filter { $0.hasPrefix("set vae-tiling") }, ["set vae-tiling off"], "shard \(k)")
            inputs.append(TranscriptMerge.Input(name: "shard\(k)", lines: recorder.lines))
        }
        let merged = try TranscriptMerge.merge(inputs)

        let loader = CountingLoader()
        loader.generator.memoryMode = .low
        let replay = makeSession(loader: loader)
        let old = merged.filter { !$0.hasPrefix("set vae-tiling") }
        let summary = replay.runScript(lines: old, name: "old", options: ScriptOptions(check: true))
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.checked, 2)
        XCTAssertEqual(loader.generator.requests.map(\.vaeTiling), [false, false])
    }

    /// `set vae-tiling` takes auto, on and off, and the spellings other switches take.
    func testTheSettingTakesAutoOnOffAndTheSwitchSpellings() {
        let session = makeSession()
        for (typed, value) in [("1", VAETiling.on), ("no", .off), ("AUTO", .auto), ("true", .on)] {
            XCTAssertEqual(session.execute("set vae-tiling \(typed)"), .ok, typed)
            XCTAssertEqual(session.settings.request.vaeTiling, value, typed)
        }
        guard case .failed(let diagnostic) = session.execute("set vae-tiling maybe") else { return XCTFail("maybe was taken") }
        XCTAssertTrue(diagnostic.description.contains("expected auto, on or off, got 'maybe'"), diagnostic.description)
    }
}
