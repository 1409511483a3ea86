import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// LoRAs, embeddings, VAE files and TAESD decoders read from PyTorch pickles as from safetensors.
/// The embedding is torch.save's own (`Tests/Fixtures/pickle/embedding.pt`); the others are
/// torch.save-layout twins of the safetensors fixtures written by `writeTorchTwin` (the same bytes
/// in `_rebuild_tensor_v2` storages), so each must give exactly what its safetensors file gives.
final class PickledResourceTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws { dir = try makeWeightsTestDirectory(self) }

    /// `tiny-lora.pt` (kohya keys at the top of the pickle, as kohya's trainer saved `.pt` LoRAs)
    /// is found by `<lora:tiny-lora:0.8>` and draws the safetensors LoRA's image, bit for bit.
    func testALoRAFromAPickle() throws {
        let lora = try SafetensorsFile(url: Fixture.url("lora/tiny-lora.safetensors"))
        let pt = try writeTorchTwin(of: lora, to: dir.appendingPathComponent("tiny-lora.pt"), wrapper: nil)
        XCTAssertEqual(try LoRALibrary.locate("tiny-lora", in: [dir]), pt)
        XCTAssertEqual(try LoRAFile(url: pt).modules.count, try LoRAFile(url: Fixture.url("lora/tiny-lora.safetensors")).modules.count)

        let pipe = try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .low))
        let request = GenerationRequest(prompt: "a red fox in the snow <lora:tiny-lora:0.8>", seed: 33, steps: 3,
                                        guidanceScale: 7.5, width: 64, height: 64, sampler: .pndm)
        pipe.loraDirectories = [Fixture.url("lora")]
        let fromSafetensors = try pipe.generate(request)[0]
        pipe.loraDirectories = [dir]
        let fromPickle = try pipe.generate(request)[0]
        XCTAssertEqual(fromPickle.loras.map(\.file.lastPathComponent), ["tiny-lora.pt"])
        XCTAssertEqual(fromPickle.image.rgb, fromSafetensors.image.rgb)
        pipe.loraDirectories = []
        XCTAssertNotEqual(try pipe.generate(GenerationRequest(prompt: "a red fox in the snow", seed: 33, steps: 3, guidanceScale: 7.5,
                                                              width: 64, height: 64, sampler: .pndm))[0].image.rgb,
                          fromPickle.image.rgb, "the LoRA changed the image")
    }

    /// A1111's `.pt` embedding (`string_to_param` `{"*": [2, 8]}`, torch.save's file) read to the
    /// vectors torch holds, and used by writing its name.
    func testAnA1111EmbeddingFromAPickle() throws {
        let url = dir.appendingPathComponent("tinypickle.pt")
        try FileManager.default.copyItem(at: Fixture.url("pickle/embedding.pt"), to: url)
        let embedding = try TextualInversion(url: url, width: 8)
        let expected = try Fixture.tensors("pickle/reference").tensor("embedding/string_to_param.*")
        XCTAssertEqual(embedding.count, 2)
        XCTAssertEqual(embedding.vectors.map(\.bitPattern), expected.data.map(\.bitPattern))

        let tokenizer = try CLIPTokenizer.bundled()
        var chunker = PromptChunker(tokenizer: tokenizer)
        chunker.embeddings = EmbeddingLibrary(directories: [dir], tokenizer: tokenizer, width: 8)
        let fixes = try chunker.chunk("a tinypickle fox").chunks[0].fixes
        XCTAssertEqual(fixes.map(\.name), ["tinypickle"])
        XCTAssertEqual(fixes.first?.vectors, embedding.vectors)
    }

    /// `vae-ft-mse-840000-ema-pruned.ckpt`'s layout: `{"state_dict": {"encoder.…", "decoder.…"}}`,
    /// here the fixture single file's `first_stage_model.*`; it decodes as that file's VAE.
    func testAVAEFromACkpt() throws {
        let single = try SafetensorsFile(url: Fixture.tinySD15SingleFile)
        let ckpt = try writeTorchTwin(of: single, to: dir.appendingPathComponent("vae-tiny.ckpt")) { name in
            name.hasPrefix("first_stage_model.") ? String(name.dropFirst("first_stage_model.".count)) : nil
        }
        let config = try TinySD15Fixture.config(VAEConfig.self, .vae)
        let expected = try TinySD15Fixture.vae(try Checkpoint(url: Fixture.tinySD15SingleFile))
        let decoder = try loadLatentDecoder(ckpt, vaeConfig: config)
        XCTAssertEqual(decoder.decoderName, "VAE")
        var generator = TorchGenerator(seed: 8)
        let latents = generator.randn([1, 4, 8, 8])
        XCTAssertEqual(try decoder.decode(latents, cancellation: nil), try expected.decode(latents, cancellation: nil))
    }

    /// madebyollin's `taesd_decoder.pth` layout (the bare `nn.Sequential` state dict).
    func testATAESDDecoderFromAPth() throws {
        let safetensors = Fixture.url("taesd/taesd_decoder.safetensors")
        let pth = try writeTorchTwin(of: try SafetensorsFile(url: safetensors), to: dir.appendingPathComponent("taesd_decoder.pth"), wrapper: nil)
        let latents = try Fixture.tensors("taesd/reference").tensor("latents")
        XCTAssertEqual(try TinyAutoencoderDecoder.load(pth).decode(latents, cancellation: nil),
                       try TinyAutoencoderDecoder.load(safetensors).decode(latents, cancellation: nil))
    }

    /// With pickles turned off, each loader refuses its pickle with the reason.
    func testPicklesTurnedOffRefuseEveryLoader() throws {
        let lora = try writeTorchTwin(of: try SafetensorsFile(url: Fixture.url("lora/tiny-lora.safetensors")),
                                      to: dir.appendingPathComponent("tiny-lora.pt"), wrapper: nil)
        let embedding = dir.appendingPathComponent("tinypickle.pt")
        try FileManager.default.copyItem(at: Fixture.url("pickle/embedding.pt"), to: embedding)
        let saved = PicklePolicy.current
        PicklePolicy.current = .refuse
        defer { PicklePolicy.current = saved }
        for load in [{ _ = try LoRAFile(url: lora) }, { _ = try TextualInversion(url: embedding, width: 8) },
                     { _ = try loadLatentDecoder(lora) }] as [() throws -> Void] {
            XCTAssertThrowsError(try load()) { XCTAssertTrue("\($0)".contains("reading pickles is turned off"), "\($0)") }
        }
    }
}
