import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// Textual-inversion embeddings against diffusers' `load_textual_inversion` on the tiny model
/// (`ti/`, made by `Tests/Fixtures/make_ti_fixtures.py`; `ti/manifest.json` has the Python lines),
/// and the chunking rules of A1111's `tokenize_line`.
final class TextualInversionTests: XCTestCase {
    static let folder = Fixture.url("ti")

    private func pixels(_ image: PixelImage, every step: Int) -> (sub: [Float], means: [Float]) {
        var sub: [Float] = []
        var sums = [Double](repeating: 0, count: 3)
        for y in 0..<image.height {
            for x in 0..<image.width {
                for c in 0..<3 {
                    let value = Float(image.rgb[(y * image.width + x) * 3 + c]) / 255
                    sums[c] += Double(value)
                    if y % step == 0 && x % step == 0 { sub.append(value) }
                }
            }
        }
        return (sub, sums.map { Float($0 / Double(image.width * image.height)) })
    }

    /// `pipe.load_textual_inversion(...)` for both files, then
    /// `pipe(prompt, negative_prompt=negative, num_inference_steps=4, guidance_scale=7.5, height=96,
    /// width=96, generator=torch.Generator("cpu").manual_seed(33), output_type="np")`.
    func testEmbeddingsMatchDiffusers() throws {
        let references = try Fixture.tensors("ti/references")
        let pipe = try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast))
        for (name, prompt, negative, loaded) in [("neg", "a red fox in the snow", "tinyneg, blurry", true),
                                                 ("pos", "a tinyglow fox in the snow", "", true),
                                                 ("none", "a red fox in the snow", "tinyneg, blurry", false)] {
            pipe.embeddingDirectories = loaded ? [Self.folder] : []
            pipe.useEmbeddings()
            let (cond, uncond) = try pipe.encodeText(prompt: prompt, negativePrompt: negative, clipSkip: 1, guidance: true)
            if name == "pos" {
                assertParity(cond, try references.tensor("pos/text"), "pos: prompt with tinyglow")
            } else {
                assertParity(try XCTUnwrap(uncond), try references.tensor("\(name)/text_negative"), "\(name): negative prompt")
            }
            let image = try pipe.generate(GenerationRequest(prompt: prompt, negativePrompt: negative, seed: 33, steps: 4,
                                                            guidanceScale: 7.5, width: 96, height: 96, sampler: .pndm))[0].image
            let (sub, means) = pixels(image, every: 16)
            assertClose(sub, try references.tensor("\(name)/image_every16th").data, tolerance: 1.0 / 255 + 1e-6, "\(name): image[::16, ::16]")
            assertClose(means, try references.tensor("\(name)/image_mean").data, tolerance: 0.5 / 255 + 1e-5, "\(name): channel means")
        }
    }

    func testNamesBecomeTheirVectorsAndMoveWholeToTheNextChunk() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        var chunker = PromptChunker(tokenizer: tokenizer)
        chunker.embeddings = EmbeddingLibrary(directories: [Self.folder], tokenizer: tokenizer, width: 8)
        XCTAssertEqual(chunker.embeddings.names, ["references", "tinyglow", "tinyneg"])
        XCTAssertThrowsError(try chunker.chunk("references"), "the fixture's reference file is no embedding")
        let short = try chunker.chunk("(tinyneg:1.2), blurry")
        let chunk = short.chunks[0]
        XCTAssertEqual(Array(chunk.tokens[0...5]), [tokenizer.startToken, 0, 0, 0, tokenizer.commaToken, tokenizer.tokenize("blurry")[0]])
        XCTAssertEqual(Array(chunk.weights[1...4]), [1.2, 1.2, 1.2, 1])
        XCTAssertEqual(chunk.fixes.map(\.offset), [0])
        XCTAssertEqual(chunk.fixes.map(\.count), [3])
        XCTAssertEqual(short.tokenCount, 5)
        XCTAssertEqual(chunker.text(of: chunk), "(<tinyneg>:1.2) , blurry")
        // 74 words then a 3-vector embedding: it does not fit in the first chunk, so it starts the next.
        let long = try chunker.chunk(Array(repeating: "cat", count: 74).joined(separator: " ") + " tinyneg")
        XCTAssertEqual(long.chunks.count, 2)
        XCTAssertEqual(long.chunks[0].promptTokenCount, 74)
        XCTAssertEqual(long.chunks[1].fixes.map(\.offset), [0])
        // Without the library the name is plain text.
        XCTAssertEqual(try PromptChunker(tokenizer: tokenizer).chunk("tinyneg").chunks[0].fixes, [])
    }

    /// A pickle outside PyTorch's zip format and an embedding of another width stop only the prompts that use them.
    func testUnreadablePicklesAndWrongWidthsAreRefused() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ti-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        FileManager.default.createFile(atPath: folder.appendingPathComponent("oldneg.pt").path, contents: Data([0x80, 2]))
        var chunker = PromptChunker(tokenizer: tokenizer)
        chunker.embeddings = EmbeddingLibrary(directories: [folder], tokenizer: tokenizer, width: 8)
        XCTAssertNoThrow(try chunker.chunk("a fox"))
        XCTAssertThrowsError(try chunker.chunk("a fox, oldneg")) {
            guard case let .unusable(name, reason)? = $0 as? EmbeddingError else { return XCTFail("\($0)") }
            XCTAssertEqual(name, "oldneg")
            XCTAssertTrue(reason.contains("oldneg.pt is a pickle outside PyTorch's zip format"), reason)
        }
        let writer = try SafetensorsWriter(url: folder.appendingPathComponent("wide.safetensors"),
                                           tensors: [.init(name: "emb_params", dtype: .f32, shape: [2, 768])])
        try writer.append([Float](repeating: 0.1, count: 2 * 768))
        try writer.finish()
        chunker.embeddings = EmbeddingLibrary(directories: [folder], tokenizer: tokenizer, width: 8)
        XCTAssertNoThrow(try chunker.chunk("a fox"), "an unusable file stops only the prompts that use it")
        XCTAssertThrowsError(try chunker.chunk("a wide fox")) {
            XCTAssertTrue("\($0)".hasPrefix("the prompt uses the embedding 'wide', but the embedding"), "\($0)")
            XCTAssertTrue("\($0)".contains("has shape [2, 768], but SD1.5's text encoder needs [n, 8]"), "\($0)")
        }
    }

    func testAViewClaimingBillionsOfVectorsIsRefusedBeforeItsValuesAreRead() throws {
        // torch.save({'string_to_param': {'*': torch.zeros(1, 8).expand(2**28, 8)}}, 'bomb.pt'): 1.6 KB on
        // disk, 8 GB if read. Only the prompts that name it are refused, and nothing is allocated.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ti-bomb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var p = PickleBuilder()
        p.emptyDict(); p.string("string_to_param")
        p.emptyDict(); p.string("*")
        p.tensor(storageType: "FloatStorage", key: "0", numel: 8, shape: [1 << 28, 8], strides: [0, 1])
        p.setitem(); p.setitem(); p.stop()
        let url = folder.appendingPathComponent("bomb.pt")
        try Data(torchArchive(p.bytes, storages: [("0", [UInt8](repeating: 0, count: 32))], name: "bomb")).write(to: url)
        XCTAssertThrowsError(try TextualInversion(url: url, width: 8)) {
            XCTAssertEqual($0 as? EmbeddingError, .tooLong(name: "bomb", count: 1 << 28))
        }
        let tokenizer = try CLIPTokenizer.bundled()
        var chunker = PromptChunker(tokenizer: tokenizer)
        chunker.embeddings = EmbeddingLibrary(directories: [folder], tokenizer: tokenizer, width: 8)
        XCTAssertNoThrow(try chunker.chunk("a red fox"))
        XCTAssertThrowsError(try chunker.chunk("a bomb fox")) {
            XCTAssertEqual("\($0)", "the embedding 'bomb' has 268435456 vectors, more than a 75-token chunk holds; it is damaged or not an SD1.5 embedding")
        }
    }
}
