import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// Live previews drawn by TAESD when one is set: every step for small images, every second step
/// (and the last) above 256×256; the latent projection otherwise.
final class TAESDPreviewTests: XCTestCase {
    private func previews(_ pipe: StableDiffusionPipeline, size: Int, steps: Int) throws -> ([PixelImage?], PixelImage) {
        var previews: [PixelImage?] = []
        let request = GenerationRequest(prompt: "a red fox", seed: 7, steps: steps, guidanceScale: 1, width: size, height: size, sampler: .euler)
        let result = try pipe.generate(request, progress: { previews.append($0.preview) }, previewEvery: 1)
        return (previews, result[0].image)
    }

    func testTAESDDrawsThePreviewsAtItsCadence() throws {
        let pipe = try StableDiffusionPipeline(url: Fixture.tinySD15Folder)
        let (projected, _) = try previews(pipe, size: 96, steps: 3)
        XCTAssertEqual(projected.map { $0?.width }, [12, 12, 12], "without TAESD: one pixel per latent")

        let taesd = try TinyAutoencoderDecoder.load(Fixture.url("taesd/taesd_decoder.safetensors"))
        pipe.previewDecoder = taesd
        pipe.decoder = taesd
        let (small, image) = try previews(pipe, size: 96, steps: 3)
        XCTAssertEqual(small.map { $0?.width }, [96, 96, 96], "a 12x12 latent: every step, full size")
        // The last preview is the same decoder on the same latents as the image.
        XCTAssertEqual(small.last??.rgb, image.rgb)
        XCTAssertNotEqual(small.first??.rgb, image.rgb)

        let (large, _) = try previews(pipe, size: 264, steps: 3)
        XCTAssertEqual(large.map { $0?.width }, [nil, 264, 264], "a 33x33 latent: every second step and the last")
    }
}
