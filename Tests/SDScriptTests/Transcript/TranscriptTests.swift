import Diffusion
import Foundation
import Imaging
import ModelStore
import XCTest
@testable import SDScript

final class ResultRecordTests: XCTestCase {
    func testFormatAndParseRoundTrip() {
        let hash = String(repeating: "ab", count: 32)
        let image = ResultRecord.image(index: 3, seed: 1234, width: 512, height: 768, sha256: hash)
        XCTAssertEqual(image.description, "#=> image 3 seed=1234 size=512x768 sha256=\(hash)")
        XCTAssertEqual(ResultRecord(line: image.description), image)
        let saved = ResultRecord.saved(index: 3, path: "generated_images/a fox #2.png")
        XCTAssertEqual(saved.description, "#=> saved 3 generated_images/a fox #2.png")
        XCTAssertEqual(ResultRecord(line: saved.description), saved)
    }

    func testMalformedResultLinesAreRejected() {
        let hash = String(repeating: "0", count: 64)
        for line in ["#=> image 1 seed=x size=8x8 sha256=\(hash)", "#=> image 1 seed=1 size=8x8 sha256=abc",
                     "#=> image 0 seed=1 size=8x8 sha256=\(hash)", "#=> image 1 seed=1 sha256=\(hash)",
                     "#=> picture 1", "#=> saved 1", "#=> image 1 seed=1 size=8by8 sha256=\(hash)"] {
            XCTAssertNil(ResultRecord(line: line), line)
        }
    }

    func testPixelHashIsSHA256OfTheRGBBytes() throws {
        // python3 -c "import hashlib; print(hashlib.sha256(bytes([255,0,0, 0,255,0])).hexdigest())"
        let pixels = try RGBImage(width: 2, height: 1, pixels: [255, 0, 0, 0, 255, 0])
        XCTAssertEqual(pixelHash(pixels), "0757241fa846855871c4ec6994954cbe0e0e7a8fd7bb3f7487462f6ce4215780")
        XCTAssertNotEqual(pixelHash(pixels), pixelHash(try RGBImage(width: 2, height: 1, pixels: [255, 0, 0, 0, 255, 1])))
    }
}

