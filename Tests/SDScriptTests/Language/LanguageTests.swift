import Diffusion
import ModelStore
import TestSupport
import XCTest
@testable import SDScript

final class TokenizerTests: XCTestCase {
    func testBlankCommentResultAndCommandLines() {
        XCTAssertEqual(ScriptLine("   "), .blank)
        XCTAssertEqual(ScriptLine("  # a note"), .comment("a note"))
        XCTAssertEqual(ScriptLine("prompt   a red fox, (snow:1.2)  "),
                       .command(CommandText(name: "prompt", argument: "a red fox, (snow:1.2)")))
        XCTAssertEqual(ScriptLine("gen"), .command(CommandText(name: "gen", argument: "")))
        XCTAssertEqual(ScriptLine("\tset steps\t30"), .command(CommandText(name: "set", argument: "steps\t30")))
        XCTAssertEqual(ScriptLine("#=> saved 2 out/a b.png"), .result(.saved(index: 2, path: "out/a b.png")))
        XCTAssertEqual(ScriptLine("#=> image x"), .malformedResult("#=> image x"))
    }

    func testHashIsPartOfFreeTextButEndsAWordArgument() {
        let session = makeSession()
        XCTAssertEqual(session.execute("prompt issue #42 # not a comment"), .ok)
        XCTAssertEqual(session.settings.request.prompt, "issue #42 # not a comment")
        XCTAssertEqual(session.execute("seed 123456 # random"), .ok)
        XCTAssertEqual(session.settings.request.seed, .fixed(123456))
        XCTAssertEqual(session.execute("set steps 30   # fewer is blurry"), .ok)
        XCTAssertEqual(session.settings.request.steps, 30)
        XCTAssertEqual(session.execute("set steps#30"), .failed(Diagnostic(.badArgument(
            command: "set", argument: "steps#30", reason: "unknown setting", suggestion: "steps"), at: nil)))
    }

    /// Every event's text shows control characters escaped (ESC as \\e, others as \\xHH, C1 as
    /// \\u{HH}); tabs and the line breaks of multi-line output stay.
    func testEventTextEscapesControlCharacters() {
        let event = SessionEvent.output("a\u{1B}[2Jb\u{07}c\u{9B}d\te\u{7F}f\rg\u{0}h\nnext é ☕")
        XCTAssertEqual(event.text?.lines, ["a\\e[2Jb\\x07c\\u{9B}d\te\\x7Ff\\x0Dg\\x00h\nnext é ☕"])
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertEqual(session.execute("set stpes\u{1B}[31m 3"), .failed(Diagnostic(.badArgument(
            command: "set", argument: "stpes\u{1B}[31m", reason: "unknown setting"), at: nil)))
        XCTAssertEqual(io.diagnostics, ["set: unknown setting 'stpes\\e[31m'"])
    }

    func testEditDistanceAndSuggestions() {
        XCTAssertEqual(editDistance(Array("stpes"), Array("steps")), 1)
        XCTAssertEqual(editDistance(Array("kitten"), Array("sitting")), 3)
        XCTAssertEqual(closestWord(to: "stpes", in: SettingKey.names), "steps")
        XCTAssertEqual(closestWord(to: "GNE", in: Command.table.map(\.name)), "gen")
        XCTAssertEqual(closestWord(to: "samp", in: SettingKey.names), "sampler")
        XCTAssertEqual(closestWord(to: "of", in: ["on", "off", "auto"]), "off", "at equal distance, the word it begins")
        XCTAssertNil(closestWord(to: "zzzzzz", in: SettingKey.names))
    }

    func testSamplerNamesAndA1111Aliases() {
        let expected = ["Euler a": "euler-a", "DPM++ 2M Karras": "dpmpp-2m-karras", "PLMS": "pndm", "ddim": "ddim",
                        "euler_a": "euler-a", "DPM++ 2M": "dpmpp-2m", "EULER": "euler", "LCM": "lcm",
                        "dpmpp_2m_karras": "dpmpp-2m-karras", "EulerAncestralDiscreteScheduler": "euler-a"]
        for (name, canonical) in expected { XCTAssertEqual((try? Sampler(name: name))?.rawValue, canonical, name) }
        XCTAssertNil(try? Sampler(name: "heun"))
        for sampler in Sampler.allCases { XCTAssertEqual(try? Sampler(name: sampler.rawValue), sampler) }
    }
}

