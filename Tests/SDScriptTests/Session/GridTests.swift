import Foundation
import Imaging
@testable import SDScript
import TestSupport
import XCTest

/// `grid`'s axes and ranges (against numpy's arange/linspace, which A1111's X/Y/Z plot expands them
/// with), its cells on the test doubles, its errors and its transcript.
final class GridTests: XCTestCase {
    private func values(_ text: String, _ kind: GridAxisKind) throws -> [String] {
        try GridAxis.parse(kind: kind, text: text, axis: "X").values
    }

    func testRangesAsA1111ExpandsThem() throws {
        XCTAssertEqual(try values("1-4", .seed), ["1", "2", "3", "4"])
        XCTAssertEqual(try values("3,7", .cfg), ["3", "7"])
        // np.arange(5, 9 + 2, 2) -> [5, 7, 9]
        XCTAssertEqual(try values("5-9:2", .cfg), ["5", "7", "9"])
        // A1111's spelling of a step: "1-10 (+3)" -> list(range(1, 10 + 1, 3))
        XCTAssertEqual(try values("1-10 (+3)", .seed), ["1", "4", "7", "10"])
        // np.linspace(1, 2, num=5).tolist() -> [1.0, 1.25, 1.5, 1.75, 2.0]
        XCTAssertEqual(try values("1-2 [5]", .cfg), ["1", "1.25", "1.5", "1.75", "2"])
        // np.linspace(1, 10, num=4).astype(int) -> [1, 4, 7, 10]
        XCTAssertEqual(try values("1-10 [4]", .steps), ["1", "4", "7", "10"])
        // Steps of 0.1 from the start, not accumulated: np.arange(0.3, 0.7 + 0.1, 0.1).round(6)
        XCTAssertEqual(try values("0.3-0.7:0.1", .strength), ["0.3", "0.4", "0.5", "0.6", "0.7"])
        XCTAssertEqual(try values("4-1", .seed), ["4", "3", "2", "1"], "downwards when the end is smaller")
        XCTAssertEqual(try values("1-3, 10", .seed), ["1", "2", "3", "10"], "ranges and values mixed")
        XCTAssertEqual(try values("euler, dpmpp-2m", .sampler), ["euler", "dpmpp-2m"])
        XCTAssertThrowsError(try values("5-9:0", .cfg)) { XCTAssertTrue("\($0)".contains("step"), "\($0)") }
        XCTAssertThrowsError(try values("1-9:-2", .seed)) { XCTAssertTrue("\($0)".contains("away from the range's end"), "\($0)") }
        XCTAssertThrowsError(try values("1.5-3", .seed)) { XCTAssertTrue("\($0)".contains("whole numbers"), "\($0)") }
        // Seeds up to 2^64 − 1, exactly: list(range(18446744073709551613, 18446744073709551615 + 1))
        XCTAssertEqual(try values("18446744073709551613-18446744073709551615", .seed),
                       ["18446744073709551613", "18446744073709551614", "18446744073709551615"])
        // Numbers past any range a setting takes are one line, not a crash.
        for huge in ["1-10000000000000000000", "1-99999999999999999999", "1-" + String(repeating: "9", count: 300),
                     "1-" + String(repeating: "9", count: 300) + " [3]", "0-1:0." + String(repeating: "0", count: 300) + "1"] {
            for kind in [GridAxisKind.seed, .steps, .cfg] {
                XCTAssertThrowsError(try values(huge, kind), "\(huge) \(kind)") { error in
                    XCTAssertTrue(["too large", "more than 1000 values", "whole-number step"].contains { "\(error)".contains($0) }, "\(error)")
                }
            }
        }
    }