final class GenerationTests: XCTestCase {
    func testGenMakesNImagesWithConsecutiveSeedsAndTheStyleApplied() {
        let io = BufferIO()
        let loader = CountingLoader()
        let session = makeSession(io: io, loader: loader)
        for line in ["prompt a red fox", "negative blurry", "seed 41", "set size 64x64", "set steps 3", "gen 3", "gen"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        XCTAssertEqual(loader.loads, 1, "the model loads once and stays loaded")
        XCTAssertEqual(loader.generator.requests.map(\.seed), [41, 42, 43, 41])
        XCTAssertEqual(loader.generator.requests.first, GenerationRequest(
            prompt: "a red fox", negativePrompt: "blurry", seed: 41, steps: 3, guidanceScale: 7.5, width: 64, height: 64,
            sampler: .pndm, batchCount: 1, clipSkip: 1, eta: 0.3))
        XCTAssertEqual(loader.generator.batches.map(\.batchCount), [3, 1], "gen N is one engine batch")
        XCTAssertEqual(session.images.map(\.index), [1, 2, 3, 4])
        XCTAssertEqual(session.images[0].sha256, session.images[3].sha256, "same request, same pixels")
        XCTAssertNotEqual(session.images[0].sha256, session.images[1].sha256)
        XCTAssertEqual(io.progressCalls, 12)
        XCTAssertEqual(io.displayed, 4)
        XCTAssertEqual(session.lastBatch, [3])
    }

    func testRandomSeedDrawsAFreshSeedForEachGen() {
        let loader = CountingLoader()
        let session = makeSession(seeds: [500, 900], loader: loader)
        for line in ["prompt x", "set size 64x64", "set steps 1", "gen 2", "gen"] { _ = session.execute(line) }
        XCTAssertEqual(loader.generator.requests.map(\.seed), [500, 501, 900])
    }

    func testCtrlCCancelsTheGenerationAndKeepsFinishedImages() {
        let io = BufferIO()
        io.interruptAfter = 7  // during the third step of the second image
        let session = makeSession(io: io)
        for line in ["prompt x", "seed 1", "set size 64x64", "set steps 5"] { _ = session.execute(line) }
        XCTAssertEqual(session.execute("gen 3"), .failed(Diagnostic(.cancelled(completed: 1, requested: 3), at: nil)))
        XCTAssertEqual(io.diagnostics, ["gen: cancelled (1 of 3 images finished)"])
        XCTAssertEqual(session.images.count, 1)
        XCTAssertEqual(session.execute("gen"), .ok, "the next gen starts with the flag cleared")
    }

    func testWithoutAModelGenSaysWhereItLooked() {
        let folder = TemporaryFolder()
        let io = BufferIO()
        let environment = ["HF_HOME": folder.path + "/hf", "HOME": folder.path + "/home"]
        let catalog = ModelStoreCatalog(environment: environment, currentDirectory: folder.path)
        let session = Session(components: Components(models: catalog, styles: StyleBook(environment: [:])), io: io)
        let searched = ModelDiscovery(environment: environment, currentDirectory: URL(fileURLWithPath: folder.path),
                                      homeDirectory: URL(fileURLWithPath: folder.path + "/home")).searchedLocations()
        XCTAssertEqual(session.execute("gen"), .failed(Diagnostic(
            .noModel(ModelStoreError.noModelFound(searched: searched).description), at: nil)))
        XCTAssertTrue(io.diagnostics[0].hasPrefix("gen: no Stable Diffusion 1.5 model found. sdrepl looked in:"), io.diagnostics[0])
        XCTAssertTrue(io.diagnostics[0].contains("\(folder.path)/models/"), io.diagnostics[0])
        XCTAssertTrue(io.diagnostics[0].contains("\(folder.path)/hf/hub/models--runwayml--stable-diffusion-v1-5"), io.diagnostics[0])
        XCTAssertTrue(io.diagnostics[0].contains("run `model download`"), io.diagnostics[0])
    }

    func testDiscoveryFindsTheModelsFolderAndAnExplicitPath() throws {
        let folder = TemporaryFolder()
        let catalog = ModelStoreCatalog(environment: ["HOME": folder.path], currentDirectory: folder.path)
        let local = folder.write("models/mine.safetensors", "x")
        XCTAssertEqual(try catalog.locate(explicit: nil), ModelLocation(path: local, source: "./models"))
        XCTAssertEqual(try catalog.locate(explicit: local), ModelLocation(path: local, source: "given path"))
        // A .ckpt is found by its name; the engine reads its bytes when it loads it.
        let pickle = folder.write("old.ckpt", "x")
        XCTAssertEqual(try catalog.locate(explicit: pickle), ModelLocation(path: pickle, source: "given path"))
        let text = folder.write("notes.txt", "x")
        XCTAssertThrowsError(try catalog.locate(explicit: text)) { error in
            XCTAssertTrue("\(error)".contains("sdrepl reads .safetensors and .ckpt checkpoints"), "\(error)")
        }
    }

    func testWithAModelButNoEngineGenSaysSo() {
        let folder = TemporaryFolder()
        let model = folder.write("models/m.safetensors", "x")
        let io = BufferIO()
        let catalog = ModelStoreCatalog(environment: ["HOME": folder.path], currentDirectory: folder.path)
        let session = Session(components: Components(generatorLoader: nil, models: catalog, styles: StyleBook(environment: [:])), io: io)
        XCTAssertEqual(session.execute("gen"), .failed(Diagnostic(.noEngine(model: model), at: nil)))
    }

    func testSaveAndAutosaveRecordSavedPaths() {
        let saver = RecordingSaver()
        let session = makeSession(saver: saver)
        for line in ["prompt x", "seed 3", "set size 64x64", "set steps 1", "gen 2", "set autosave off", "gen",
                     "save out/pic.png"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        XCTAssertEqual(saver.saved.map(\.1), [nil, nil, "out/pic.png"])
        XCTAssertEqual(session.images.map(\.savedPaths), [["generated_images/3.png"], ["generated_images/4.png"], ["out/pic.png"]])
        XCTAssertEqual(session.execute("set autosave on"), .ok)
        XCTAssertEqual(session.execute("gen 2"), .ok)
        XCTAssertEqual(session.execute("save shot.jpg"), .ok)
        XCTAssertEqual(saver.saved.suffix(2).map(\.1), ["shot-1.jpg", "shot-2.jpg"])
    }

    func testSaveWithoutImagingSaysSo() {
        let io = BufferIO()
        let session = makeSession(io: io)
        for line in ["prompt x", "set size 64x64", "set steps 1", "gen"] { _ = session.execute(line) }
        XCTAssertEqual(session.execute("save"), .failed(Diagnostic(.unavailable(
            command: "save", reason: "this session has no image writer"), at: nil)))
    }

    /// Inpainting a photo keeps its pixels outside the mask: the XMP says composite, as IPTC asks;
    /// inpainting a picture a model made (its recipe says so) stays trainedAlgorithmicMedia.
    func testAnInpaintedPhotoIsDeclaredACompositeInItsXMP() throws {
        let folder = TemporaryFolder()
        let pixels = try RGBImage(width: 8, height: 8, pixels: Array(repeating: 9, count: 192))
        let photo = folder.path + "/photo.png"
        try Data(try PNGFile.encode(pixels, chunks: [])).write(to: URL(fileURLWithPath: photo))
        var output = OutputSettings()
        output.outdir = folder.path + "/out"
        func saved(initSource: String?, mask: Bool) throws -> StoredRecipe {
            let request = GenerationRequest(prompt: "a sky", seed: 1, steps: 2, guidanceScale: 7, width: 8, height: 8,
                                            initImage: PixelImage(width: 8, height: 8, rgb: pixels.pixels),
                                            mask: mask ? InpaintMask(width: 8, height: 8, values: Array(repeating: 255, count: 64)) : nil)
            let image = SessionImage(index: 1, request: StyledRequest(engine: request, initSource: initSource), pixels: pixels,
                                     model: nil, loras: [], seconds: 1, sha256: "")
            let path = try XCTUnwrap(try ImagingSaver().save(image, to: nil, output: output).paths.first)
            return try ImageRecipeReader.read(URL(fileURLWithPath: path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path))
        }
        XCTAssertEqual(try saved(initSource: photo, mask: true).digitalSourceType, .compositeWithTrainedAlgorithmicMedia)
        XCTAssertEqual(try saved(initSource: photo, mask: false).digitalSourceType, .trainedAlgorithmicMedia, "img2img repaints it all")
        XCTAssertEqual(try saved(initSource: "image 1", mask: true).digitalSourceType, .trainedAlgorithmicMedia)
        let made = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: output.outdir).first { $0.hasSuffix(".png") })
        XCTAssertEqual(try saved(initSource: output.outdir + "/" + made, mask: true).digitalSourceType, .trainedAlgorithmicMedia)
    }