final class CommandTests: XCTestCase {
    func testDefaultsAreThoseOfTheIssue() {
        let settings = SessionSettings()
        XCTAssertEqual(settings.request.style, "none")
        XCTAssertEqual(settings.request.sampler, .pndm)
        XCTAssertEqual(settings.request.steps, 25)
        XCTAssertEqual(settings.request.cfg, 7.5)
        XCTAssertEqual(settings.request.width, 512)
        XCTAssertEqual(settings.request.height, 512)
        XCTAssertEqual(settings.request.batch, 1)
        XCTAssertEqual(settings.request.clipSkip, 1)
        XCTAssertEqual(settings.output.preview, .auto)
        XCTAssertEqual(settings.output.outdir, "generated_images")
        XCTAssertEqual(settings.resources.memory, .auto)
        XCTAssertEqual(settings.request.seed, .random)
    }

    func testSetEveryKeyThenUnsetRestoresDefaults() {
        let folder = TemporaryFolder()
        let model = folder.write("m.safetensors", "x")
        let session = makeSession()
        let commands = ["set style None", "set steps 40", "set cfg 4", "set size 512x768", "set sampler DPM++ 2M Karras",
                        "set batch 3", "set model \(model)", "set clip-skip 2", "set preview off", "set outdir out dir",
                        "set memory low", "set jpeg-quality 80", "set autosave off", "set seed 5",
                        "set prompt a cat", "set negative blurry"]
        for command in commands { XCTAssertEqual(session.execute(command), .ok, command) }
        var expected = SessionSettings()
        expected.request.steps = 40
        expected.request.cfg = 4
        expected.request.height = 768
        expected.request.sampler = .dpmpp2mKarras
        expected.request.batch = 3
        expected.resources.model = model
        expected.request.clipSkip = 2
        expected.output.preview = .off
        expected.output.outdir = "out dir"
        expected.resources.memory = .low
        expected.output.jpegQuality = 80
        expected.output.autosave = false
        expected.request.seed = .fixed(5)
        expected.request.prompt = "a cat"
        expected.request.negative = "blurry"
        XCTAssertEqual(session.settings, expected)
        for key in SettingKey.names { XCTAssertEqual(session.execute("unset \(key)"), .ok, key) }
        XCTAssertEqual(session.settings, SessionSettings())
    }

    /// A step count the sampler cannot take is refused when it is set, not at `gen`: `set steps`
    /// checks it against the sampler, `set sampler` against the steps (the ranges are the engine's).
    func testStepsAreCheckedAgainstTheSamplerWhenSet() {
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertEqual(session.execute("set steps 1000"), .failed(Diagnostic(.badArgument(
            command: "set steps", argument: "1000", reason: "pndm takes 1 to 999 steps, got"), at: nil)))
        XCTAssertEqual(io.diagnostics.last, "set steps: pndm takes 1 to 999 steps, got '1000'")
        XCTAssertEqual(session.settings.request.steps, 25)
        XCTAssertEqual(session.execute("set steps 999"), .ok)
        XCTAssertEqual(session.execute("set sampler euler"), .ok)
        XCTAssertEqual(session.execute("set steps 1000"), .ok)
        XCTAssertEqual(session.execute("set sampler lcm"), .failed(Diagnostic(.notReady(
            command: "set sampler", reason: "lcm takes 1 to 50 steps and steps is 1000: 'set steps 50' or fewer first"), at: nil)))
        XCTAssertEqual(session.settings.request.sampler, .euler)
        XCTAssertEqual(session.execute("set steps 50"), .ok)
        XCTAssertEqual(session.execute("set sampler lcm"), .ok)
        XCTAssertEqual(session.execute("set steps 51"), .failed(Diagnostic(.badArgument(
            command: "set steps", argument: "51", reason: "lcm takes 1 to 50 steps, got"), at: nil)))
        XCTAssertEqual(session.execute("unset sampler"), .ok, "pndm takes 50")
    }

