import Foundation
import Imaging
import XCTest

/// `sdrepl gen PROMPT --KEY VALUE … -o PATH` on the fixture model: the same pixels as the script it
/// stands for, a transcript that checks, the session's errors.
final class OneShotTests: XCTestCase {
    private let model = EndToEndTests.diffusersModel

    private func pixels(_ path: String) throws -> [UInt8] {
        try PNGFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), path: path).image.pixels
    }

    func testGenEqualsTheScriptItStandsForAndItsTranscriptChecks() throws {
        let sandbox = Sandbox()
        let gen = try PipeRun(["gen", "a red fox in the snow", "--model", model, "--seed", "5", "--size", "64x64",
                               "--steps", "3", "--sampler=euler", "-n", "2", "-o", "fox.png"], in: sandbox)
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let hashes = imageHashes(gen.stdout)
        XCTAssertEqual(hashes.count, 2, gen.stdout)
        XCTAssertEqual(sandbox.files(in: "").filter { $0.hasPrefix("fox") }, ["fox-1.png", "fox-2.png"])
        XCTAssertEqual(sandbox.files(in: "generated_images"), [], "-o only: no autosaved copies")

        sandbox.write("fox.sdscript", """
            model \(model)
            set seed 5
            set size 64x64
            set steps 3
            set sampler euler
            prompt a red fox in the snow
            gen 2
            save script.png

            """)
        let run = try PipeRun(["run", "fox.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(imageHashes(run.stdout), hashes, "gen and the same settings as a script make the same pixels")
        for index in 1...2 {
            XCTAssertEqual(try pixels(sandbox.path + "/fox-\(index).png"), try pixels(sandbox.path + "/script-\(index).png"))
        }

        let transcripts = sandbox.files(in: "sessions")
        XCTAssertEqual(transcripts.count, 1)
        let path = "sessions/" + (transcripts.first ?? "")
        XCTAssertTrue(gen.stdout.contains("recorded to \(path)"), gen.stdout)
        let text = try String(contentsOfFile: sandbox.path + "/" + path, encoding: .utf8)
        XCTAssertTrue(text.contains("\n# numerics: OpenBLAS "), "the header names what the hashes depend on:\n\(text)")
        XCTAssertTrue(text.contains("\nset autosave off\nset seed 5\nset size 64x64\nset steps 3\nset sampler euler\n"
                                    + "prompt a red fox in the snow\ngen 2\n#=> image 1 seed=5 size=64x64 sha256=\(hashes[0])"), text)
        XCTAssertTrue(text.contains("\nsave fox.png\n#=> saved 1 fox-1.png\n#=> saved 2 fox-2.png\n"), text)
        let check = try PipeRun(["run", "--check", path], in: sandbox)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stderr.contains("check: 2 images matched, 0 mismatched"), check.stderr)
    }

    func testABadValueIsTheSettingsOwnErrorAndAnUnknownFlagIsSuggested() throws {
        let sandbox = Sandbox()
        let before = sandbox.files(in: "")
        let bad = try PipeRun(["gen", "a fox", "--model", model, "--no-record", "--steps", "0", "-o", "fox.png"], in: sandbox)
        XCTAssertEqual(bad.status, 1)
        let script = try PipeRun(["--no-record"], stdin: "set steps 0\n", in: sandbox)
        XCTAssertEqual(script.status, 1)
        XCTAssertEqual("<stdin>:1: " + bad.stderr, script.stderr, "the same one-line error as 'set steps 0'")
        XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
        XCTAssertEqual(imageHashes(bad.stdout), [], "nothing generated after the error")
        XCTAssertEqual(sandbox.files(in: ""), before, "--no-record, nothing saved")

        let typo = try PipeRun(["gen", "a fox", "--model", model, "--sede", "5"], in: sandbox)
        XCTAssertNotEqual(typo.status, 0)
        XCTAssertTrue(typo.stderr.contains("unknown option '--sede'; did you mean '--seed'?"), typo.stderr)
        XCTAssertEqual(sandbox.files(in: ""), before, "refused before a session starts: no transcript")

        let twice = try PipeRun(["gen", "a fox", "--prompt", "a wolf"], in: sandbox)
        XCTAssertNotEqual(twice.status, 0)
        XCTAssertTrue(twice.stderr.contains("one prompt only, got 'a fox' and a --prompt"), twice.stderr)

        let missing = try PipeRun(["gen", "a fox", "--steps"], in: sandbox)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("'--steps' needs a value"), missing.stderr)
    }

    /// `-o` that cannot be written is refused before any work when that can be told (a taken name,
    /// an unknown format); when only writing tells (no permission), the image goes to outdir instead
    /// of being lost.
    func testAnOutputPathThatCannotBeWrittenLosesNoImage() throws {
        let sandbox = Sandbox()
        sandbox.write("taken.png", "")
        for (output, message) in [("taken.png", "-o taken.png: taken.png exists already and images are never overwritten"),
                                  ("fox.gif", "-o fox.gif: sdrepl writes .png or .jpg"),
                                  ("taken.png/fox.png", "-o taken.png/fox.png: taken.png is a file, not a folder"),
                                  ("", "-o needs a file name or a folder, got ''")] {
            let refused = try PipeRun(["gen", "a fox", "--model", model, "--steps", "1", "--size", "64x64", "-o", output], in: sandbox)
            XCTAssertNotEqual(refused.status, 0, output)
            XCTAssertTrue(refused.stderr.contains(message), refused.stderr)
            XCTAssertEqual(imageHashes(refused.stdout), [], "refused before generating")
        }
        // A one-character name (Foundation's deletingLastPathComponent trapped on it).
        let short = try PipeRun(["gen", "a fox", "--model", model, "--steps", "1", "--size", "64x64", "-o", "x"], in: sandbox)
        XCTAssertEqual(short.status, 0, short.stderr)
        XCTAssertTrue(sandbox.files(in: "").contains("x.png") && sandbox.files(in: "").contains("x.jpg"), "\(sandbox.files(in: ""))")
        // Several images are saved as taken-1.png, taken-2.png: taken.png is not in their way.
        let several = try PipeRun(["gen", "a fox", "--model", model, "--steps", "1", "--size", "64x64", "-n", "2", "-o", "taken.png"], in: sandbox)
        XCTAssertEqual(several.status, 0, several.stderr)
        XCTAssertEqual(sandbox.files(in: "").filter { $0.hasPrefix("taken") }, ["taken-1.png", "taken-2.png", "taken.png"])
        // /proc takes no new files, even from root.
        let gen = try PipeRun(["gen", "a fox", "--model", model, "--seed", "2", "--steps", "1", "--size", "64x64", "-o", "/proc/sdrepl-fox.png"],
                              in: sandbox)
        XCTAssertEqual(gen.status, 1)
        XCTAssertEqual(imageHashes(gen.stdout).count, 1, gen.stdout)
        XCTAssertTrue(gen.stdout.contains("sdrepl gen: -o /proc/sdrepl-fox.png could not be written; saving in outdir instead"), gen.stdout)
        XCTAssertEqual(sandbox.files(in: "generated_images").count, 2, "PNG and JPEG in outdir")
    }

    func testHelpListsEverySettingWithItsValues() throws {
        let help = try PipeRun(["gen", "--help"], in: Sandbox())
        XCTAssertEqual(help.status, 0, help.stderr)
        for key in ["prompt", "negative", "style", "seed", "steps", "cfg", "size", "sampler", "batch", "clip-skip",
                    "preview", "outdir", "memory", "styles", "jpeg-quality", "autosave", "lora-dir", "embeddings"] {
            XCTAssertTrue(help.stdout.contains("--\(key) "), "--\(key) in:\n\(help.stdout)")
        }
        XCTAssertTrue(help.stdout.contains("N|random|last"), help.stdout)
        XCTAssertTrue(help.stdout.contains("euler-a"), "the sampler names from the table:\n\(help.stdout)")
    }
}