    func testLoadAppliesTheRecipeOfASavedPNGAndJPEG() throws {
        let folder = TemporaryFolder()
        let request = GenerationRequest(prompt: "a fox, (snow:1.2)", negativePrompt: "ugly", seed: 77, steps: 30,
                                        guidanceScale: 6, width: 512, height: 768, sampler: .dpmpp2mKarras, clipSkip: 2)
        let image = SessionImage(index: 1, request: StyledRequest(engine: request),
                                 pixels: try RGBImage(width: 8, height: 8, pixels: Array(repeating: 9, count: 192)),
                                 model: nil, loras: [], seconds: 1, sha256: "")
        var output = OutputSettings()
        (output.outdir, output.jpegQuality) = (folder.path, 90)
        let paths = try ImagingSaver().save(image, to: nil, output: output).paths
        XCTAssertEqual(paths.map { ($0 as NSString).pathExtension }, ["png", "jpg"])
        for path in paths {
            let session = Session(components: Components(models: FixedModelCatalog(), styles: StyleBook(environment: [:])),
                                  io: BufferIO())
            XCTAssertEqual(session.execute("load \(path)"), .ok, path)
            var expected = RequestDefaults()
            (expected.prompt, expected.negative, expected.seed, expected.steps, expected.cfg) = ("a fox, (snow:1.2)", "ugly", .fixed(77), 30, 6)
            (expected.width, expected.height, expected.sampler, expected.clipSkip) = (512, 768, .dpmpp2mKarras, 2)
            expected.vaeTiling = .off  // over 512 a side and made without tiling, so replayed without it
            XCTAssertEqual(session.settings.request, expected, path)
            XCTAssertEqual(session.settings.request.seed, .fixed(77))
        }
    }
}

final class TranscriptTests: XCTestCase {
    /// Records an interactive session, the way `sdrepl` does, and returns the transcript's path.
    private func recordSession(in folder: TemporaryFolder, lines: [String]) throws -> (String, Session) {
        let recorder = try TranscriptRecorder(directory: folder.path + "/sessions",
                                              date: Date(timeIntervalSince1970: 1_795_000_000))
        let session = makeSession(transcript: recorder, seeds: [1234, 98765])
        session.recordComment("test session")
        for line in lines { _ = session.execute(line) }
        return (recorder.path, session)
    }

