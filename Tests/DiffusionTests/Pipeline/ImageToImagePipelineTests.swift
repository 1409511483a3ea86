import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// Image-to-image against diffusers' `StableDiffusionImg2ImgPipeline` on the tiny SD1.5-topology
/// model: the VAE encoder's posterior, and the whole pipeline for every sampler. The Python lines are
/// in `img2img/manifest.json`, written by `make_img2img_pipeline_fixtures.py`.
final class ImageToImagePipelineTests: XCTestCase {
    private struct Manifest: Decodable {
        struct Case: Decodable { let sampler: String; let file: String }
        let prompt: String
        let negative_prompt: String
        let seed: UInt64
        let steps: Int
        let strength: Double
        let guidance: Float
        let cases: [Case]
    }

    private static let pipeline = Result { try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast)) }

    /// The init image; preprocessing it must give diffusers' tensor to the bit.
    private func initImage() throws -> PixelImage {
        let image = try TinySD15Fixture.initImage()
        XCTAssertEqual(image.signedTensor.data, try Fixture.tensors("img2img/encoder").tensor("pixels").data, "preprocessing is diffusers' to the bit")
        return image
    }

    func testEncoderPosteriorMatchesDiffusers() throws {
        let encoder = try XCTUnwrap(try Self.pipeline.get().vaeEncoder)
        let reference = try Fixture.tensors("img2img/encoder")
        let (mean, logvar) = try encoder.posterior(try initImage().signedTensor)
        // Float32 convolutions in another order than torch's: relative to the largest magnitude.
        assertParity(mean, try reference.tensor("mean"), relativeTolerance: 1e-4, "posterior mean")
        assertParity(logvar, try reference.tensor("logvar"), relativeTolerance: 1e-4, "posterior log-variance")
    }

    func testEverySamplerMatchesDiffusers() throws {
        let pipe = try Self.pipeline.get()
        let manifest = try Fixture.json(Manifest.self, "img2img/manifest.json")
        XCTAssertEqual(Set(manifest.cases.map(\.sampler)), Set(Sampler.allCases.map(\.rawValue)))
        let image = try initImage()
        for c in manifest.cases {
            let request = GenerationRequest(prompt: manifest.prompt, negativePrompt: manifest.negative_prompt, seed: manifest.seed,
                                            steps: manifest.steps, guidanceScale: manifest.guidance, width: image.width,
                                            height: image.height, sampler: try Sampler(name: c.sampler),
                                            initImage: image, strength: manifest.strength)
            var steps = 0
            let result = try pipe.generate(request, progress: { _ in steps += 1 })[0].image
            let expected = try Fixture.tensors("img2img/\(c.file)").tensor("image")  // [H, W, 3] in [0, 1]
            // The bound for image-to-image: within 2/255 of diffusers' float image.
            assertClose(result.rgb.map { Float($0) / 255 }, expected.data, tolerance: 2.0 / 255, "\(c.sampler): pixels")
            let first = try Sampler(name: c.sampler).makeScheduler(config: pipe.schedulerConfig, steps: manifest.steps)
            XCTAssertEqual(steps, first.timesteps(strength: manifest.strength, steps: manifest.steps).count, c.sampler)
        }
    }

    func testBadImageToImageRequestsAreRefused() throws {
        let pipe = try Self.pipeline.get()
        let image = try initImage()
        var request = GenerationRequest(prompt: "x", seed: 1, steps: 2, width: 64, height: 64, initImage: image, strength: 0)
        XCTAssertThrowsError(try pipe.generate(request)) {
            XCTAssertEqual($0 as? PipelineError, .invalidRequest("strength 0.0 is not allowed: use more than 0 and at most 1 (0.75 is usual)"))
        }
        // diffusers refuses int(4 · 0.2) = 0 steps ("the number of pipeline steps is 0 which is < 1");
        // sdrepl makes the init image through the VAE, as it always has (transcripts replay), and says why.
        request.steps = 4
        request.strength = 0.2
        XCTAssertEqual(request.noStepReason, "strength 0.2 at 4 steps runs no step (int(steps × strength) is 0), so the image is the "
                       + "init image through the VAE: use strength 0.25 or more, or 5 steps or more")
        request.strength = 1e-20
        XCTAssertEqual(request.noStepReason?.hasSuffix("use strength 0.25 or more"), true, "no step count is offered past the limit")
        request.strength = 0.25
        XCTAssertNil(request.noStepReason)
        request.strength = 0.5
        request.width = 128
        XCTAssertThrowsError(try pipe.generate(request)) {
            XCTAssertEqual($0 as? PipelineError, .invalidRequest("the init image is 64x64 but the request is 128x64: resize it first"))
        }
    }
}
