import Diffusion
import Foundation
import Imaging
import ModelStore
import TestSupport
import XCTest
@testable import SDScript

/// The session on the real engine and the tiny fixture model.
final class EngineBatchTests: XCTestCase {
    /// `gen 4` is one engine batch: the LoRAs, embeddings and text are prepared once, so the text
    /// encoder runs for one image's worth of text (the prompt's chunk and the negative prompt's).
    func testGen4RunsTheTextEncoderOnce() throws {
        let io = BufferIO()
        let session = Session(components: Components(generatorLoader: PipelineLoader(), models: FixedModelCatalog(),
                                                     styles: StyleBook(environment: [:]), saver: nil), io: io)
        for line in ["model \(Fixture.tinySD15Folder.path)", "prompt a red fox", "negative blurry", "seed 9",
                     "set size 64x64", "set steps 2", "set sampler euler", "gen 4"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        let generator = try XCTUnwrap(try session.loadedGenerator() as? PipelineGenerator)
        XCTAssertEqual(generator.pipeline.textEncoderEvaluations, 2, "one chunk for the prompt, one for the negative prompt")
        XCTAssertEqual(session.images.map(\.request.engine.seed), [9, 10, 11, 12])
        XCTAssertEqual(Set(session.images.map(\.sha256)).count, 4, "four seeds, four pictures")
        XCTAssertEqual(io.lines.filter { $0.hasPrefix("image ") }.count, 4, "each image is shown as it is finished")
    }

    /// An error in a grid's cell is the grid's, as the user typed it, not `gen:`; a LoRA that the
    /// second cell's prompt names and that is not there is found before the first cell is made.
    func testAGridsEngineErrorsNameTheGrid() throws {
        let session = Session(components: Components(generatorLoader: PipelineLoader(), models: FixedModelCatalog(),
                                                     styles: StyleBook(environment: [:]), saver: nil), io: BufferIO())
        for line in ["model \(Fixture.tinySD15Folder.path)", "prompt a fox", "set size 64x64", "set steps 1"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        let failure = try XCTUnwrap(session.execute("grid X=sr:fox,<lora:nothere:1>").failure)
        XCTAssertTrue(failure.description.hasPrefix("grid: the cell "), failure.description)
        XCTAssertTrue(failure.description.contains(": no LoRA named 'nothere' in "), failure.description)
        XCTAssertTrue(failure.description.hasSuffix("; nothing was made"), failure.description)
        XCTAssertTrue(session.images.isEmpty)
    }

    /// Ctrl-C is seen between the UNet's blocks, not only when a step ends (a step takes minutes at
    /// the largest sizes): a cancel that comes during the first step stops it, before any progress.
    func testACancelStopsTheStepItComesIn() throws {
        let session = Session(components: Components(generatorLoader: PipelineLoader(), models: FixedModelCatalog(),
                                                     styles: StyleBook(environment: [:]), saver: nil), io: BufferIO())
        XCTAssertEqual(session.execute("model \(Fixture.tinySD15Folder.path)"), .ok)
        let generator = try session.loadedGenerator()
        var polls = 0, steps = 0
        let request = GenerationRequest(prompt: "a fox", seed: 1, steps: 3, width: 64, height: 64, sampler: .euler)
        XCTAssertThrowsError(try generator.generate(request, folders: ResourceFolders(), progress: { _ in steps += 1 },
                                                    isCancelled: { polls += 1; return polls > 1 }, image: { _ in })) { error in
            XCTAssertEqual(error as? PipelineError, .cancelled)
        }
        XCTAssertEqual(steps, 0, "stopped inside the first step")
    }

    /// The progress counts the steps asked for: PNDM evaluates the UNet steps + 1 times (its first
    /// step takes two), but `set steps 4` shows 0/4 … 4/4, never 5.
    func testProgressCountsTheStepsAskedForWithPNDM() throws {
        let io = BufferIO()
        let session = Session(components: Components(generatorLoader: PipelineLoader(), models: FixedModelCatalog(),
                                                     styles: StyleBook(environment: [:]), saver: nil), io: io)
        for line in ["model \(Fixture.tinySD15Folder.path)", "prompt a red fox", "seed 9", "set size 64x64", "set steps 4",
                     "set sampler pndm", "gen"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        let steps = io.events.compactMap { event -> (Int, Int)? in
            guard case .progress(let progress, _, _, _) = event else { return nil }
            return (progress.step, progress.total)
        }
        XCTAssertEqual(steps.map(\.0), [0, 1, 2, 3, 4])
        XCTAssertEqual(Set(steps.map(\.1)), [4])
    }

    /// `tokens` flags a LoRA tag whose file is not found (which `gen` would refuse), with the
    /// closest name, and lists a found one as before.
    func testTokensFlagsAMissingLoRA() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-lora-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(at: FixturePaths.root.appendingPathComponent("lora/tiny-lora.safetensors"),
                                         to: folder.appendingPathComponent("tiny-lora.safetensors"))
        let io = BufferIO()
        let session = Session(components: Components(generatorLoader: PipelineLoader(), models: FixedModelCatalog(),
                                                     styles: StyleBook(environment: [:]), saver: nil), io: io)
        for line in ["model \(Fixture.tinySD15Folder.path)", "set lora-dir \(folder.path)",
                     "prompt a fox <lora:tiny-lora:0.8> <lora:tiny-lorra>", "tokens"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        let report = io.lines.joined(separator: "\n")
        XCTAssertTrue(report.contains("LoRA tiny-lora: text encoder x0.8, UNet x0.8\n"), report)
        XCTAssertTrue(report.contains("LoRA tiny-lorra: not found (looked for tiny-lorra.safetensors in \(folder.path)"), report)
        XCTAssertTrue(report.contains("did you mean 'tiny-lora'?"), report)

        // Prompt editing that resolves to one text over the steps is reported as that text, not the brackets.
        io.lines = []
        for line in ["prompt a [lion:tiger:0.4]", "set steps 2", "tokens"] { XCTAssertEqual(session.execute(line), .ok, line) }
        XCTAssertEqual(io.lines.last, "2 tokens in 1 chunk of up to 75\n  chunk 1 (2 tokens): a tiger")
    }
}

final class LoadWarningTests: XCTestCase {
    /// A diffusers folder without `tokenizer/` loads with the built-in vocabulary, and says so once.
    func testAFolderWithoutATokenizerSaysSoOnce() throws {
        let folder = TemporaryFolder()
        let model = folder.path + "/model"
        try FileManager.default.copyItem(atPath: Fixture.tinySD15Folder.path, toPath: model)
        try FileManager.default.removeItem(atPath: model + "/tokenizer")
        let io = BufferIO()
        let session = Session(components: Components(generatorLoader: PipelineLoader(), models: FixedModelCatalog(),
                                                     styles: StyleBook(environment: [:]), saver: nil), io: io)
        for line in ["model \(model)", "prompt a fox", "tokens", "tokens"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        let warnings = io.diagnostics.filter { $0.contains("no tokenizer/ folder") }
        XCTAssertEqual(warnings.count, 1, "\(io.diagnostics)")
    }
}

final class ModelSwitchTests: XCTestCase {
    /// `model PATH` opens the checkpoint at once, says what it loaded, and keeps the working model
    /// when the new one is refused.
    func testARefusedModelKeepsTheWorkingOne() throws {
        let folder = TemporaryFolder()
        let good = Fixture.tinySD15Folder.path
        let single = try Data(contentsOf: Fixture.tinySD15SingleFile)
        let truncated = folder.path + "/truncated.safetensors"
        try single.prefix(single.count / 2).write(to: URL(fileURLWithPath: truncated))
        let io = BufferIO()
        let session = Session(components: Components(generatorLoader: PipelineLoader(), models: ModelStoreCatalog(),
                                                     styles: StyleBook(environment: [:]), saver: nil), io: io)
        XCTAssertEqual(session.execute("model \(good)"), .ok)
        XCTAssertTrue(io.lines.contains { $0.hasPrefix("model: \(good)  diffusers  F32") }, "\(io.lines)")
        guard case .failed(let diagnostic) = session.execute("model \(truncated)") else { return XCTFail("accepted a truncated file") }
        XCTAssertTrue(diagnostic.description.hasPrefix("model: "), diagnostic.description)
        XCTAssertEqual(diagnostic.description.components(separatedBy: truncated).count - 1, 1, "the path once: \(diagnostic)")
        XCTAssertEqual(session.settings.resources.model, good, "the working model stays")
        for line in ["prompt a fox", "seed 1", "set size 64x64", "set steps 1", "gen"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
    }

    /// A1111's `Lora hashes` against the files here: the same file is silent, another file under the
    /// name and a missing LoRA are said (the fixture's hash, 3d755519d909, is FileHashTests').
    func testLoadComparesTheLoRAHashesWithTheFilesHere() throws {
        let folder = TemporaryFolder()
        let loras = folder.path + "/loras"
        try FileManager.default.createDirectory(atPath: loras + "/styles", withIntermediateDirectories: true)
        for name in ["mine", "styles/other"] {
            try FileManager.default.copyItem(atPath: Fixture.url("lora/tiny-lora.safetensors").path, toPath: "\(loras)/\(name).safetensors")
        }
        let text = "a castle <lora:mine:1> <lora:other:0.5> <lora:gone:1>\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, "
            + "Size: 64x64, Lora hashes: \"mine: 3d755519d909, other: 0123456789ab, gone: abcdefabcdef\", RNG: CPU"
        let path = folder.path + "/a1111.png"
        try writeA1111PNG(text, to: path)
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertEqual(session.execute("set lora-dir \(loras)"), .ok)
        XCTAssertEqual(session.execute("load \(path)"), .ok)
        let searched = session.loraDirectories().map(\.path).joined(separator: ", ")
        XCTAssertEqual(io.diagnostics, ["load: \(path): gen will not reproduce Lora hashes: other: 0123456789ab (other.safetensors's is 3d755519d909), "
                                        + "Lora gone (not in \(searched))"])
    }

    /// `load` of an A1111 image says in one line what `gen` will not reproduce.
    func testLoadSaysWhatWillDiffer() throws {
        let folder = TemporaryFolder()
        let text = "a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Model hash: deadbeef00, "
            + "Denoising strength: 0.7, Hires upscale: 2"
        let path = folder.path + "/a1111.png"
        try writeA1111PNG(text, to: path)
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertEqual(session.execute("load \(path)"), .ok)
        XCTAssertEqual(session.settings.request.seed, .fixed(5))
        // A1111's txt2img hires keys are the hires fix; its Denoising strength is the second pass's.
        // No `RNG` key: A1111's default, the GPU's noise, which sdrepl does not draw.
        XCTAssertEqual(io.diagnostics, ["load: \(path): gen will not reproduce RNG: GPU (A1111's default noise; sdrepl's is A1111's RNG: CPU), "
                                        + "Model hash: deadbeef00 (the current model's is 0123456789)"])
        XCTAssertEqual(session.settings.request.hires, .scale(2))
        XCTAssertEqual(session.settings.request.hiresStrength, 0.7)
        XCTAssertEqual(session.settings.request.hiresUpscaler, .latent)
        XCTAssertNil(session.settings.request.initImage)
        // `Hires upscaler: None`: A1111's images.resize_image resizes with PIL's Lanczos, as sdrepl's lanczos.
        let none = "a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Denoising strength: 0.5, "
            + "Hires upscale: 2, Hires upscaler: None, RNG: CPU"
        try writeA1111PNG(none, to: path)
        let warned = io.diagnostics.count
        XCTAssertEqual(session.execute("load \(path)"), .ok)
        XCTAssertEqual(session.settings.request.hiresUpscaler, .lanczos)
        XCTAssertEqual(io.diagnostics.count, warned, "nothing to say: \(io.diagnostics.suffix(1))")
        // An img2img recipe whose init image is not named: said in the same one line.
        let img2img = "a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Denoising strength: 0.6, RNG: CPU"
        try writeA1111PNG(img2img, to: path)
        XCTAssertEqual(session.execute("load \(path)"), .ok)
        XCTAssertEqual(io.diagnostics.last, "load: \(path): it started from an init image (Denoising strength 0.6): 'init FILE' or 'init N' to give it again")
        XCTAssertEqual(session.settings.request.strength, 0.6)
        XCTAssertNil(session.settings.request.hires)
        // A1111 1.9+ names the schedule apart: a sampler sdrepl has without that schedule loads
        // everything else and says so; one it has with it ("DPM++ 2M" + "Karras") is exact.
        let karras = "a castle\nSteps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 9, Size: 64x64, RNG: CPU"
        try writeA1111PNG(karras, to: path)
        XCTAssertEqual(session.execute("load \(path)"), .ok)
        XCTAssertEqual(session.settings.request.seed, .fixed(9))
        XCTAssertEqual(session.settings.request.sampler, .eulerAncestral)
        XCTAssertEqual(io.diagnostics.last, "load: \(path): gen will not reproduce Schedule type: Karras (euler-a with its own schedule instead)")
        let exact = karras.replacingOccurrences(of: "Euler a", with: "DPM++ 2M")
        try writeA1111PNG(exact, to: path)
        let before = io.diagnostics.count
        XCTAssertEqual(session.execute("load \(path)"), .ok)
        XCTAssertEqual(session.settings.request.sampler, .dpmpp2mKarras)
        XCTAssertEqual(io.diagnostics.count, before, "nothing differs")
    }

    /// Values `set` would refuse (a hand-edited infotext) keep the session's own, each named once.
    func testLoadKeepsWhatSetWouldRefuse() throws {
        let folder = TemporaryFolder()
        let text = "a fox\nSteps: 99999999, Sampler: Euler, CFG scale: nan, Seed: 4, Size: 100000x64, Clip skip: 1000, RNG: CPU"
        let path = folder.path + "/odd.png"
        try writeA1111PNG(text, to: path)
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertEqual(session.execute("load \(path)"), .ok)
        let request = session.settings.request
        XCTAssertEqual([request.steps, request.width, request.height, request.clipSkip], [25, 512, 64, 1])
        XCTAssertEqual(request.cfg, 7.5)
        XCTAssertEqual(request.seed, .fixed(4), "the rest is loaded")
        XCTAssertEqual(io.diagnostics, ["load: \(path): its steps 99999999 (sdrepl takes 1 to 1000; kept 25); "
                                        + "its CFG scale nan (sdrepl takes 0 to 50; kept 7.5); "
                                        + "its width 100000 (sdrepl takes a multiple of 8 from 64 to 2048; kept 512); "
                                        + "its clip skip 1000 (sdrepl takes 1 to 12; kept 1)"])
        XCTAssertEqual(session.execute("gen"), .ok)
        // A sampler sdrepl lacks keeps the session's; the rest of the recipe loads.
        let unipc = "a heron\nSteps: 12, Sampler: UniPC, CFG scale: 5, Seed: 8, Size: 64x64, RNG: CPU"
        try writeA1111PNG(unipc, to: path)
        XCTAssertEqual(session.execute("load \(path)"), .ok)
        XCTAssertEqual(session.settings.request.prompt, "a heron")
        XCTAssertEqual([session.settings.request.steps, session.settings.request.width], [12, 64])
        XCTAssertEqual(session.settings.request.sampler, request.sampler)
        XCTAssertEqual(io.diagnostics.last, "load: \(path): gen will not reproduce Sampler: UniPC (sdrepl has no such sampler; kept \(request.sampler.rawValue))")
    }
}

final class EngineErrorTests: XCTestCase {
    /// The engine's error reaches the session whole: its type for code, one line for the user.
    func testAMissingLoRAIsTheEnginesTypedError() throws {
        let session = Session(components: Components(generatorLoader: PipelineLoader(), models: FixedModelCatalog(),
                                                     styles: StyleBook(environment: [:]), saver: nil), io: BufferIO())
        for line in ["model \(Fixture.tinySD15Folder.path)", "set size 64x64", "set steps 1", "prompt a fox <lora:nowhere:1>"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        guard case .failed(let diagnostic) = session.execute("gen"), case .engine(let failure, "gen") = diagnostic.error else {
            return XCTFail("gen with a missing LoRA did not fail with the engine's error")
        }
        XCTAssertTrue(failure.error is LoRAError, "\(type(of: failure.error))")
        XCTAssertTrue(diagnostic.description.hasPrefix("gen: "), diagnostic.description)
        XCTAssertTrue(diagnostic.description.contains("nowhere"), diagnostic.description)
    }
}

/// `load` of an image-to-image or inpainting recipe whose init image the file names as typed.
final class LoadInitPathTests: XCTestCase {
    /// Older images kept the init path as typed (`res/init.png`); it is found from the current
    /// folder, as the mask already was. Without its init image a mask is not restored either, since
    /// the next `gen` would refuse it ("a mask needs an init image").
    func testARelativeInitIsFoundAndAMaskIsNeverRestoredAlone() throws {
        let folder = TemporaryFolder()
        let blank = try RGBImage(width: 64, height: 64, pixels: Array(repeating: 90, count: 64 * 64 * 3))
        try FileManager.default.createDirectory(atPath: folder.path + "/res", withIntermediateDirectories: true)
        for name in ["res/init.png", "res/mask.png"] {
            try Data(try PNGFile.encode(blank, chunks: [])).write(to: URL(fileURLWithPath: folder.path + "/" + name))
        }
        func recipe(init source: String) throws -> String {
            let path = folder.path + "/made-\(UUID().uuidString).png"
            let infotext = "a house\nSteps: 3, Sampler: Euler, CFG scale: 7, Seed: 3, Size: 64x64, Denoising strength: 0.5, Mask blur: 4, RNG: CPU"
            let own = #"{"init":"\#(source)","mask":"res/mask.png"}"#
            try Data(try PNGFile.encode(blank, chunks: [.text("parameters", infotext), .text("Prompt", "a house"), .text("Parameters", own)]))
                .write(to: URL(fileURLWithPath: path))
            return path
        }
        let here = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(folder.path)
        defer { FileManager.default.changeCurrentDirectoryPath(here) }
        let io = BufferIO()
        let session = makeSession(io: io)
        XCTAssertEqual(session.execute("load \(try recipe(init: "res/init.png"))"), .ok)
        XCTAssertEqual(session.settings.request.initImage, .file(URL(fileURLWithPath: folder.path + "/res/init.png").standardizedFileURL.path))
        XCTAssertEqual(session.settings.request.mask, "res/mask.png")
        XCTAssertEqual(io.diagnostics, [])
        XCTAssertEqual(session.execute("load \(try recipe(init: "res/gone.png"))"), .ok)
        XCTAssertNil(session.settings.request.initImage)
        XCTAssertNil(session.settings.request.mask)
        XCTAssertTrue(io.diagnostics.last?.contains("its mask res/mask.png is not restored without the init image") ?? false, io.diagnostics.last ?? "")
    }
}

/// A small PNG carrying `text` as A1111's `parameters`, at `path`.
func writeA1111PNG(_ text: String, to path: String) throws {
    try Data(try PNGFile.encode(try RGBImage(width: 8, height: 8, pixels: Array(repeating: 0, count: 192)),
                                chunks: [PNGTextChunk(kind: .tEXt, keyword: "parameters", text: text)])).write(to: URL(fileURLWithPath: path))
}