    /// `seed last` (and `set seed last`) reuses the last image's seed, as A1111's recycle button.
    func testSeedLastReusesTheLastImagesSeed() {
        let session = makeSession(seeds: [1234, 98765])
        XCTAssertEqual(session.execute("seed last"), .failed(Diagnostic(.notReady(
            command: "seed", reason: "no image yet; 'seed last' takes the seed of the last image made"), at: nil)))
        for line in ["prompt x", "set size 64x64", "set steps 1", "gen 2"] { XCTAssertEqual(session.execute(line), .ok, line) }
        XCTAssertEqual(session.execute("seed last"), .ok)
        XCTAssertEqual(session.settings.request.seed, .fixed(1235))
        XCTAssertEqual(session.execute("seed random"), .ok)
        XCTAssertEqual(session.execute("set seed LAST"), .ok)
        XCTAssertEqual(session.settings.request.seed, .fixed(1235))
    }

    /// `tokens` labels its own errors (not `gen:`).
    func testTokensErrorsAreLabelledTokens() {
        let folder = TemporaryFolder()
        let catalog = ModelStoreCatalog(environment: ["HF_HOME": folder.path + "/hf", "HOME": folder.path + "/home"],
                                        currentDirectory: folder.path)
        let io = BufferIO()
        let session = Session(components: Components(generatorLoader: CountingLoader(), models: catalog, styles: StyleBook(environment: [:])),
                              io: io)
        XCTAssertEqual(session.execute("prompt x"), .ok)
        guard case .failed(let diagnostic) = session.execute("tokens") else { return XCTFail("tokens without a model") }
        XCTAssertTrue(diagnostic.description.hasPrefix("tokens: no Stable Diffusion 1.5 model found."), diagnostic.description)
        let noEngine = Session(components: Components(generatorLoader: nil, models: FixedModelCatalog(), styles: StyleBook(environment: [:])),
                               io: io)
        XCTAssertEqual(noEngine.execute("tokens").failure?.description,
                       "tokens: found the model /test/double.safetensors, but this build of sdrepl has no generation engine wired in")
        let styled = makeSession()
        styled.settings.request.style = "nonesuch"
        XCTAssertEqual(styled.execute("tokens").failure?.description, "tokens: unknown style 'nonesuch'")
    }

