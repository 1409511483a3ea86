import Foundation
import Imaging
import TestSupport
import XCTest

/// `grid` and `history sheet` through the real binary on the tiny fixture model: the cells equal
/// `gen`s with the same settings, the sheet is laid out as `LabelledGrid` says with the cells' own
/// pixels and carries every recipe, and an interactive session's transcript of it checks.
final class GridEndToEndTests: XCTestCase {
    private let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path

    private func decode(_ path: String) throws -> DecodedPNG {
        try PNGFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), path: path)
    }

    func testGridCellsEqualSingleGensAndTheSavedSheetCarriesThem() throws {
        let sandbox = Sandbox()
        let setup = "model \(model)\nprompt a red fox in the snow\nset size 64x64\nset steps 4\nset sampler euler\n"
        sandbox.write("grid.sdscript", setup + "grid X=seed:1-2 Y=cfg:3,7\nsave sheet.png\n")
        let run = try PipeRun(["run", "grid.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        var singles = setup
        for (seed, cfg) in [(1, 3), (2, 3), (1, 7), (2, 7)] { singles += "seed \(seed)\nset cfg \(cfg)\ngen\nsave single-\(seed)-\(cfg).png\n" }
        sandbox.write("singles.sdscript", singles)
        let single = try PipeRun(["run", "singles.sdscript"], in: sandbox)
        XCTAssertEqual(single.status, 0, single.stderr)
        let hashes = imageHashes(run.stdout)
        XCTAssertEqual(hashes.count, 4, run.stdout)
        XCTAssertEqual(hashes, imageHashes(single.stdout), "each cell is the gen with its seed and cfg")
        XCTAssertEqual(Set(hashes).count, 4)
        XCTAssertTrue(run.stdout.contains("grid: 4 cells on a "), run.stdout)
        XCTAssertTrue(run.stdout.contains("grid sheet: saved sheet.png"), run.stdout)
        // Autosaved: each cell as gen's images, and the sheet in generated_images/grids.
        XCTAssertEqual(sandbox.files(in: "generated_images").filter { $0.hasSuffix(".png") }.count, 4 + 4)
        XCTAssertEqual(sandbox.files(in: "generated_images/grids").filter { $0.hasSuffix(".png") }.count, 1)

        let sheet = try decode(sandbox.path + "/sheet.png")
        let font = try Font(path: Font.dejaVuSans)
        let cells = try [[(1, 3), (2, 3)], [(1, 7), (2, 7)]].map { row in
            try row.map { try decode(sandbox.path + "/single-\($0.0)-\($0.1).png").image }
        }
        let layout = LabelledGrid(columnLabels: ["Seed: 1", "Seed: 2"], rowLabels: ["CFG Scale: 3", "CFG Scale: 7"],
                                  pages: [.init(cells: cells)], font: font)
        XCTAssertEqual(sheet.image.width, layout.size.width)
        XCTAssertEqual(sheet.image.height, layout.size.height)
        XCTAssertEqual(sheet.image, try layout.render(), "the sheet is the cells' own pixels with the labels")
        // Its recipes: the first cell's as A1111's parameters, every cell's under GridCells.
        XCTAssertTrue(sheet.text("parameters")?.contains("Seed: 1, Size: 64x64, Model hash: ") ?? false, sheet.text("parameters") ?? "none")
        let json = try XCTUnwrap(sheet.text("GridCells"))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        XCTAssertEqual(object["grid"] as? String, "grid X=seed:1,2 Y=cfg:3,7 --yes")
        let listed = try XCTUnwrap(object["cells"] as? [[String: Any]])
        XCTAssertEqual(listed.map { $0["image"] as? Int }, [1, 2, 3, 4])
        XCTAssertEqual(listed.map { $0["labels"] as? [String] }, [["Seed: 1", "CFG Scale: 3"], ["Seed: 2", "CFG Scale: 3"],
                                                                  ["Seed: 1", "CFG Scale: 7"], ["Seed: 2", "CFG Scale: 7"]])
        for (cell, (seed, cfg)) in zip(listed, [(1, 3), (2, 3), (1, 7), (2, 7)]) {
            let parameters = cell["parameters"] as? String ?? ""
            XCTAssertTrue(parameters.contains("Seed: \(seed),") && parameters.contains("CFG scale: \(cfg),"), parameters)
        }
        let info = try PipeRun(["info", "sheet.png"], in: sandbox)
        XCTAssertEqual(info.status, 0, info.stderr)

        // Bad input: one line each, the script stops there, nothing is made.
        sandbox.write("bad.sdscript", setup + "grid X=sed:1-2\n")
        let bad = try PipeRun(["run", "bad.sdscript"], in: sandbox)
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("bad.sdscript:6: grid: unknown axis"), bad.stderr)
        XCTAssertTrue(bad.stderr.contains("(did you mean 'seed'?)"), bad.stderr)
        sandbox.write("big.sdscript", setup + "grid X=seed:1-17\n")
        let big = try PipeRun(["run", "big.sdscript"], in: sandbox)
        XCTAssertEqual(big.status, 1)
        XCTAssertTrue(big.stderr.contains("big.sdscript:6: grid: 17 cells are more than 16: add --yes to the line to make them all"), big.stderr)
        XCTAssertEqual(imageHashes(big.stdout), [])
    }

    /// Lines pasted with the answer to the question run next, in order, and do not answer the next
    /// question (they stayed in the answer's reader, unseen by the line editor).
    func testLinesPastedWithTheAnswerRunNext() throws {
        let sandbox = Sandbox()
        let terminal = try PseudoTerminal(["--model", model, "--no-record"], in: sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.expect("sd> ")
        for line in ["set size 64x64", "set steps 1", "set preview off"] {
            terminal.type(line + "\r")
            terminal.expect("sd> ")
        }
        // One paste: the command, its answer, and more.
        terminal.paste("grid X=seed:1-17\ry\rhelp seed\rgrid X=seed:1-17\r")
        terminal.expect("grid: 17 cells on a ", timeout: 60)
        terminal.expect("usage: seed", timeout: 10)
        answerTheQuestionWaitsForThenQuit(terminal)
    }

    /// The 17-cell question is asked and waits for its answer, which is no; then the session ends.
    private func answerTheQuestionWaitsForThenQuit(_ terminal: PseudoTerminal, file: StaticString = #filePath, line: UInt = #line) {
        terminal.expect("grid: make 17 cells? [y/N] ", timeout: 30)
        terminal.settle(1)
        XCTAssertFalse(terminal.transcript.hasSuffix("nothing made"), "the question waits for its own answer", file: file, line: line)
        terminal.type("n\r")
        terminal.expect("were not confirmed; nothing made", timeout: 10)
        terminal.expect("sd> ")
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0, file: file, line: line)
    }

    /// Ctrl-C or Ctrl-D at the question is "no", and the next question waits for its own answer
    /// (Swift's readLine spun forever after an interrupted read, and glibc's end-of-file flag answered
    /// every later question at once).
    func testCtrlCAndCtrlDAtTheQuestionAreNoAndTheNextQuestionWaits() throws {
        let sandbox = Sandbox()
        let terminal = try PseudoTerminal(["--model", model, "--no-record"], in: sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.expect("sd> ")
        for key in ["\u{03}", "\u{04}"] {
            terminal.type("grid X=seed:1-17\r")
            terminal.expect("grid: make 17 cells? [y/N] ", timeout: 30)
            terminal.settle()
            terminal.type(key)
            terminal.expect("were not confirmed; nothing made", timeout: 10)
            terminal.expect("sd> ")
        }
        terminal.type("grid X=seed:1-17\r")
        answerTheQuestionWaitsForThenQuit(terminal)
        XCTAssertEqual(terminal.transcript.components(separatedBy: "were not confirmed").count, 4, terminal.transcript)
    }

    func testAnInteractiveGridIsOneSixelAndItsTranscriptChecks() throws {
        let sandbox = Sandbox()
        let terminal = try PseudoTerminal(["--model", model], in: sandbox, da1Reply: "\u{1B}[?62;4;22c")
        terminal.expect("sd> ")
        for line in ["prompt a red fox in the snow", "set size 64x64", "set steps 4", "set autosave off"] {
            terminal.type(line + "\r")
            terminal.expect("sd> ")
        }
        terminal.type("grid X=seed:1-17\r")
        terminal.expect("grid: make 17 cells? [y/N] ", timeout: 30)
        terminal.type("n\r")
        terminal.expect("were not confirmed; nothing made", timeout: 10)
        terminal.expect("sd> ")
        let before = terminal.transcript.components(separatedBy: "\u{1B}P").count
        terminal.type("grid X=seed:1-2 Y=cfg:3,7\r")
        terminal.expect("image 4: seed 2", timeout: 120)
        terminal.expect("grid: 4 cells on a ", timeout: 30)
        terminal.expect("\u{1B}\\", timeout: 30)
        terminal.expect("sd> ")
        XCTAssertEqual(terminal.transcript.components(separatedBy: "\u{1B}P").count - before, 1, "one sixel: the sheet")
        terminal.type("history sheet\r")
        terminal.expect("history: 4 images on a ", timeout: 30)
        terminal.expect("\u{1B}\\", timeout: 30)
        terminal.expect("sd> ")
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0)

        let transcripts = sandbox.files(in: "sessions")
        XCTAssertEqual(transcripts.count, 1)
        let path = "sessions/" + (transcripts.first ?? "")
        let text = try String(contentsOfFile: sandbox.path + "/" + path, encoding: .utf8)
        XCTAssertTrue(text.contains("\ngrid X=seed:1,2 Y=cfg:3,7 --yes\n#=> image 1 seed=1 size=64x64 sha256="), text)
        XCTAssertTrue(text.contains("# grid X=seed:1-17\n# error: grid: 17 cells"), text)
        let check = try PipeRun(["run", "--check", path], in: sandbox)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stderr.contains("check: 4 images matched, 0 mismatched"), check.stderr)
    }
}

