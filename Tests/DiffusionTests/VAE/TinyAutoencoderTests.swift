import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// TAESD's decoder against diffusers' `AutoencoderTiny.decode` on a tiny random model, in both layouts
/// users have (`taesd/reference.json` holds the Python; `make_taesd_fixtures.py` writes the files).
final class TinyAutoencoderTests: XCTestCase {
    func testBothLayoutsDecodeAsDiffusers() throws {
        let reference = try Fixture.tensors("taesd/reference")
        let latents = try reference.tensor("latents"), expected = try reference.tensor("image")
        // Also with every 3×3 convolution on Winograd, as the 512×512 decode runs them (the
        // fixture's small maps are under the default minimum of tiles).
        let saved = Tensor.winogradMinTiles
        defer { Tensor.winogradMinTiles = saved }
        for minTiles in [saved, 1] {
            Tensor.winogradMinTiles = minTiles
            for url in [Fixture.url("taesd/tiny-taesd"), Fixture.url("taesd/taesd_decoder.safetensors")] {
                let decoder = try TinyAutoencoderDecoder.load(url)
                XCTAssertEqual(decoder.channels, [16, 16, 16, 16], url.lastPathComponent)
                let image = try decoder.decode(latents, cancellation: nil)
                // The bound is 2/255 on pixels; the decoder's own output in [-1, 1] is far closer.
                assertClose(image, expected, tolerance: 1e-4, "\(url.lastPathComponent), Winograd from \(minTiles) tiles")
            }
        }
    }

    /// A diffusers folder with only the fp16 variant's file (`diffusion_pytorch_model.fp16.safetensors`,
    /// as `variant="fp16"` saves it) decodes as the plain one.
    func testAFolderWithTheFP16VariantsFile() throws {
        let reference = try Fixture.tensors("taesd/reference")
        let folder = try makeWeightsTestDirectory(self)
        let original = Fixture.url("taesd/tiny-taesd")
        try FileManager.default.copyItem(at: original.appendingPathComponent("config.json"), to: folder.appendingPathComponent("config.json"))
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("diffusion_pytorch_model.fp16.safetensors"),
                                                   withDestinationURL: original.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        let latents = try reference.tensor("latents")
        XCTAssertEqual(try TinyAutoencoderDecoder.load(folder).decode(latents, cancellation: nil).data,
                       try TinyAutoencoderDecoder.load(original).decode(latents, cancellation: nil).data)
    }

    func testOtherFilesAreRefusedNamingWhatTheyAre() throws {
        XCTAssertThrowsError(try TinyAutoencoderDecoder.load(Fixture.url("lora/tiny-lora.safetensors"))) { error in
            guard case .notTAESD(_, let reason)? = error as? TinyAutoencoderError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("is not a TAESD decoder's"), reason)
        }
        XCTAssertThrowsError(try TinyAutoencoderDecoder.load(URL(fileURLWithPath: "/nonexistent/taesd"))) {
            XCTAssertEqual($0 as? TinyAutoencoderError, .notFound(path: "/nonexistent/taesd"))
        }
    }

    func testThePipelineDecodesThroughTheChosenDecoder() throws {
        let pipe = try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast))
        let request = GenerationRequest(prompt: "a fox", seed: 4, steps: 2, width: 64, height: 64, sampler: .euler)
        let vae = try pipe.generate(request)[0]
        pipe.decoder = try TinyAutoencoderDecoder.load(Fixture.url("taesd/taesd_decoder.safetensors"))
        let tiny = try pipe.generate(request)[0]
        XCTAssertEqual(tiny.decoder, "TAESD")
        XCTAssertEqual([tiny.image.width, tiny.image.height], [64, 64])
        XCTAssertNotEqual(tiny.image.rgb, vae.image.rgb)
    }
}
