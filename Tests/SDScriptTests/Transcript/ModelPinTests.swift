import Foundation
import ModelStore
import XCTest
@testable import SDScript

/// The `# model` line: which checkpoint discovery found, recorded so that a replay uses it again
/// (`ScriptModelPin`). The sessions here find models with the real discovery (`ModelStoreCatalog`)
/// in a folder of their own; the generator is the hash double, so only the model's path matters.
final class ModelPinTests: XCTestCase {
    private var folder: TemporaryFolder!
    private var environment: [String: String] { ["HOME": folder.path, "XDG_CACHE_HOME": folder.path + "/cache"] }

    override func setUp() {
        folder = TemporaryFolder()
    }

    /// A session in `folder` whose discovery looks in `folder/models` only.
    private func session(io: BufferIO = BufferIO(), transcript: TranscriptRecorder? = nil,
                         loader: CountingLoader = CountingLoader()) -> Session {
        let catalog = ModelStoreCatalog(environment: environment, currentDirectory: folder.path)
        return Session(components: Components(generatorLoader: loader, models: catalog, styles: StyleBook(environment: [:])),
                       io: io, transcript: transcript, drawSeed: { 7 })
    }

    /// A model file in `folder/models` whose short hash the hash cache knows, as after a first save.
    @discardableResult
    private func model(_ name: String, contents: String) throws -> (path: String, hash: String) {
        let path = folder.write("models/" + name, contents)
        return (path, try ModelHashCache(environment: environment).shortHash(of: URL(fileURLWithPath: path)))
    }

    /// Records `prompt x; gen` and returns the transcript's lines.
    private func record() throws -> [String] {
        let recorder = try TranscriptRecorder(directory: folder.path + "/sessions")
        let recording = session(transcript: recorder)
        for line in ["prompt x", "set size 64x64", "set steps 1", "gen"] { XCTAssertEqual(recording.execute(line), .ok, line) }
        return recorder.lines
    }

    func testTheCommentReadsBackWhateverTheSourceAndPath() {
        for pin in [ScriptModelPin(path: "/m/v1-5 (copy).safetensors", source: "HF cache (runwayml/stable-diffusion-v1-5)", hash: "6ce0161689"),
                    ScriptModelPin(path: "/m/x", source: "./models", hash: nil)] {
            XCTAssertEqual(ScriptModelPin(line: "# " + pin.comment), pin, pin.comment)
        }
        XCTAssertEqual(ScriptModelPin(path: "/m/a.safetensors", source: "./models", hash: "0c8b60a4df").comment,
                       "model (./models, hash 0c8b60a4df): /m/a.safetensors")
        for other in ["# model", "# model (x): relative/path", "model (x): /a", "# models (x): /a"] {
            XCTAssertNil(ScriptModelPin(line: other), other)
        }
    }

    func testADiscoveredModelIsRecordedOnceBeforeTheGenThatLoadedIt() throws {
        let b = try model("b.safetensors", contents: "model b")
        let lines = try record()
        let pin = "# model (./models, hash \(b.hash)): \(b.path)"
        XCTAssertEqual(lines.filter { $0.hasPrefix("# model") }, [pin])
        XCTAssertEqual(lines.firstIndex(of: pin).map { lines[$0 + 1] }, "gen")
    }

    func testAModelGivenByPathIsNotPinned() throws {
        let b = try model("b.safetensors", contents: "model b")
        let recorder = try TranscriptRecorder(directory: folder.path + "/sessions")
        let recording = session(transcript: recorder)
        for line in ["model \(b.path)", "prompt x", "set size 64x64", "set steps 1", "gen"] { XCTAssertEqual(recording.execute(line), .ok, line) }
        XCTAssertEqual(recorder.lines.filter { $0.hasPrefix("# model") }, [])
    }

