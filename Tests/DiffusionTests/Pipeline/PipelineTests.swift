import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// The whole pipeline against diffusers' `StableDiffusionPipeline` on the tiny SD1.5-topology model
/// (`Tests/Fixtures/pipeline/manifest.json` holds each case's Python line).
final class PipelineTests: XCTestCase {
    struct Case: Decodable {
        let name: String
        let sampler: String
        let prompt: String
        let negative_prompt: String?
        let seed: UInt64
        let steps: Int
        let guidance: Float
        let height: Int
        let width: Int
        let file: String
        /// TCD's γ (diffusers' `eta`), when the case sets it.
        let eta: Double?
    }

    static let modelURL = Fixture.tinySD15Folder
    /// One pipeline for the whole class: the models load once, as in the REPL.
    static let shared: StableDiffusionPipeline? = try? StableDiffusionPipeline(url: modelURL, options: LoadOptions(memoryMode: .fast))

    func pipeline() throws -> StableDiffusionPipeline {
        try XCTUnwrap(Self.shared, "the tiny fixture model did not load: \(String(describing: try? StableDiffusionPipeline(url: Self.modelURL)))")
    }

    func cases() throws -> [Case] {
        struct Manifest: Decodable { let cases: [Case] }
        return try Fixture.json(Manifest.self, "pipeline/manifest.json").cases
    }

    /// The image's bytes as floats in [0, 1], as diffusers' `output_type="np"` gives them.
    func pixels(_ image: PixelImage) -> [Float] {
        image.rgb.map { Float($0) / 255 }
    }

    func request(_ c: Case) throws -> GenerationRequest {
        GenerationRequest(prompt: c.prompt, negativePrompt: c.negative_prompt ?? "", seed: c.seed, steps: c.steps,
                          guidanceScale: c.guidance, width: c.width, height: c.height, sampler: try Sampler(name: c.sampler),
                          eta: c.eta ?? 0)
    }

    /// Every sampler, in fp32: the largest pixel difference from diffusers' float image is at most 1/255.
    func testEverySamplerMatchesDiffusers() throws {
        let pipe = try pipeline()
        let all = try cases()
        XCTAssertEqual(Set(all.map(\.sampler)), Set(Sampler.allCases.map(\.rawValue)), "the fixtures cover every sampler")
        for c in all {
            let reference = try Fixture.tensors("pipeline/\(c.file)")
            let expected = try reference.tensor("image")  // [H, W, 3] in [0, 1]
            var steps = 0
            let result = try pipe.generate(try request(c), progress: { _ in steps += 1 })
            XCTAssertEqual(result.count, 1)
            let image = result[0].image
            XCTAssertEqual([image.height, image.width, 3], expected.shape, c.name)
            // diffusers' float image vs our bytes: the float image rounds to our bytes within 1/255.
            assertClose(pixels(image), expected.data, tolerance: 1.0 / 255 + 1e-6, "\(c.name): pixels in [0, 1]")
            XCTAssertEqual(steps, try XCTUnwrap(try reference.tensor("timesteps")).count, "\(c.name): one progress call per timestep")
        }
    }

    /// The same request gives bit-identical pixels, run after run.
    func testTheSameRequestGivesIdenticalPixels() throws {
        let pipe = try pipeline()
        let c = try XCTUnwrap(try cases().first { $0.sampler == "euler-a" })
        let a = try pipe.generate(try request(c))[0].image
        let b = try pipe.generate(try request(c))[0].image
        XCTAssertEqual(a.rgb, b.rgb)
    }

    /// A batch of n gives seeds s … s+n-1, each equal to a single run with that seed.
    func testABatchEqualsSingleRuns() throws {
        let pipe = try pipeline()
        var r = GenerationRequest(prompt: "a red fox", seed: 7, steps: 3, guidanceScale: 7.5, width: 64, height: 64, sampler: .eulerAncestral)
        r.batchCount = 2
        let batch = try pipe.generate(r)
        XCTAssertEqual(batch.map(\.request.seed), [7, 8])
        r.batchCount = 1
        r.seed = 8
        XCTAssertEqual(try pipe.generate(r)[0].image, batch[1].image)
    }

    /// Cancelling returns within one step and leaves the pipeline ready for the next request.
    func testCancellationStopsWithinAStepAndThePipelineStaysUsable() throws {
        let pipe = try pipeline()
        let c = try XCTUnwrap(try cases().first { $0.sampler == "dpmpp-2m" })
        let token = CancellationToken()
        var stepsSeen = 0
        XCTAssertThrowsError(try pipe.generate(try request(c), progress: { p in
            stepsSeen = p.step
            if p.step == 2 { token.cancel() }
        }, cancellation: token)) { error in
            XCTAssertEqual(error as? PipelineError, .cancelled)
        }
        XCTAssertEqual(stepsSeen, 2, "no step runs after the cancel")
        let again = try pipe.generate(try request(c))[0].image
        let expected = try Fixture.tensors("pipeline/\(c.file)").tensor("image")
        assertClose(pixels(again), expected.data, tolerance: 1.0 / 255 + 1e-6, "\(c.name) after a cancel: pixels in [0, 1]")
    }

    /// Inside a step, the UNet checks the token between its blocks and the VAE between its levels,
    /// so a cancel does not wait for a whole step or decode (many seconds each at 512×512).
    func testTheUNetAndTheDecoderStopOnACancelledToken() throws {
        let pipe = try pipeline()
        let token = CancellationToken()
        token.cancel()
        let latents = Tensor(shape: [1, 4, 12, 12], repeating: 0.1)
        let context = Tensor(shape: [1, 77, pipe.textEncoder.config.hiddenSize], repeating: 0.1)
        XCTAssertThrowsError(try pipe.unet(latents, timestep: 500, context: context, cancellation: token)) {
            XCTAssertEqual($0 as? PipelineError, .cancelled)
        }
        XCTAssertThrowsError(try pipe.vae.decode(latents, cancellation: token)) { XCTAssertEqual($0 as? PipelineError, .cancelled) }
        token.reset()
        XCTAssertEqual(try pipe.unet(latents, timestep: 500, context: context, cancellation: token),
                       pipe.unet(latents, timestep: 500, context: context), "the checks do not change the result")
    }

    /// Sizes outside 64…2048 or not multiples of 8 are refused before any work, naming the field.
    func testBadSizesAreRefusedClearly() throws {
        let pipe = try pipeline()
        for (w, h, word) in [(60, 64, "width 60"), (64, 4096, "height 4096"), (100, 64, "width 100")] {
            XCTAssertThrowsError(try pipe.generate(GenerationRequest(prompt: "x", seed: 1, width: w, height: h))) { error in
                XCTAssertTrue("\(error)".contains(word) && "\(error)".contains("multiple of 8"), "\(error)")
            }
        }
    }

    /// Progress carries a latent preview at the asked interval and at the last step.
    func testPreviewsArriveEveryNStepsAndAtTheEnd() throws {
        let pipe = try pipeline()
        var previews: [Int] = []
        _ = try pipe.generate(GenerationRequest(prompt: "x", seed: 3, steps: 5, width: 64, height: 96, sampler: .ddim),
                              progress: { p in if let img = p.preview { previews.append(p.step); XCTAssertEqual([img.width, img.height], [8, 12]) } },
                              previewEvery: 2)
        XCTAssertEqual(previews, [2, 4, 5])
    }
}
