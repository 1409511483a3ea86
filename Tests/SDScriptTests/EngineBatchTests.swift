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