extension GridEndToEndTests {
    /// Ctrl-C during the second cell: the first is kept and on the sheet, the transcript records
    /// `--cells 1`, and its replay checks.
    func testCtrlCKeepsTheFinishedCellsAndTheTranscriptReplaysThem() throws {
        let sandbox = Sandbox()
        let terminal = try PseudoTerminal(["--model", model], in: sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.expect("sd> ")
        for line in ["prompt a fox", "seed 3", "set size 256x256", "set sampler euler", "set autosave off"] {
            terminal.type(line + "\r")
            terminal.expect("sd> ")
        }
        terminal.type("grid X=steps:2,1000\r")
        terminal.expect("image 1: seed 3, 256x256", timeout: 120)
        terminal.expect("image 2/2 [", timeout: 60)
        terminal.type("\u{03}")
        terminal.expect("grid: 1 cell on a ", timeout: 60)
        terminal.expect("grid: cancelled after 1 of 2 cells; the finished cells are kept and on the sheet", timeout: 30)
        terminal.expect("sd> ")
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0)
        let path = "sessions/" + (sandbox.files(in: "sessions").first ?? "")
        let text = try String(contentsOfFile: sandbox.path + "/" + path, encoding: .utf8)
        XCTAssertTrue(text.contains("\ngrid X=steps:2,1000 --yes --cells 1 # grid X=steps:2,1000, stopped: grid: cancelled after 1 of 2 cells"), text)
        let check = try PipeRun(["run", "--check", path], in: sandbox)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stderr.contains("check: 1 image matched, 0 mismatched"), check.stderr)
    }
}
