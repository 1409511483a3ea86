import Diffusion
import Foundation
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