    /// Another model arrives that discovery would take first: the replay keeps the recorded one,
    /// for this file only.
    func testAReplayUsesTheRecordedModelOverWhatDiscoveryFindsNow() throws {
        let b = try model("b.safetensors", contents: "model b")
        let transcript = try record()
        try model("a.safetensors", contents: "model a")
        let io = BufferIO(), loader = CountingLoader()
        let replay = session(io: io, loader: loader)
        let summary = replay.runScript(lines: transcript, name: "t.sdscript", options: ScriptOptions(check: true))
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.checked, 1)
        XCTAssertEqual(loader.loaded, [b.path])
        XCTAssertEqual(io.diagnostics, [])
        XCTAssertNil(replay.settings.resources.replayedModel, "the pin outlived its file")
    }

    func testAMissingModelSaysWhatDiscoveryUsesInsteadAndWhetherItDiffers() throws {
        let b = try model("b.safetensors", contents: "model b")
        let transcript = try record()
        let line = try XCTUnwrap(transcript.firstIndex { $0.hasPrefix("# model") }) + 1
        try FileManager.default.removeItem(atPath: b.path)
        let a = try model("a.safetensors", contents: "model a")
        let io = BufferIO(), loader = CountingLoader()
        _ = session(io: io, loader: loader).runScript(lines: transcript, name: "t.sdscript", options: ScriptOptions(check: true))
        XCTAssertEqual(loader.loaded, [a.path])
        XCTAssertEqual(io.diagnostics, [
            "t.sdscript:\(line): the transcript's model \(b.path) is not here; discovery uses \(a.path) (./models); "
                + "recorded with model hash \(b.hash), replayed with \(a.hash): the images are expected to differ; "
                + "'model PATH' or --model names the model to use",
        ])
    }

    /// The same file under another name (moved, or another machine's folder): the same pictures.
    func testTheSameModelElsewhereIsUsedWithoutANote() throws {
        let b = try model("b.safetensors", contents: "model b")
        let transcript = try record()
        try FileManager.default.removeItem(atPath: b.path)
        let moved = try model("moved.safetensors", contents: "model b")
        let io = BufferIO(), loader = CountingLoader()
        _ = session(io: io, loader: loader).runScript(lines: transcript, name: "t.sdscript", options: ScriptOptions(check: true))
        XCTAssertEqual(loader.loaded, [moved.path])
        XCTAssertEqual(io.diagnostics, [])
    }

    func testAModelGivenForTheReplayWinsAndADifferentHashIsSaid() throws {
        let b = try model("b.safetensors", contents: "model b")
        let transcript = try record()
        let line = try XCTUnwrap(transcript.firstIndex { $0.hasPrefix("# model") }) + 1
        let other = try model("other.safetensors", contents: "another model")
        let io = BufferIO(), loader = CountingLoader()
        let replay = session(io: io, loader: loader)
        replay.settings.resources.model = other.path
        _ = replay.runScript(lines: transcript, name: "t.sdscript", options: ScriptOptions(check: true))
        XCTAssertEqual(loader.loaded, [other.path])
        XCTAssertEqual(io.diagnostics, ["t.sdscript:\(line): recorded with model hash \(b.hash), replayed with \(other.hash): "
                                        + "the images are expected to differ (\(other.path), given by 'model' or --model)"])
    }

    /// Shards on different runners may keep the model in different folders: the merge keeps the first
    /// shard's line; shards whose models' hashes differ are not merged.
    func testAMergeKeepsOnePinAndRefusesShardsOfDifferentModels() throws {
        let script = folder.write("s.sdscript", "prompt x\nset size 64x64\nset steps 1\nseed 5\ngen 2\n")
        let b = try model("b.safetensors", contents: "model b")
        func shard(_ k: Int) throws -> TranscriptMerge.Input {
            let recorder = try TranscriptRecorder(directory: folder.path + "/shards/\(k)")
            let sharded = session(transcript: recorder)
            sharded.startShard(try Shard(parsing: "\(k)/2"), script: try String(contentsOfFile: script, encoding: .utf8), path: script)
            XCTAssertEqual(sharded.runScript(at: script).errors, [])
            return TranscriptMerge.Input(name: "shard\(k)", lines: recorder.lines)
        }
        let first = try shard(1), second = try shard(2)
        let merged = try TranscriptMerge.merge([first, second])
        XCTAssertEqual(merged.filter { $0.hasPrefix("# model") }, ["# model (./models, hash \(b.hash)): \(b.path)"])
        let replay = session()
        XCTAssertEqual(replay.runScript(lines: merged, name: "merged", options: ScriptOptions(check: true)).checked, 2)

        var foreign = second
        foreign.lines = foreign.lines.map { $0.hasPrefix("# model") ? "# model (./models, hash 0123456789): /elsewhere/b.safetensors" : $0 }
        XCTAssertThrowsError(try TranscriptMerge.merge([first, foreign])) { error in
            XCTAssertTrue("\(error)".contains("shard2: its model's hash is 0123456789 where shard1's is \(b.hash)"), "\(error)")
        }
    }
}