    func testRecordingWritesCommandsConcreteSeedsAndResults() throws {
        let folder = TemporaryFolder()
        let (path, session) = try recordSession(in: folder, lines: [
            "prompt a red fox # in snow", "set size 64x64", "set steps 2", "seed random", "gen 2", "set stpes 3",
            "seed 7", "gen", "help", "set seed random", "quit",
        ])
        XCTAssertTrue(path.hasSuffix("/sessions/20261118-110640.sdscript"), path)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let hashes = session.images.map(\.sha256)
        XCTAssertEqual(text, """
            # test session
            prompt a red fox # in snow
            set size 64x64
            set steps 2
            # seed random
            seed 1234 # random
            # model (test, hash 0123456789): /test/double.safetensors
            gen 2
            #=> image 1 seed=1234 size=64x64 sha256=\(hashes[0])
            #=> image 2 seed=1235 size=64x64 sha256=\(hashes[1])
            # set stpes 3
            # error: set: unknown setting 'stpes' (did you mean 'steps'?)
            seed 7
            gen
            #=> image 3 seed=7 size=64x64 sha256=\(hashes[2])
            help
            # set seed random

            """)
    }

    func testACancelledGenIsRecordedAsTheImagesItMadeAndChecks() throws {
        let folder = TemporaryFolder()
        let recorder = try TranscriptRecorder(directory: folder.path)
        let io = BufferIO()
        let session = makeSession(io: io, transcript: recorder, seeds: [50])
        for line in ["prompt x", "set size 64x64", "set steps 4"] { _ = session.execute(line) }
        io.interruptAfter = 6  // second step of the second image
        _ = session.execute("gen 3")
        io.interruptAfter = 1
        _ = session.execute("gen 2")  // cancelled before any image
        let text = try String(contentsOfFile: recorder.path, encoding: .utf8)
        XCTAssertEqual(text, """
            prompt x
            set size 64x64
            set steps 4
            seed 50 # random
            # model (test, hash 0123456789): /test/double.safetensors
            gen 1 # gen 3, stopped: gen: cancelled (1 of 3 images finished)
            #=> image 1 seed=50 size=64x64 sha256=\(session.images[0].sha256)
            seed 7 # random
            # gen 2
            # error: gen: cancelled (0 of 2 images finished)

            """)
        let summary = makeSession(seeds: []).runScript(at: recorder.path, options: ScriptOptions(check: true))
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.checked, 1)
    }

    /// A `run` file's lines are recorded one by one (its random seeds as the seeds drawn, its model
    /// path absolute), so the transcript replays and checks from another folder, with the file gone.
    func testARunFileIsRecordedLineByLineAndReplaysWithoutIt() throws {
        let folder = TemporaryFolder()
        folder.write("sub/m.safetensors", "")
        let inner = folder.write("sub/inner.sdscript", "# a cat, at random\nmodel m.safetensors\nseed random\nprompt a cat\ngen\n")
        let (path, recorded) = try recordSession(in: folder, lines: [
            "set size 64x64", "set steps 2", "run \(folder.path)/sub/inner.sdscript", "gen",
        ])
        let hashes = recorded.images.map(\.sha256)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), """
            # test session
            set size 64x64
            set steps 2
            # run \(folder.path)/sub/inner.sdscript
            # a cat, at random
            model \(folder.path)/sub/m.safetensors
            # seed random
            prompt a cat
            seed 1234 # random
            gen
            #=> image 1 seed=1234 size=64x64 sha256=\(hashes[0])
            # end of run \(folder.path)/sub/inner.sdscript
            seed 98765 # random
            gen
            #=> image 2 seed=98765 size=64x64 sha256=\(hashes[1])

            """)
        try FileManager.default.removeItem(atPath: inner)
        let summary = makeSession(seeds: []).runScript(at: path, options: ScriptOptions(check: true))
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.checked, 2)
    }

    /// `--check` checks every image: one whose `#=> image` line was cut off or deleted, or a `gen`
    /// edited to make more than were recorded, is reported at the command that made it; a checked
    /// script run from another (`run a.sdscript` after images of its own) checks only its own.
    func testCheckReportsImagesNoResultLineRecords() throws {
        let folder = TemporaryFolder()
        let (path, _) = try recordSession(in: folder, lines: ["set size 64x64", "seed 3", "gen", "seed 4", "gen"])
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        func check(_ edited: [String]) -> [String] {
            let file = folder.write("edited.sdscript", edited.joined(separator: "\n"))
            let summary = makeSession(seeds: []).runScript(at: file, options: ScriptOptions(check: true))
            return summary.errors.map { "\($0.location?.line ?? 0): \($0.error)" }
        }
        XCTAssertEqual(check(lines), [])
        let firstResult = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("#=> image 1 ") })
        var cut = lines
        cut.remove(at: firstResult)
        XCTAssertEqual(check(cut), ["\(firstResult): check: image 1 has no '#=> image' line to check against (the command made 1, 0 recorded); "
                                    + "the transcript was cut short or edited"])
        XCTAssertEqual(check(Array(lines.prefix(while: { !$0.hasPrefix("#=> image 2 ") }))).count, 1, "cut after the last gen")
        var twice = lines
        twice[firstResult - 1] = "gen 2"
        XCTAssertEqual(check(twice).first, "\(firstResult): check: image 2 has no '#=> image' line to check against (the command made 2, 1 recorded); "
                       + "the transcript was cut short or edited")
        // A suite of checked transcripts: the second's lines check its own images, after the first's.
        let suite = folder.write("suite.sdscript", "run \(path)\nrun \(path)\n")
        let summary = makeSession(seeds: []).runScript(at: suite, options: ScriptOptions(check: true))
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.checked, 4)
    }

    /// In a script, `set model x` finds x where `model x` does: beside the script.
    func testSetPathsInAScriptAreRelativeToItsFolderAsCommandPathsAre() throws {
        let folder = TemporaryFolder()
        folder.write("sub/m.safetensors", "")
        folder.write("sub/styles.csv", "name,prompt,negative_prompt\nink,\"{prompt}, ink\",\n")
        folder.write("sub/loras/keep.txt", "")
        let script = folder.write("sub/s.sdscript", "model m.safetensors\nset model m.safetensors\nset styles styles.csv\nset lora-dir loras\nset vae auto\n")
        let session = makeSession()
        XCTAssertEqual(session.runScript(at: script).errors, [])
        XCTAssertEqual(session.settings.resources.model, folder.path + "/sub/m.safetensors")
        XCTAssertEqual(session.settings.resources.loraDir, folder.path + "/sub/loras")
    }

    /// Paths typed at the prompt are relative to the current folder; the transcript, replayed from
    /// `sessions/`, must not read them relative to that: they are recorded absolute.
    /// A script saved on Windows (CRLF endings, a UTF-8 byte-order mark) runs line by line, and its
    /// lines reach the transcript without a carriage return; nor does a CR typed inside a line.
    func testACRLFFileWithAByteOrderMarkRunsAndItsTranscriptHasNoCarriageReturn() throws {
        let folder = TemporaryFolder()
        let script = folder.path + "/crlf.sdscript"
        let bytes = [0xEF, 0xBB, 0xBF] + Array("prompt crlf test\r\nset steps 4\r\nset size 64x64\r\nseed 5\r\ngen\r\n".utf8)
        XCTAssertTrue(FileManager.default.createFile(atPath: script, contents: Data(bytes)))
        let (path, session) = try recordSession(in: folder, lines: ["run \(script)", "negative a\rb"])
        XCTAssertEqual(session.images.count, 1)
        XCTAssertEqual(session.images.first?.request.engine.prompt, "crlf test")
        XCTAssertEqual(session.images.first?.request.engine.seed, 5)
        XCTAssertEqual(session.settings.request.steps, 4)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertFalse(text.contains("\r"), text.debugDescription)
        XCTAssertFalse(text.unicodeScalars.contains("\u{FEFF}"), text.debugDescription)
        XCTAssertTrue(text.contains("\nprompt crlf test\nset steps 4\nset size 64x64\nseed 5\n"
                                    + "# model (test, hash 0123456789): /test/double.safetensors\ngen\n#=> image 1 seed=5 size=64x64"),
                      text.debugDescription)
        XCTAssertTrue(text.contains("\nnegative a b\n"), text.debugDescription)
        let summary = makeSession(seeds: []).runScript(at: path, options: ScriptOptions(check: true))
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.checked, 1)
    }

    func testTypedInputPathsAreRecordedAbsolute() throws {
        let folder = TemporaryFolder()
        let cwd = FileManager.default.currentDirectoryPath
        let model = folder.write("m.safetensors", "")
        // ../../tmp/…/m.safetensors from the current folder.
        let relative = String(repeating: "../", count: URL(fileURLWithPath: cwd).pathComponents.count - 1) + model.dropFirst()
        let (path, _) = try recordSession(in: folder, lines: ["model \(relative)", "set model ./\(relative)", "model download"])
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), """
            # test session
            model \(model)
            set model \(model)
            model download

            """)
    }

    /// `init N` and `set init N` are recorded as the PNG image N was saved to, so the transcript
    /// replays from anywhere; an image that was never saved keeps its number.
    func testInitOfAHistoryNumberIsRecordedAsItsSavedFile() throws {
        let folder = TemporaryFolder()
        let recorder = try TranscriptRecorder(directory: folder.path + "/sessions", date: Date(timeIntervalSince1970: 1_795_000_000))
        let session = makeSession(transcript: recorder, saver: RecordingSaver())
        XCTAssertEqual(session.execute("init last").failure?.description,
                       "init: no image yet; 'init last' starts from the last image made, 'gen' first")
        for line in ["prompt x", "seed 3", "set size 64x64", "set steps 1", "gen", "init 1", "set init 1", "init last",
                     "set autosave off", "gen", "init 2", "set init LAST"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        XCTAssertEqual(session.settings.request.initImage, .history(2))
        let text = try String(contentsOfFile: recorder.path, encoding: .utf8)
        let saved = absolute("generated_images/3.png")
        XCTAssertTrue(text.contains("\ninit \(saved)\nset init \(saved)\ninit \(saved)\n"), text)
        XCTAssertTrue(text.hasSuffix("\ninit 2\nset init 2\n"), text)
    }

    /// A transcript on a full disk (/dev/full answers every write with ENOSPC): the failure is
    /// reported once, when it happens; the lines stay in memory; `transcript save PATH` writes them
    /// all and recording goes on there; until then `quit` warns once before leaving without them.
    func testAFullDiskIsReportedOnceAndTheTranscriptCanBeSavedElsewhere() throws {
        let folder = TemporaryFolder()
        let full = try XCTUnwrap(FileHandle(forWritingAtPath: "/dev/full"))
        let recorder = TranscriptRecorder(path: "/dev/full", handle: full)
        let io = BufferIO()
        let session = makeSession(io: io, transcript: recorder, seeds: [77])
        session.recordComment("test session")
        XCTAssertEqual(io.diagnostics, ["transcript: cannot write /dev/full: the disk is full; "
                                        + "the session is kept in memory: 'transcript save PATH' writes it elsewhere"])
        for line in ["prompt a fox", "set size 64x64", "set steps 2", "gen"] { XCTAssertEqual(session.execute(line), .ok, line) }
        XCTAssertEqual(io.diagnostics.count, 1, "reported once: \(io.diagnostics)")

        XCTAssertEqual(session.execute("quit"), .failed(Diagnostic(.notReady(
            command: "quit", reason: "the transcript is only in memory (writing /dev/full failed: the disk is full); "
                + "'transcript save PATH' writes it, 'quit' again leaves without it"), at: nil)))
        let saved = folder.path + "/kept.sdscript"
        XCTAssertEqual(session.execute("transcript save \(saved)"), .ok)
        XCTAssertEqual(io.lines.last, "transcript: wrote 10 lines to \(saved); recording goes on there")
        XCTAssertEqual(session.execute("seed 9"), .ok)
        XCTAssertEqual(try String(contentsOfFile: saved, encoding: .utf8), """
            # test session
            prompt a fox
            set size 64x64
            set steps 2
            seed 77 # random
            # model (test, hash 0123456789): /test/double.safetensors
            gen
            #=> image 1 seed=77 size=64x64 sha256=\(session.images[0].sha256)
            # quit
            # error: quit: the transcript is only in memory (writing /dev/full failed: the disk is full); 'transcript save PATH' writes it, 'quit' again leaves without it
            # transcript save \(saved)
            seed 9

            """)
        XCTAssertEqual(recorder.path, saved)
        XCTAssertEqual(session.execute("transcript save \(saved)"), .failed(Diagnostic(.file(
            command: "transcript save", path: saved, reason: "exists already; transcripts are never overwritten, give a new name"), at: nil)))
        XCTAssertEqual(session.execute("quit"), .quit, "written: nothing to lose")

        // Never saved: the second quit leaves.
        let lost = makeSession(transcript: TranscriptRecorder(path: "/dev/full", handle: try XCTUnwrap(FileHandle(forWritingAtPath: "/dev/full"))))
        _ = lost.execute("prompt x")
        XCTAssertNotEqual(lost.execute("quit"), .quit)
        XCTAssertEqual(lost.execute("quit"), .quit)
        XCTAssertEqual(makeSession().execute("transcript save \(folder.path)/none.sdscript"), .failed(Diagnostic(.notReady(
            command: "transcript save", reason: "this session is not recorded (a script, or --no-record)"), at: nil)))
    }

    func testTranscriptsNeverOverwriteEachOther() throws {
        let folder = TemporaryFolder()
        let date = Date(timeIntervalSince1970: 1_795_000_000)
        let first = try TranscriptRecorder(directory: folder.path, date: date)
        let second = try TranscriptRecorder(directory: folder.path, date: date)
        XCTAssertNotEqual(first.path, second.path)
        XCTAssertTrue(second.path.hasSuffix("-2.sdscript"))
    }

    func testRecordReplayCheckPasses() throws {
        let folder = TemporaryFolder()
        let (path, recorded) = try recordSession(in: folder, lines: [
            "prompt a lighthouse", "set size 64x64", "set steps 2", "gen 2", "set sampler euler a", "gen",
        ])
        XCTAssertEqual(recorded.images.count, 3)
        let replay = makeSession(seeds: [])
        let summary = replay.runScript(at: path, options: ScriptOptions(check: true))
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.checked, 3)
        XCTAssertEqual(replay.images.map(\.sha256), recorded.images.map(\.sha256))
    }

    /// A check that stops at an error counts the recorded images it never compared, so a summary of
    /// one match is not read as a whole transcript checked; `--keep-going` goes past the error.
    func testACheckStoppedByAnErrorCountsTheImagesItDidNotReach() throws {
        let folder = TemporaryFolder()
        let (path, _) = try recordSession(in: folder, lines: ["prompt a lighthouse", "set size 64x64", "set steps 2", "gen",
                                                              "seed 3", "gen 2"])
        var lines = try String(contentsOfFile: path, encoding: .utf8).components(separatedBy: "\n")
        let second = try XCTUnwrap(lines.firstIndex(of: "seed 3"))
        lines.insert("init \(folder.path)/gone.png", at: second + 1)
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)

        let stopped = makeSession(seeds: []).runScript(at: path, options: ScriptOptions(check: true))
        XCTAssertEqual(stopped.errors.map(\.location?.line), [second + 2])
        XCTAssertEqual(stopped.checked, 1)
        XCTAssertEqual(stopped.unreached, 2)
        let kept = makeSession(seeds: []).runScript(at: path, options: ScriptOptions(check: true, keepGoing: true))
        XCTAssertEqual(kept.checked, 3)
        XCTAssertEqual(kept.unreached, 0)
    }

    func testTamperedHashFailsNamingItsLine() throws {
        let folder = TemporaryFolder()
        let (path, _) = try recordSession(in: folder, lines: ["prompt a lighthouse", "set size 64x64", "set steps 2", "gen 2"])
        var lines = try String(contentsOfFile: path, encoding: .utf8).components(separatedBy: "\n")
        let target = try XCTUnwrap(lines.lastIndex { $0.hasPrefix("#=> image 2") })
        let original = lines[target]
        let recordedHash = String(original.suffix(64))
        let tamperedHash = String(recordedHash.dropLast()) + (recordedHash.hasSuffix("0") ? "1" : "0")
        lines[target] = String(original.dropLast(64)) + tamperedHash
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)

        let io = BufferIO()
        let replay = makeSession(io: io, seeds: [])
        let summary = replay.runScript(at: path, options: ScriptOptions(check: true))
        XCTAssertEqual(summary.checked, 1)
        XCTAssertEqual(summary.errors.map(\.location), [SourceLocation(file: path, line: target + 1)])
        XCTAssertEqual(io.diagnostics, [
            "\(path):\(target + 1): check: image 2 differs: sha256 recorded \(tamperedHash), replayed \(recordedHash)",
        ])
    }

    func testCheckReportsAResultWithNoImageAndAMalformedLine() {
        let folder = TemporaryFolder()
        let hash = String(repeating: "0", count: 64)
        let script = folder.write("t.sdscript", "prompt x\n#=> image 1 seed=1 size=64x64 sha256=\(hash)\n#=> image 2 broken\n")
        let io = BufferIO()
        let summary = makeSession(io: io).runScript(at: script, options: ScriptOptions(check: true))
        XCTAssertEqual(io.diagnostics, [
            "\(script):2: check: image 1: recorded, but the command before made 0 images",
            "\(script):3: check: cannot read this result line: #=> image 2 broken",
        ])
        XCTAssertEqual(summary.errors.count, 2)
    }

    func testReplayWithoutCheckIgnoresResultLines() {
        let folder = TemporaryFolder()
        let script = folder.write("t.sdscript", "prompt x\n#=> image 1 broken\nset steps 3\n")
        XCTAssertTrue(makeSession().runScript(at: script).succeeded)
    }

    func testCheckWritesNoImages() throws {
        let folder = TemporaryFolder()
        let (path, _) = try recordSession(in: folder, lines: ["prompt x", "set size 64x64", "set steps 1", "gen"])
        let saver = RecordingSaver()
        let summary = makeSession(saver: saver).runScript(at: path, options: ScriptOptions(check: true))
        XCTAssertEqual(summary.checked, 1)
        XCTAssertTrue(saver.saved.isEmpty)
    }
}