    /// Each `-1` on a seed axis is a seed of its own (A1111's fix_axis_seeds), recorded concretely;
    /// the last seed and 0 are two cells, not one batch past 2^64 − 1; a sheet past 200
    /// megapixels is refused before any cell.
    func testRandomSeedsOnTheAxisTheLastSeedAndTheSheetsSize() throws {
        let folder = TemporaryFolder()
        let recorder = try TranscriptRecorder(directory: folder.path)
        let session = makeSession(transcript: recorder, seeds: [11, 22, 33])
        for line in ["prompt a fox", "set size 64x64", "grid X=seed:-1,5,random"] { XCTAssertEqual(session.execute(line), .ok, line) }
        XCTAssertEqual(session.images.map(\.request.engine.seed), [11, 5, 22])
        XCTAssertEqual(recorder.lines.last { $0.hasPrefix("grid") }, "grid X=seed:11,5,22 --yes")
        XCTAssertEqual(session.execute("grid X=seed:18446744073709551615,0"), .ok)
        XCTAssertEqual(session.images.suffix(2).map(\.request.engine.seed), [UInt64.max, 0])
        XCTAssertEqual(session.execute("set size 2048x2048"), .ok)
        XCTAssertEqual(session.execute("grid X=seed:1-10 Y=cfg:1-5 --yes").failure?.description,
                       "grid: its sheet would be at least 20480x10240, 210 megapixels, more than 200 (A1111's limit too); "
                       + "use fewer values or a smaller size")
    }

    /// In draft mode a grid still renders each cell's own settings, and says so.
    func testAGridInDraftModeSaysItRendersYourOwnSettings() throws {
        let io = BufferIO()
        let session = makeSession(io: io)
        session.settings.resources.draft = try DraftPreset(text: "lora=lcm:1 sampler=lcm steps=4 cfg=1")
        for line in ["prompt a fox", "set size 64x64", "set steps 3", "grid X=seed:1,2"] { XCTAssertEqual(session.execute(line), .ok, line) }
        XCTAssertTrue(io.lines.contains { $0.hasPrefix("grid: the cells use your own settings, not draft mode's") }, "\(io.lines)")
        XCTAssertEqual(session.images.map(\.request.engine.steps), [3, 3])
    }

