import Diffusion
import Foundation
import XCTest

/// The real `sdrepl` binary with pipes: `sdrepl < FILE`, `sdrepl run FILE`, exit codes and messages.
final class ScriptModeTests: XCTestCase {
    func testStandardInputIsAScriptStoppingAtTheFirstError() throws {
        let sandbox = Sandbox()
        let run = try PipeRun([], stdin: "prompt a fox\nset stpes 30\nset steps 40\n", in: sandbox)
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr, "<stdin>:2: set: unknown setting 'stpes' (did you mean 'steps'?)\n")
        XCTAssertEqual(run.stdout, "")
        XCTAssertEqual(sandbox.files(in: "sessions"), [], "scripts are not recorded")
    }

    func testStandardInputScriptWritesPlainTextOnly() throws {
        let sandbox = Sandbox()
        let run = try PipeRun([], stdin: "help\nset\nquit\nset steps 0\n", in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("gen [N]"))
        XCTAssertTrue(run.stdout.contains("preview         auto (off: stdout is not a terminal)"))
        XCTAssertFalse((run.stdout + run.stderr).contains("\u{1B}"))
    }

    func testRunNamesFileAndLineAndKeepGoingReportsAll() throws {
        let sandbox = Sandbox()
        sandbox.write("bad.sdscript", "# a tour\nset sampler eulr a\nset size 500x500\nset steps 9\n")
        let stopping = try PipeRun(["run", "bad.sdscript"], in: sandbox)
        XCTAssertEqual(stopping.status, 1)
        XCTAssertEqual(stopping.stderr, "bad.sdscript:2: set sampler: unknown sampler 'eulr a' (did you mean 'euler-a'?)\n")

        let going = try PipeRun(["run", "--keep-going", "bad.sdscript"], in: sandbox)
        XCTAssertEqual(going.status, 1)
        XCTAssertEqual(going.stderr, """
            bad.sdscript:2: set sampler: unknown sampler 'eulr a' (did you mean 'euler-a'?)
            bad.sdscript:3: set size: width and height must be multiples of 8 from 64 to 2048, got '500x500'

            """)
    }

    func testKeepGoingWorksForAScriptOnStandardInput() throws {
        let sandbox = Sandbox()
        let run = try PipeRun(["--keep-going"], stdin: "set stpes 3\nset steps 0\nset steps 9\nset\n", in: sandbox)
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr, """
            <stdin>:1: set: unknown setting 'stpes' (did you mean 'steps'?)
            <stdin>:2: set steps: expected a whole number from 1 to 1000, got '0'

            """)
        XCTAssertTrue(run.stdout.contains("steps           9   (changed)"), run.stdout)
    }

    func testRunOfAGoodScriptAndAMissingFile() throws {
        let sandbox = Sandbox()
        sandbox.write("good.sdscript", "prompt a fox, (snow:1.2)\nnegative blurry # of course\nset steps 30\nset\n")
        let good = try PipeRun(["run", "good.sdscript"], in: sandbox)
        XCTAssertEqual(good.status, 0, good.stderr)
        XCTAssertTrue(good.stdout.contains("negative        blurry # of course   (changed)"), good.stdout)
        let missing = try PipeRun(["run", "nope.sdscript"], in: sandbox)
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.stderr, "run: nope.sdscript: no such file or folder\n")
    }

    /// A script saved by a Windows editor: CRLF line endings and a UTF-8 byte-order mark. Both
    /// `sdrepl run FILE` and `sdrepl < FILE` run all of it, on the fixture model.
    func testACRLFScriptWithAByteOrderMarkRunsFromAFileAndFromStandardInput() throws {
        let sandbox = Sandbox()
        let text = "prompt crlf test\r\nset steps 4\r\nset size 64x64\r\nseed 5\r\nset autosave off\r\ngen\r\n"
        let bytes = Data([0xEF, 0xBB, 0xBF] + Array(text.utf8))
        try bytes.write(to: URL(fileURLWithPath: sandbox.path + "/crlf.sdscript"))
        let run = try PipeRun(["run", "--model", EndToEndTests.diffusersModel, "crlf.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        // "image 1: seed 5, 64x64, 0.08 s, sha256 <16 hex digits>…": the hash, not the time it took.
        let images = { (stdout: String) in
            stdout.split(separator: "\n").filter { $0.hasPrefix("image 1: seed 5, 64x64, ") }.compactMap { line in
                line.range(of: "sha256 ").map { line[$0.upperBound...].prefix(16) }
            }
        }
        XCTAssertEqual(images(run.stdout).count, 1, run.stdout + run.stderr)

        let piped = try PipeRun(["--model", EndToEndTests.diffusersModel], stdin: "\u{FEFF}" + text, in: sandbox)
        XCTAssertEqual(piped.status, 0, piped.stderr)
        XCTAssertEqual(images(piped.stdout), images(run.stdout), piped.stdout)
    }

    /// File errors are one clean line naming the path as given: never Foundation's "The operation
    /// could not be completed. (NSCocoaErrorDomain error 256.)" or "The file doesn’t exist..".
    func testFileErrorsAreOneCleanLine() throws {
        let sandbox = Sandbox()
        try FileManager.default.createDirectory(atPath: sandbox.path + "/somedir", withIntermediateDirectories: true)
        try Data([0xFF, 0xFE, 0x00, 0x80, 0x0A]).write(to: URL(fileURLWithPath: sandbox.path + "/binary.csv"))
        let folder = try PipeRun(["info", "somedir"], in: sandbox)
        XCTAssertEqual(folder.status, 1)
        XCTAssertEqual(folder.stderr, "sdrepl info: somedir: is a folder, not a file\n")
        let missing = try PipeRun(["info", "nothing.png"], in: sandbox)
        XCTAssertEqual(missing.stderr, "sdrepl info: nothing.png: no such file or folder\n")

        sandbox.write("s.sdscript", "load somedir\nload nonexist.png\nset styles somedir\nset styles binary.csv\nrun somedir\nrun binary.csv\n")
        let run = try PipeRun(["run", "--keep-going", "s.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr, """
            s.sdscript:1: load: somedir: is a folder, not a file
            s.sdscript:2: load: nonexist.png: no such file or folder
            s.sdscript:3: set styles: \(sandbox.path)/somedir: is a folder, not a file
            s.sdscript:4: set styles: \(sandbox.path)/binary.csv: not UTF-8 text
            s.sdscript:5: run: \(sandbox.path)/somedir: is a folder, not a file
            s.sdscript:6: run: \(sandbox.path)/binary.csv: not UTF-8 text; a script is a text file of commands

            """)
    }

    /// Text that comes back to the terminal (a typed line in an error, a prompt in `history`, a
    /// recipe from `info`) shows control characters escaped, so a line cannot retitle the window,
    /// clear the screen or ring the bell.
    func testControlCharactersAreEscapedInEverythingEchoed() throws {
        let sandbox = Sandbox()
        let typed = try PipeRun([], stdin: "foo\u{1B}]0;PWNED\u{07}\n", in: sandbox)
        XCTAssertEqual(typed.status, 1)
        XCTAssertEqual(typed.stderr, "<stdin>:1: unknown command 'foo\\e]0;PWNED\\x07'; type 'help' for the list\n")

        let script = """
            prompt a \u{1B}[31mred\u{1B}[0m fox\u{9B}2J
            set size 64x64
            set steps 2
            seed 3
            set autosave off
            gen
            save fox.png
            history

            """
        let run = try PipeRun(["--model", EndToEndTests.diffusersModel], stdin: script, in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("prompt \"a \\e[31mred\\e[0m fox\\u{9B}2J\""), run.stdout)
        let info = try PipeRun(["info", "fox.png"], in: sandbox)
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertTrue(info.stdout.hasPrefix("a \\e[31mred\\e[0m fox\\u{9B}2J\n"), info.stdout)
        for output in [typed.stderr, run.stdout, run.stderr, info.stdout] {
            XCTAssertFalse(output.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" || (0x7F...0x9F).contains($0.value) },
                           output.debugDescription)
        }

        // A binary file is not a script.
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0xFF, 0x00]).write(to: URL(fileURLWithPath: sandbox.path + "/image.sdscript"))
        let binary = try PipeRun(["run", "image.sdscript"], in: sandbox)
        XCTAssertEqual(binary.status, 1)
        XCTAssertEqual(binary.stderr, "run: image.sdscript: not UTF-8 text; a script is a text file of commands\n")
    }

    func testCheckNamesTheLineOfAResultThatCannotBeVerified() throws {
        let sandbox = Sandbox()
        let hash = String(repeating: "a", count: 64)
        sandbox.write("t.sdscript", "prompt x\n#=> image 1 seed=5 size=512x512 sha256=\(hash)\n")
        let run = try PipeRun(["run", "--check", "t.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr, """
            t.sdscript:2: check: image 1: recorded, but the command before made 0 images
            check: 0 images matched, 1 mismatched

            """)
    }

    func testGenWithoutAModelSaysWhereItLookedAndHowToGetOne() throws {
        let sandbox = Sandbox()
        let run = try PipeRun([], stdin: "prompt a fox\ngen\n", in: sandbox)
        XCTAssertEqual(run.status, 1)
        XCTAssertTrue(run.stderr.hasPrefix("<stdin>:2: gen: no Stable Diffusion 1.5 model found. sdrepl looked in:\n"), run.stderr)
        XCTAssertTrue(run.stderr.contains("$SDREPL_MODEL (not set)"), run.stderr)
        XCTAssertTrue(run.stderr.contains("\(sandbox.path)/models/"), run.stderr)
        XCTAssertTrue(run.stderr.contains("\(sandbox.path)/hf/hub/models--stable-diffusion-v1-5--stable-diffusion-v1-5"), run.stderr)
        XCTAssertTrue(run.stderr.contains("\(sandbox.path)/home/.cache/huggingface/hub/models--runwayml--stable-diffusion-v1-5"), run.stderr)
        XCTAssertTrue(run.stderr.contains("model download"), run.stderr)
    }

    func testVersionHelpAndBadModelOption() throws {
        let sandbox = Sandbox()
        let version = try PipeRun(["--version"], in: sandbox)
        XCTAssertEqual(version.stdout, SDReplVersion.string + "\n")
        let help = try PipeRun(["--help"], in: sandbox)
        XCTAssertTrue(help.stdout.contains("run"), help.stdout)
        XCTAssertTrue(help.stdout.contains("--model <PATH>"), help.stdout)
        let bad = try PipeRun(["--model", "/nonexistent.safetensors"], in: sandbox)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--model /nonexistent.safetensors: no such file or folder"), bad.stderr)
    }

    /// `save DIR/` (or `save DIR` for a folder that exists) saves into that folder under the names
    /// outdir's images get, instead of writing `DIR.png` beside it and reporting `DIR/.png`.
    func testSaveIntoAFolderNamesTheImageAsOutdirDoes() throws {
        let sandbox = Sandbox()
        try FileManager.default.createDirectory(atPath: sandbox.path + "/kept", withIntermediateDirectories: true)
        sandbox.write("s.sdscript", """
            model \(EndToEndTests.diffusersModel)
            set size 64x64
            set steps 1
            set autosave off
            seed 1
            prompt a red fox
            gen
            save picks/
            save kept
            save picks/

            """)
        let run = try PipeRun(["run", "--no-record", "s.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        let picks = sandbox.files(in: "picks"), kept = sandbox.files(in: "kept")
        XCTAssertEqual(picks.count, 4, "two saves, PNG and JPEG each: \(picks)")
        XCTAssertEqual(Set(picks.map { ($0 as NSString).pathExtension }), ["png", "jpg"])
        XCTAssertTrue(picks.allSatisfy { $0.contains("_s1_a-red-fox") }, "named as outdir names them: \(picks)")
        XCTAssertEqual(kept.count, 2, "\(kept)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: sandbox.path + "/picks.png"))
        for name in picks { XCTAssertTrue(run.stdout.contains("picks/" + name), run.stdout) }
        for name in kept { XCTAssertTrue(run.stdout.contains("kept/" + name), run.stdout) }
    }
}