final class CompletionTests: XCTestCase {
    func testLoRATagsCompleteInAPrompt() {
        let folder = TemporaryFolder()
        folder.write("ink.safetensors", "")
        folder.write("sub/ink-wash.safetensors", "")
        let session = makeSession()
        XCTAssertEqual(session.execute("set lora-dir \(folder.path)"), .ok)
        XCTAssertEqual(session.complete("prompt a fox, <lo").candidates, ["<lora:ink:1>", "<lora:ink-wash:1>"])
        XCTAssertEqual(session.complete("prompt a fox,<lora:ink-").insertion, "wash:1> ")
        XCTAssertEqual(session.complete("prompt a fox <x").candidates, [])
    }

    func testCommandsSettingsAndValues() {
        let session = makeSession()
        XCTAssertEqual(session.complete("se").candidates, ["seed", "set"])
        XCTAssertEqual(session.complete("se").insertion, "")
        XCTAssertEqual(session.complete("hist").insertion, "ory ")
        XCTAssertEqual(session.complete("set sam").candidates, ["sampler"])
        XCTAssertEqual(session.complete("set sam").insertion, "pler ")
        XCTAssertEqual(session.complete("set sampler eu").candidates, ["euler", "euler-a"])
        XCTAssertEqual(session.complete("set sampler dpmpp-2m-").insertion, "karras ")
        XCTAssertEqual(session.complete("set preview ").candidates, ["auto", "sixel", "off"])
        XCTAssertEqual(session.complete("set style n").candidates, ["none"])
        XCTAssertEqual(session.complete("unset clip").candidates, ["clip-skip"])
        XCTAssertEqual(session.complete("help ge").candidates, ["gen"])
        XCTAssertEqual(session.complete("prompt a fo").candidates, [])
    }