    /// ` #` starts a comment on a grid line, as on any line of words, but not inside a quoted value.
    func testAQuotedValueMayHoldAHash() throws {
        XCTAssertEqual(#"X=sr:fox,"wolf #2" # two cells"#.droppingTrailingComment(), #"X=sr:fox,"wolf #2""#)
        XCTAssertEqual(#"X=sr:fox #1,wolf"#.droppingTrailingComment(), "X=sr:fox")
        let session = makeSession()
        XCTAssertEqual(session.execute(#"prompt a fox"#), .ok)
        XCTAssertEqual(session.execute("set size 64x64"), .ok)
        XCTAssertEqual(session.execute(#"grid X=sr:fox,"wolf #2" # a comment"#), .ok)
        XCTAssertEqual(session.images.map(\.request.engine.prompt), ["a fox", "a wolf #2"])
    }

    func testPromptSRValuesAreCSV() throws {
        // list(csv.reader(StringIO('"red, fox",grey wolf, "say ""hi"""'), skipinitialspace=True))[0]
        // -> ['red, fox', 'grey wolf', 'say "hi"']
        XCTAssertEqual(try GridAxis.splitCSV(#""red, fox",grey wolf, "say ""hi""""#, axis: "X"), ["red, fox", "grey wolf", #"say "hi""#])
        XCTAssertThrowsError(try GridAxis.splitCSV(#""red, fox"#, axis: "X")) { XCTAssertTrue("\($0)".contains("not closed"), "\($0)") }
    }

    func testTheLineSplitsAtAxesNotAtBlanksInValues() throws {
        let spec = try GridSpec.parse(#"X=sr:red fox,grey wolf y=seed:1-2 Z=cfg:"3",7 --yes --cells 3"#)
        XCTAssertEqual(spec.x, GridAxis(kind: .sr, values: ["red fox", "grey wolf"]))
        XCTAssertEqual(spec.y, GridAxis(kind: .seed, values: ["1", "2"]))
        XCTAssertEqual(spec.z, GridAxis(kind: .cfg, values: ["3", "7"]))
        XCTAssertTrue(spec.confirmed)
        XCTAssertEqual(spec.cellLimit, 3)
        XCTAssertEqual(spec.cellCount, 8)
        XCTAssertEqual(spec.replayLine(), "grid X=sr:red fox,grey wolf Y=seed:1,2 Z=cfg:3,7 --yes --cells 3")
        XCTAssertEqual(try GridSpec.parse(String(spec.replayLine().dropFirst("grid ".count))), spec, "the replayed line reads back the same")
        let quoted = try GridSpec.parse(#"X=sr:"a, b",c"#)
        XCTAssertEqual(quoted.replayLine(), #"grid X=sr:"a, b",c --yes"#)
        XCTAssertEqual(try GridSpec.parse(String(quoted.replayLine().dropFirst("grid ".count))).x, quoted.x)
        // Values that hold an option or another axis are quoted, so the replay reads them back whole.
        let options = try GridSpec.parse(#"X=sr:fox,"fox --v2","fox y=3""#)
        XCTAssertEqual(options.x.values, ["fox", "fox --v2", "fox y=3"])
        XCTAssertEqual(try GridSpec.parse(String(options.replayLine().dropFirst("grid ".count))).x, options.x)
    }

    func testBadLinesAreOneLineErrors() {
        func message(_ line: String) -> String {
            do {
                _ = try GridSpec.parse(line)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(message("X=sed:1-2"), "grid: unknown axis (seed, cfg, steps, sampler, size, strength, lora, sr) 'sed' (did you mean 'seed'?)")
        XCTAssertTrue(message("Y=seed:1-2").contains("no X axis"), message("Y=seed:1-2"))
        XCTAssertTrue(message("X=seed:1-2 Z=cfg:3").contains("a Z axis needs a Y axis"))
        XCTAssertTrue(message("X=seed:1-2 Y=seed:3").contains("the same axis twice"))
        XCTAssertTrue(message("X=seed").contains("no values; expected X=seed:1-4"), message("X=seed"))
        XCTAssertTrue(message("X=seed:1-2 --yse").contains("did you mean '--yes'"), message("X=seed:1-2 --yse"))
        XCTAssertTrue(message("X=seed:1-40 Y=cfg:1-30").contains("at most 1000 cells"))
        XCTAssertEqual(message(""), "grid: missing argument; usage: \(GridSpec.usage)")
    }

    func testCellsAreGeneratedInBatchesOfConsecutiveSeedsAndKept() throws {
        let io = BufferIO()
        let loader = CountingLoader()
        let session = makeSession(io: io, loader: loader)
        for line in ["prompt a red fox", "set size 64x64", "set steps 2", "set autosave off"] {
            XCTAssertEqual(session.execute(line), .ok)
        }
        XCTAssertEqual(session.execute("grid X=seed:1-2 Y=cfg:3,7"), .ok, io.diagnostics.joined())
        XCTAssertEqual(session.images.map(\.request.engine.seed), [1, 2, 1, 2])
        XCTAssertEqual(session.images.map(\.request.engine.guidanceScale), [3, 3, 7, 7])
        XCTAssertEqual(session.lastBatch, [0, 1, 2, 3])
        let generator = loader.generator
        XCTAssertEqual(generator.batches.map(\.batchCount), [2, 2], "one engine batch per row: the text is encoded once")
        let sheet = try XCTUnwrap(session.history.sheet)
        XCTAssertEqual(sheet.cells.map(\.index), [1, 2, 3, 4])
        XCTAssertEqual(sheet.cells[3].labels, ["Seed: 2", "CFG Scale: 7"])
        XCTAssertTrue(sheet.cells[3].parameters.contains("Seed: 2"), sheet.cells[3].parameters)
        XCTAssertTrue(sheet.cellsJSON.contains(#""grid":"grid X=seed:1,2 Y=cfg:3,7 --yes""#), sheet.cellsJSON)
        XCTAssertTrue(io.lines.contains { $0.hasPrefix("grid: 4 cells on a ") }, io.lines.joined(separator: "\n"))
        // The settings are as they were.
        XCTAssertEqual(session.settings.request.cfg, 7.5)
        // Another command that makes images forgets the sheet.
        XCTAssertEqual(session.execute("gen"), .ok)
        XCTAssertNil(session.history.sheet)
    }

    func testAxesChangeTheRequestAsTheirSettingsDo() throws {
        let io = BufferIO()
        let session = makeSession(io: io)
        // The grid finds and reads each LoRA a cell names before the first cell.
        let folder = TemporaryFolder()
        try FileManager.default.copyItem(atPath: FixturePaths.root.appendingPathComponent("lora/tiny-lora.safetensors").path,
                                         toPath: folder.path + "/ink.safetensors")
        for line in ["set lora-dir \(folder.path)", "prompt a red fox <lora:ink:0.5>", "negative blurry fox", "seed 9", "set steps 2", "set autosave off"] {
            XCTAssertEqual(session.execute(line), .ok)
        }
        XCTAssertEqual(session.execute("grid X=sr:fox,grey wolf Y=size:64x64,64x96"), .ok, io.diagnostics.joined())
        XCTAssertEqual(session.images.map(\.request.engine.prompt),
                       ["a red fox <lora:ink:0.5>", "a red grey wolf <lora:ink:0.5>", "a red fox <lora:ink:0.5>", "a red grey wolf <lora:ink:0.5>"])
        XCTAssertEqual(session.images[1].request.engine.negativePrompt, "blurry grey wolf")
        XCTAssertEqual(session.images.map(\.pixels.height), [64, 64, 96, 96])
        XCTAssertEqual(Set(session.images.map(\.request.engine.seed)), [9])
        XCTAssertEqual(session.execute("grid X=lora:0.25,1 Y=sampler:euler,dpmpp-2m"), .ok, io.diagnostics.joined())
        XCTAssertEqual(session.images.suffix(4).map(\.request.engine.prompt),
                       ["a red fox <lora:ink:0.25>", "a red fox <lora:ink:1>", "a red fox <lora:ink:0.25>", "a red fox <lora:ink:1>"])
        XCTAssertEqual(session.images.suffix(4).map(\.request.engine.sampler.rawValue), ["euler", "euler", "dpmpp-2m", "dpmpp-2m"])
    }

    func testBadValuesGetTheSettingsOwnMessageAndNothingIsMade() {
        let io = BufferIO()
        let session = makeSession(io: io)
        for line in ["prompt x", "set steps 2", "set autosave off"] { _ = session.execute(line) }
        _ = session.execute("set cfg 99")
        let setMessage = io.diagnostics.last ?? ""
        _ = session.execute("grid X=cfg:3,99")
        XCTAssertEqual(io.diagnostics.last, setMessage.replacingOccurrences(of: "set cfg:", with: "grid X=cfg:"))
        _ = session.execute("grid X=seed:1 Y=sampler:eulr")
        XCTAssertTrue(io.diagnostics.last?.contains("grid Y=sampler: unknown sampler 'eulr' (did you mean 'euler'?)") ?? false, io.diagnostics.last ?? "")
        _ = session.execute("grid X=sr:wolf,fox")
        XCTAssertTrue(io.diagnostics.last?.contains("neither the prompt nor the negative prompt contains 'wolf'") ?? false, io.diagnostics.last ?? "")
        _ = session.execute("grid X=strength:0.5")
        XCTAssertTrue(io.diagnostics.last?.contains("set an init image first") ?? false, io.diagnostics.last ?? "")
        _ = session.execute("grid X=lora:0.5")
        XCTAssertTrue(io.diagnostics.last?.contains("the prompt has 0") ?? false, io.diagnostics.last ?? "")
        // A request only the engine refuses, in the second cell: refused before the first is made.
        for line in ["set hires 96x96", "set hires-strength 0.5"] { XCTAssertEqual(session.execute(line), .ok, line) }
        _ = session.execute("grid X=steps:2,600")
        XCTAssertEqual(io.diagnostics.last, "grid: the cell Steps: 600: hires strength 0.5 with 600 second-pass steps needs a 1200-step "
                       + "schedule, over 1000: raise hires strength or lower hires steps; nothing was made")
        // A LoRA that only the second cell's prompt names, and that is not there: refused before the first cell.
        let folder = TemporaryFolder()
        try? FileManager.default.copyItem(atPath: FixturePaths.root.appendingPathComponent("lora/tiny-lora.safetensors").path,
                                          toPath: folder.path + "/ink.safetensors")
        for line in ["unset hires", "set lora-dir \(folder.path)", "prompt a fox <lora:ink:1>"] { XCTAssertEqual(session.execute(line), .ok, line) }
        _ = session.execute("grid X=sr:ink,inc")
        XCTAssertTrue(io.diagnostics.last?.hasPrefix("grid: the cell ") ?? false, io.diagnostics.last ?? "")
        XCTAssertTrue(io.diagnostics.last?.contains(": no LoRA named 'inc' in \(folder.path), ") ?? false, io.diagnostics.last ?? "")
        XCTAssertTrue(io.diagnostics.last?.hasSuffix(" (did you mean 'ink'?); nothing was made") ?? false, io.diagnostics.last ?? "")
        XCTAssertEqual(session.images.count, 0)
    }

    func testMoreThanSixteenCellsNeedYesInAScriptAndAnAnswerAtThePrompt() throws {
        let folder = TemporaryFolder()
        let io = BufferIO()
        let session = makeSession(io: io)
        for line in ["prompt x", "set size 64x64", "set steps 1", "set autosave off"] { _ = session.execute(line) }
        // Typed: the test double cannot answer, which is no.
        XCTAssertNotEqual(session.execute("grid X=seed:1-17"), .ok)
        XCTAssertTrue(io.diagnostics.last?.contains("17 cells are more than 16 and were not confirmed; nothing made") ?? false, io.diagnostics.last ?? "")
        let script = folder.write("g.sdscript", "prompt x\nset size 64x64\nset steps 1\nset autosave off\ngrid X=seed:1-17\n")
        let failed = session.runScript(at: script, options: ScriptOptions())
        XCTAssertTrue(failed.errors.first?.description.contains("17 cells are more than 16: add --yes to the line to make them all") ?? false,
                      "\(failed.errors)")
        XCTAssertEqual(session.images.count, 0)
        XCTAssertEqual(session.execute("grid X=seed:1-17 --yes"), .ok)
        XCTAssertEqual(session.images.count, 17)
    }

    func testACancelledGridKeepsItsCellsAndIsRecordedAsThem() throws {
        let folder = TemporaryFolder()
        let recorder = try TranscriptRecorder(directory: folder.path)
        let io = BufferIO()
        let session = makeSession(io: io, transcript: recorder)
        for line in ["prompt x", "set size 64x64", "set steps 2", "seed 5", "set autosave off"] { _ = session.execute(line) }
        io.interruptAfter = 5  // first step of the third cell
        XCTAssertNotEqual(session.execute("grid X=cfg:3,5 Y=steps:2,3"), .ok)
        XCTAssertEqual(session.images.count, 2)
        XCTAssertEqual(io.diagnostics.last, "grid: cancelled after 2 of 4 cells; the finished cells are kept and on the sheet")
        XCTAssertEqual(session.history.sheet?.cells.count, 2)
        let text = try String(contentsOfFile: recorder.path, encoding: .utf8)
        XCTAssertTrue(text.contains("grid X=cfg:3,5 Y=steps:2,3 --yes --cells 2 # grid X=cfg:3,5 Y=steps:2,3, stopped: grid: cancelled"), text)
        XCTAssertEqual(session.execute("grid X=seed:1-2"), .ok)
        let summary = makeSession(seeds: []).runScript(at: recorder.path, options: ScriptOptions(check: true))
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.checked, 4)
        // Stopped before any cell is finished: no sheet to speak of.
        io.interruptAfter = 1
        XCTAssertNotEqual(session.execute("grid X=cfg:3,5"), .ok)
        XCTAssertEqual(io.diagnostics.last, "grid: cancelled after 0 of 2 cells; no cell was finished, so there is no sheet")
    }

    func testHelpGridExplainsTheAxesAndRanges() {
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertEqual(session.execute("help grid"), .ok)
        XCTAssertEqual(io.lines.first, "usage: grid X=AXIS:VALUES [Y=…] [Z=…] [--yes]")
        XCTAssertTrue(io.lines.contains { $0.contains("axes: seed (Seed), cfg (CFG Scale)") }, io.lines.joined(separator: "\n"))
        XCTAssertTrue(io.lines.contains { $0.contains("1-2 [5] (five values)") }, io.lines.joined(separator: "\n"))
        XCTAssertTrue(io.lines.contains { $0.contains("needs --yes in a script") }, io.lines.joined(separator: "\n"))
    }

    func testCompletionOffersAxesThenNames() {
        let session = makeSession()
        XCTAssertEqual(session.complete("grid ").candidates, ["X=", "Y=", "Z=", "--yes"])
        XCTAssertEqual(session.complete("grid X=s").candidates, ["X=seed:", "X=steps:", "X=sampler:", "X=size:", "X=strength:", "X=sr:"])
        XCTAssertEqual(session.complete("grid X=seed:1-2 Y=cf").insertion, "g:")
    }
}
