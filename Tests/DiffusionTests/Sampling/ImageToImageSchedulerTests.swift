import XCTest
@testable import Diffusion
@testable import NN
import TestSupport

/// Image-to-image sampling against diffusers: where each sampler starts for a strength
/// (`StableDiffusionImg2ImgPipeline.get_timesteps`), `add_noise` at that timestep, and a run from
/// there to the end with the synthetic model of the sampler fixtures. The Python that made the
/// numbers is in `schedulers/img2img.json` ("python"), written by `make_img2img_fixtures.py`.
final class ImageToImageSchedulerTests: XCTestCase {
    private struct Reference: Decodable {
        struct Run: Decodable {
            let timesteps: [Float]
            let first_index: Int
        }
        let steps: Int
        let strengths: [Double]
        let runs: [String: Run]
    }

    func testStartIndexNoisedLatentsAndRunMatchDiffusers() throws {
        let reference = try Fixture.json(Reference.self, "schedulers/img2img.json")
        let file = try Fixture.tensors("schedulers/img2img")
        let clean = try file.tensor("clean")
        XCTAssertEqual(reference.runs.count, Sampler.allCases.count * reference.strengths.count)
        for sampler in Sampler.allCases {
            for strength in reference.strengths {
                let key = "\(sampler.rawValue)/strength=\(strength)"
                let run = try XCTUnwrap(reference.runs[key], key)
                var scheduler = try sampler.makeScheduler(config: .sd15, steps: reference.steps)
                let first = scheduler.firstStepIndex(strength: strength, steps: reference.steps)
                XCTAssertEqual(first, run.first_index, key)
                XCTAssertEqual(Array(scheduler.timesteps(strength: strength, steps: reference.steps)), run.timesteps, key)

                // diffusers draws the noise from the request's generator, then the samplers' own noise.
                var generator = TorchGenerator(seed: 1234)
                let noise = generator.randn(clean.shape)
                var latents = scheduler.addNoise(to: clean, noise: noise, stepIndex: first)
                // Float32 products and sums as torch rounds them: within an ulp or two.
                assertClose(latents, try file.tensor("\(key)/noised"), tolerance: 1e-6, "\(key) noised")
                for i in scheduler.timesteps.indices.dropFirst(first) {
                    let t = scheduler.timesteps[i]
                    let input = scheduler.scaleModelInput(latents, stepIndex: i)
                    let shift = Float(0.05) * (t / 1000)
                    let eps = elementwise(input) { Float(0.8) * $0 + shift }
                    latents = scheduler.step(modelOutput: eps, stepIndex: i, sample: latents, generator: &generator)
                }
                // The same tolerance as the whole-run sampler tests.
                assertClose(latents, try file.tensor("\(key)/final"), tolerance: 1e-5, "\(key) final")
            }
        }
    }

    func testStrengthBounds() throws {
        let scheduler = try Sampler.ddim.makeScheduler(config: .sd15, steps: 20)
        // int(20 * 0.0) = 0 steps run; int(20 * 1.0) = all of them; int(20 * 0.55) = 11 -> start at 9.
        XCTAssertEqual(scheduler.firstStepIndex(strength: 0, steps: 20), 20)
        XCTAssertTrue(scheduler.timesteps(strength: 0, steps: 20).isEmpty)
        XCTAssertEqual(scheduler.firstStepIndex(strength: 1, steps: 20), 0)
        XCTAssertEqual(scheduler.firstStepIndex(strength: 0.55, steps: 20), 9)
    }
}