    func testPaths() {
        let folder = TemporaryFolder()
        folder.write("scripts/tour.sdscript", "")
        folder.write("scripts/tone.sdscript", "")
        let session = makeSession()
        XCTAssertEqual(session.complete("run \(folder.path)/scr").candidates, ["\(folder.path)/scripts/"])
        XCTAssertEqual(session.complete("run \(folder.path)/scr").insertion, "ipts/")
        let both = session.complete("run \(folder.path)/scripts/t")
        XCTAssertEqual(both.candidates, ["\(folder.path)/scripts/tone.sdscript", "\(folder.path)/scripts/tour.sdscript"])
        XCTAssertEqual(both.insertion, "o")
        XCTAssertEqual(both.displayCandidates, ["tone.sdscript", "tour.sdscript"])
        XCTAssertEqual(session.complete("set outdir \(folder.path)/s").candidates, ["\(folder.path)/scripts/"])
        XCTAssertEqual(session.complete("model d").candidates.first, "download")
        XCTAssertEqual(session.complete("mask \(folder.path)/scripts/tou").candidates, ["\(folder.path)/scripts/tour.sdscript"])
        XCTAssertEqual(session.complete("set mask \(folder.path)/scr").candidates, ["\(folder.path)/scripts/"])
    }

    func testInitCompletesImageNumbersAndPaths() {
        let session = makeSession()
        XCTAssertEqual(session.complete("init 1").candidates, [], "no images yet")
        for _ in 0..<12 { XCTAssertEqual(session.execute("gen"), .ok) }
        XCTAssertEqual(session.complete("init 1").candidates, ["1", "10", "11", "12"])
        XCTAssertEqual(session.complete("set init 9").candidates, ["9"])
        XCTAssertEqual(session.complete("set hires-upscaler latent-n").candidates, ["latent-nearest", "latent-nearest-exact"])
    }
}