    func testSettingAliasesAndSides() {
        let session = makeSession()
        for line in ["set guidance 5", "set width 640", "set HEIGHT 384", "set clip_skip 2", "set scheduler DDIM",
                     "set negative-prompt ugly"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        var expected = RequestDefaults()
        (expected.negative, expected.cfg, expected.width, expected.height, expected.sampler, expected.clipSkip)
            = ("ugly", 5, 640, 384, .ddim, 2)
        XCTAssertEqual(session.settings.request, expected)
        XCTAssertEqual(session.execute("set width 650"), .failed(Diagnostic(.badArgument(
            command: "set width", argument: "650", reason: "expected a multiple of 8 from 64 to 2048, got"), at: nil)))
        XCTAssertEqual(session.execute("unset width"), .ok)
        XCTAssertEqual(session.settings.request.width, 512)
    }

    func testSetAloneListsEverySetting() {
        let io = BufferIO()
        let session = makeSession(io: io)
        _ = session.execute("set steps 30")
        _ = session.execute("set")
        XCTAssertEqual(io.lines.count, SettingKey.all.count)
        XCTAssertTrue(io.lines.contains("steps           30   (changed)"), "\(io.lines)")
        XCTAssertTrue(io.lines.contains("sampler         pndm"), "\(io.lines)")
    }

    /// Each validation error, as the user sees it in a script: FILE:LINE, the command, the argument,
    /// and the closest valid word where there is one.
    func testValidationErrorsCarryFileLineAndSuggestion() {
        let cases: [(String, String)] = [
            ("set stpes 30", "set: unknown setting 'stpes' (did you mean 'steps'?)"),
            ("gne", "unknown command 'gne' (did you mean 'gen'?); type 'help' for the list"),
            ("size 64x64", "unknown command 'size' (did you mean 'set size 64x64'?); type 'help' for the list"),
            ("steps 20", "unknown command 'steps' (did you mean 'set steps 20'?); type 'help' for the list"),
            ("final", "final: missing argument; usage: final N|last"),
            ("set lora-dir /etc/passwd", "set lora-dir: /etc/passwd: is a file, not a folder; give the folder that holds such files"),
            ("set mode final 3", "set mode final: takes no argument, got '3'; see 'help set mode'"),
            ("set steps 0", "set steps: expected a whole number from 1 to 1000, got '0'"),
            ("set steps many", "set steps: expected a whole number from 1 to 1000, got 'many'"),
            ("set cfg -1", "set cfg: expected a number from 0 to 50, got '-1'"),
            ("set cfg nan", "set cfg: expected a number from 0 to 50, got 'nan'"),
            ("set size 500x512", "set size: width and height must be multiples of 8 from 64 to 2048, got '500x512'"),
            ("set size 4096x512", "set size: width and height must be multiples of 8 from 64 to 2048, got '4096x512'"),
            ("set size big", "set size: expected WxH (e.g. 512x768) or N for NxN, got 'big'"),
            ("set size 4096", "set size: width and height must be multiples of 8 from 64 to 2048, got '4096'"),
            ("set sampler eulr", "set sampler: unknown sampler 'eulr' (did you mean 'euler'?)"),
            ("set style cinematik", "set style: unknown style 'cinematik' (did you mean 'cinematic'?)"),
            ("set preview sixle", "set preview: expected auto, sixel, off, got 'sixle' (did you mean 'sixel'?)"),
            ("set memory hi", "set memory: expected auto, low, fast, got 'hi'"),
            ("set batch 65", "set batch: expected a whole number from 1 to 64, got '65'"),
            ("set clip-skip 13", "set clip-skip: expected a whole number from 1 to 12, got '13'"),
            ("set jpeg-quality 101", "set jpeg-quality: expected a whole number from 1 to 100, got '101'"),
            ("set steps", "set steps: missing argument; usage: set steps 1…1000"),
            ("seed randon", "seed: expected a whole number from 0 to 18446744073709551615, 'random' or 'last', got 'randon' (did you mean 'random'?)"),
            ("seed", "seed: missing argument; usage: seed N | random | last"),
            ("unset stepz", "unset: unknown setting 'stepz' (did you mean 'steps'?)"),
            ("gen 0", "gen: expected a number of images from 1 to 64, got '0'"),
            ("show 1", "show: no image yet; run 'gen' first"),
            ("history now", "history: expected nothing or 'sheet', got 'now'"),
            ("history shet", "history: expected nothing or 'sheet', got 'shet' (did you mean 'sheet'?)"),
            ("grid X=sed:1-2", "grid: unknown axis (seed, cfg, steps, sampler, size, strength, lora, sr) 'sed' (did you mean 'seed'?)"),
            ("grid X=steps:10,2000", "grid X=steps: expected a whole number from 1 to 1000, got '2000'"),
            ("help gem", "help: no such command or setting 'gem' (did you mean 'gen'?)"),
            ("model /nonexistent/x.safetensors", "model: /nonexistent/x.safetensors: no such file or folder"),
            ("run", "run: missing argument; usage: run FILE"),
        ]
        let folder = TemporaryFolder()
        for (line, message) in cases {
            let io = BufferIO()
            let session = makeSession(io: io)
            let script = folder.write("case.sdscript", "# a comment\n\nprompt a fox\n\(line)\ngen\n")
            let summary = session.runScript(at: script, options: ScriptOptions())
            XCTAssertEqual(io.diagnostics, ["\(script):4: \(message)"], line)
            XCTAssertEqual(summary.errors.count, 1, line)
            XCTAssertEqual(summary.errors.first?.location, SourceLocation(file: script, line: 4), line)
            XCTAssertTrue(session.images.isEmpty, "stopped before the gen on line 5: \(line)")
        }
    }

    func testScriptStopsAtFirstErrorUnlessKeepGoing() {
        let folder = TemporaryFolder()
        let script = folder.write("s.sdscript", "set steps 0\nset steps 12\nset cfg x\nset cfg 3\n")
        let stopping = makeSession()
        let first = stopping.runScript(at: script)
        XCTAssertEqual(first.errors.map(\.location?.line), [1])
        XCTAssertEqual(stopping.settings.request.steps, 25)

        let going = makeSession()
        let all = going.runScript(at: script, options: ScriptOptions(keepGoing: true))
        XCTAssertEqual(all.errors.map(\.location?.line), [1, 3])
        XCTAssertEqual(going.settings.request.steps, 12)
        XCTAssertEqual(going.settings.request.cfg, 3)
    }

    func testInteractiveErrorsHaveNoLocationAndTheSessionGoesOn() {
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertEqual(session.execute("set stpes 30"), .failed(Diagnostic(.badArgument(
            command: "set", argument: "stpes", reason: "unknown setting", suggestion: "steps"), at: nil)))
        XCTAssertEqual(io.diagnostics, ["set: unknown setting 'stpes' (did you mean 'steps'?)"])
        XCTAssertEqual(session.execute("set steps 30"), .ok)
        XCTAssertEqual(session.execute("quit"), .quit)
        XCTAssertEqual(session.execute("EXIT"), .quit)
    }

    func testNestedRunIsRelativeToTheScriptAndKeepsState() {
        let folder = TemporaryFolder()
        folder.write("lib/common.sdscript", "set steps 11\nrun deeper.sdscript\n")
        folder.write("lib/deeper.sdscript", "set cfg 2.5\n")
        let main = folder.write("main.sdscript", "run lib/common.sdscript\nset batch 2\n")
        let session = makeSession()
        XCTAssertTrue(session.runScript(at: main).succeeded)
        XCTAssertEqual(session.settings.request.steps, 11)
        XCTAssertEqual(session.settings.request.cfg, 2.5)
        XCTAssertEqual(session.settings.request.batch, 2)
    }

    func testNestedErrorNamesTheInnerFileAndStopsTheOuter() {
        let folder = TemporaryFolder()
        let inner = folder.write("inner.sdscript", "set steps 3\nset stpes 4\n")
        let outer = folder.write("outer.sdscript", "run inner.sdscript\nset steps 9\n")
        let io = BufferIO()
        let session = makeSession(io: io)
        let summary = session.runScript(at: outer)
        XCTAssertEqual(io.diagnostics, ["\(inner):2: set: unknown setting 'stpes' (did you mean 'steps'?)"])
        XCTAssertEqual(summary.errors.count, 1)
        XCTAssertEqual(session.settings.request.steps, 3)
    }

    func testRunCycleIsDetected() {
        let folder = TemporaryFolder()
        let a = folder.write("a.sdscript", "set steps 2\nrun b.sdscript\n")
        let b = folder.write("b.sdscript", "run a.sdscript\n")
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertFalse(session.runScript(at: a).succeeded)
        XCTAssertEqual(io.diagnostics, ["\(b):1: run: cycle: \(a) -> \(b) -> \(folder.path)/a.sdscript"])
    }

    func testRunDepthIsLimited() {
        let folder = TemporaryFolder()
        for level in 0..<12 { folder.write("l\(level).sdscript", "run l\(level + 1).sdscript\n") }
        folder.write("l12.sdscript", "set steps 5\n")
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertFalse(session.runScript(at: folder.path + "/l0.sdscript").succeeded)
        XCTAssertEqual(io.diagnostics, ["\(folder.path)/l7.sdscript:1: run: \(folder.path)/l8.sdscript: 'run' files nest more than 8 deep"])
        XCTAssertEqual(session.settings.request.steps, 25)
    }

    func testQuitInANestedScriptEndsEverything() {
        let folder = TemporaryFolder()
        folder.write("q.sdscript", "set steps 3\nquit\nset steps 4\n")
        let main = folder.write("main.sdscript", "run q.sdscript\nset steps 5\n")
        let session = makeSession()
        let summary = session.runScript(at: main)
        XCTAssertTrue(summary.quit)
        XCTAssertTrue(summary.succeeded)
        XCTAssertEqual(session.settings.request.steps, 3)
    }

    func testTabOffersACommandsFixedWords() {
        let session = makeSession()
        XCTAssertEqual(session.complete("history ").candidates, ["sheet"])
        XCTAssertEqual(session.complete("seed r").candidates, ["random"])
        XCTAssertEqual(session.complete("seed ").candidates, ["random", "last"])
        XCTAssertEqual(session.complete("transcript s").insertion, "ave ")
        XCTAssertEqual(session.complete("transcript save ").candidates, [], "then a path is typed")
    }

    func testHelpOfASettingSaysHowToSetIt() {
        for line in ["help steps", "help set steps"] {
            let io = BufferIO()
            XCTAssertEqual(makeSession(io: io).execute(line), .ok, line)
            XCTAssertEqual(io.lines.first, "usage: set steps 1…1000   (default: 25)", line)
        }
        // Every setting through `help set KEY`, also those a command shares its name with.
        for key in SettingKey.all {
            let io = BufferIO()
            XCTAssertEqual(makeSession(io: io).execute("help set \(key.name)"), .ok, key.name)
            XCTAssertTrue(io.lines.first?.hasPrefix("usage: set \(key.name) ") ?? false, "\(key.name): \(io.lines)")
            // Then what it does, in a line of its own.
            let about = try? XCTUnwrap(SettingKey.about[key.name], "\(key.name) has no description")
            XCTAssertEqual(io.lines.dropFirst().first, about.map { "  " + $0 }, key.name)
        }
        XCTAssertEqual(Set(SettingKey.about.keys), Set(SettingKey.all.map(\.name)), "descriptions of keys that do not exist")
        let io = BufferIO()
        _ = makeSession(io: io).execute("help seed")
        XCTAssertEqual(io.lines.first?.hasPrefix("usage: seed"), true, "help seed is the command: \(io.lines)")
    }

    /// In a terminal of 60 columns help's lines wrap at spaces, each continuation indented under its
    /// text, and say word for word what the unwrapped lines say.
    func testHelpWrapsAtTheTerminalsWidth() {
        for topic in ["", "set", "set memory", "grid"] {
            let whole = BufferIO(), narrow = BufferIO()
            narrow.outputColumns = 60
            _ = makeSession(io: whole).execute("help " + topic)
            _ = makeSession(io: narrow).execute("help " + topic)
            let longest = narrow.lines.filter { $0.count > 60 }
            XCTAssertTrue(longest.allSatisfy { !$0.trimmingWhitespace().dropFirst().contains(" ") || $0.split(separator: " ").contains { $0.count > 40 } },
                          "\(topic): \(longest)")
            func words(_ lines: [String]) -> [Substring] { lines.joined(separator: " ").split(separator: " ") }
            XCTAssertEqual(words(narrow.lines), words(whole.lines), topic)
            XCTAssertGreaterThan(narrow.lines.count, whole.lines.count, topic)
        }
        XCTAssertEqual(Command.wrapped("usage: set memory auto|low|fast   (default: auto)", columns: 30, indent: 2),
                       ["usage: set memory", "  auto|low|fast   (default:", "  auto)"])
        XCTAssertEqual(Command.wrapped("short", columns: 30, indent: 2), ["short"])
        XCTAssertEqual(Command.wrapped(String(repeating: "x", count: 40) + " y", columns: 30, indent: 2),
                       [String(repeating: "x", count: 40), "  y"])
    }

    func testHelpListsEveryCommandAndExplainsSet() {
        let io = BufferIO()
        let session = makeSession(io: io)
        _ = session.execute("help")
        for command in Command.table {
            XCTAssertTrue(io.lines.contains { $0.hasPrefix(command.usage + " ") }, command.name)
        }
        io.lines = []
        _ = session.execute("help set")
        XCTAssertEqual(io.lines.first, "usage: set [KEY VALUE]")
        XCTAssertTrue(io.lines.contains { $0.contains("sampler") && $0.contains("euler-a") && $0.contains("(default: pndm)") })
    }
}

/// What `init`, `mask`, `final` and the path settings can tell when typed, they say then, in words.
final class InputCheckTests: XCTestCase {
    func testImagesPathsAndNumbersAreCheckedWhenTyped() throws {
        let folder = TemporaryFolder()
        folder.write("text.png", "hello")
        folder.write("sub/keep.txt", "")
        let cmyk = try Data(contentsOf: Fixture.url("jpeg/cmyk.jpg"))
        try cmyk.prefix(cmyk.count / 2).write(to: URL(fileURLWithPath: "\(folder.path)/cut.jpg"))
        let session = makeSession(io: BufferIO())
        for (line, message) in [
            ("init \(folder.path)/sub", "init: \(folder.path)/sub: is a folder, not a file"),
            ("init \(folder.path)/cut.jpg", "init: \(folder.path)/cut.jpg: the JPEG file is cut short"),
            ("init /dev/zero", "init: /dev/zero: not a regular file (a device, pipe or socket)"),
            ("load /dev/null", "load: /dev/null: not a regular file (a device, pipe or socket)"),
            ("run /dev/zero", "run: /dev/zero: not a regular file (a device, pipe or socket); a script is a text file of commands"),
            ("init \(folder.path)/text.png", "init: \(folder.path)/text.png: not a PNG or JPEG file"),
            ("mask \(folder.path)/text.png", "mask: \(folder.path)/text.png: not a PNG or JPEG file"),
            ("set init \(folder.path)/nowhere.png", "set init: \(folder.path)/nowhere.png: no such file"),
            ("init 1", "init: no image yet; 'init FILE' starts from a picture, or 'gen' first"),
            ("final 1", "final: no image yet; make drafts with 'set mode draft' and 'gen' first"),
            ("set model", "set model: missing argument; usage: set model"),
            ("set outdir", "set outdir: missing argument; usage: set outdir"),
        ] {
            let failure = try XCTUnwrap(session.execute(line).failure, line)
            XCTAssertTrue(failure.description.hasPrefix(message), "\(line): \(failure.description)")
        }
        XCTAssertEqual(session.execute("set negative"), .ok, "a text setting may be empty")
        XCTAssertEqual(session.execute("gen"), .ok)
        let final = try XCTUnwrap(session.execute("final 1").failure)
        XCTAssertEqual(final.description, "final: image 1 was not made in draft mode ('set mode draft'); it is final already")
    }
}

/// A phone's portrait JPEG as an init image: used as stored, with a note, unless `set
/// exif-rotate on` turns it upright first (A1111's `exif_transpose`); the choice is kept in the
/// image's own keys so `load` restores it.
final class EXIFOrientationSettingTests: XCTestCase {
    func testAPhotoIsUsedAsStoredUnlessTurningIsAskedFor() throws {
        let photo = FixturePaths.root.appendingPathComponent("exif/orientation6.jpg").path
        let io = BufferIO(), loader = CountingLoader()
        let session = makeSession(io: io, loader: loader)
        for line in ["prompt x", "set size 64x64", "init \(photo)", "gen"] { XCTAssertEqual(session.execute(line), .ok, line) }
        XCTAssertTrue(io.lines.contains { $0.hasPrefix("init: \(photo) is stored turned (EXIF orientation 6) and is used as stored") }, "\(io.lines)")
        XCTAssertTrue(io.lines.contains { $0.contains("is 16x8; resized to 64x64") }, "\(io.lines)")
        io.lines = []
        XCTAssertEqual(session.execute("set exif-rotate on"), .ok)
        XCTAssertEqual(session.execute("gen"), .ok)
        XCTAssertTrue(io.lines.contains { $0.contains("is 8x16; resized to 64x64") }, "turned upright first: \(io.lines)")
        XCTAssertFalse(io.lines.contains { $0.contains("is stored turned") })
        let requests = loader.generator.requests
        XCTAssertEqual(requests.count, 2)
        XCTAssertNotEqual(requests[0].initImage, requests[1].initImage)
        XCTAssertEqual(session.images.map(\.request.turnedByEXIF), [false, true])
    }
}

final class LoRAFolderTests: XCTestCase {
    /// `set lora-dir` comes first, then `models/Lora` here and `Lora` beside the model's folder, as
    /// A1111 keeps them (`models/Stable-diffusion/x.safetensors`, `models/Lora/`).
    func testLoRAFoldersAndTheListing() throws {
        let folder = TemporaryFolder()
        folder.write("mine/ink.safetensors", "")
        folder.write("mine/sub/paper.safetensors", "")
        folder.write("models/Stable-diffusion/m.safetensors", "")
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertEqual(session.execute("set lora-dir \(folder.path)/nowhere"), .failed(Diagnostic(
            .file(command: "set lora-dir", path: "\(folder.path)/nowhere", reason: "no such folder"), at: nil)))
        XCTAssertEqual(session.execute("set lora-dir \(folder.path)/mine"), .ok)
        XCTAssertEqual(session.execute("model \(folder.path)/models/Stable-diffusion/m.safetensors"), .ok)
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertEqual(session.loraDirectories().map(\.path), ["\(folder.path)/mine", "\(cwd)/models/Lora", "\(folder.path)/models/Lora"])
        // A pickled checkpoint is a single file too: its Lora folder is the same.
        folder.write("models/Stable-diffusion/old.ckpt", "")
        XCTAssertEqual(session.execute("model \(folder.path)/models/Stable-diffusion/old.ckpt"), .ok)
        XCTAssertEqual(session.loraDirectories().last?.path, "\(folder.path)/models/Lora")
        // So is a diffusers folder there, and a checkpoint in a sub-folder of it.
        for model in ["models/Stable-diffusion/dfolder/model_index.json", "models/Stable-diffusion/sd15/sub.safetensors"] {
            folder.write(model, "{}")
            let path = model.hasSuffix(".json") ? (model as NSString).deletingLastPathComponent : model
            XCTAssertEqual(session.execute("model \(folder.path)/\(path)"), .ok)
            XCTAssertEqual(session.loraDirectories().last?.path, "\(folder.path)/models/Lora", path)
            XCTAssertEqual(session.embeddingDirectories().last?.path, "\(folder.path)/embeddings", path)
        }
        XCTAssertEqual(session.execute("model \(folder.path)/models/Stable-diffusion/m.safetensors"), .ok)
        io.lines = []
        XCTAssertEqual(session.execute("loras"), .ok)
        XCTAssertEqual(io.lines, ["<lora:ink:1>", "<lora:paper:1>",
                                  "2 LoRAs in \(folder.path)/mine, \(cwd)/models/Lora, \(folder.path)/models/Lora"])
        // Two files of one name (Hugging Face snapshots): the listing says which the tag means.
        folder.write("models/Lora/ink.safetensors", "")
        io.lines = []
        XCTAssertEqual(session.execute("loras"), .ok)
        XCTAssertEqual(io.lines.first, "<lora:ink:1>  (2 files have this name; it means \(folder.path)/mine/ink.safetensors, rename the others to use them)")
        XCTAssertEqual(session.execute("unset lora-dir"), .ok)
        XCTAssertNil(session.settings.resources.loraDir)
        // Embeddings: `set embeddings`, then embeddings/ here, then embeddings/ beside models/.
        folder.write("mine/neg.safetensors", "")
        XCTAssertEqual(session.execute("set embeddings \(folder.path)/mine"), .ok)
        XCTAssertEqual(session.embeddingDirectories().map(\.path), ["\(folder.path)/mine", "\(cwd)/embeddings", "\(folder.path)/embeddings"])
        io.lines = []
        XCTAssertEqual(session.execute("embeddings"), .ok)
        XCTAssertEqual(io.lines.first, "ink")
        XCTAssertTrue(io.lines.last?.hasPrefix("3 embeddings in \(folder.path)/mine") ?? false, "\(io.lines)")
    }
}

final class OutdirSettingTests: XCTestCase {
    /// `set outdir` says at once when images could not be saved there, rather than at the first
    /// `gen`; `run --check` writes nothing, so its replay takes any folder.
    func testAFolderImagesCannotBeWrittenToIsRefusedWhenSet() throws {
        let folder = TemporaryFolder()
        let file = folder.write("notes.txt", "x")
        let session = makeSession()
        XCTAssertEqual(session.execute("set outdir \(folder.path)/pictures/today"), .ok)
        XCTAssertEqual(session.settings.output.outdir, "\(folder.path)/pictures/today")
        XCTAssertEqual(session.execute("set outdir \(file)/pictures").failure?.description,
                       "set outdir: \(file)/pictures: \(file) is a file, not a folder; give a folder images can be written to")
        XCTAssertEqual(session.settings.output.outdir, "\(folder.path)/pictures/today", "the setting is kept")

        let script = folder.write("t.sdscript", "set outdir \(file)/pictures\n")
        XCTAssertEqual(makeSession().runScript(at: script, options: ScriptOptions(check: true)).errors, [])
    }
}

extension Outcome {
    /// The diagnostic of a failed line.
    var failure: Diagnostic? {
        if case .failed(let diagnostic) = self { return diagnostic }
        return nil
    }
}
