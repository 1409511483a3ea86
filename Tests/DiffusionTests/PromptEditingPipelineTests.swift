import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// Prompt editing and alternation in the pipeline, on the tiny SD1.5-topology model. diffusers has
/// no prompt editing, so the reference is the sampling loop written out here with A1111's rule for
/// which text an evaluation uses (`reconstruct_cond_batch`: the first schedule entry with
/// `step <= end_at_step`, the step counter starting at 0).
final class PromptEditingPipelineTests: XCTestCase {
    func pipeline() throws -> StableDiffusionPipeline {
        try XCTUnwrap(PipelineTests.shared, "the tiny fixture model did not load")
    }

    func request(_ prompt: String, negative: String = "", steps: Int = 5, sampler: Sampler = .eulerAncestral) -> GenerationRequest {
        GenerationRequest(prompt: prompt, negativePrompt: negative, seed: 11, steps: steps, guidanceScale: 7.5,
                          width: 64, height: 64, sampler: sampler)
    }

    /// The loop of `StableDiffusionPipeline`, with the texts of evaluation `i` given by `texts(i)`.
    func reference(_ request: GenerationRequest, texts: (Int) -> (prompt: String, negative: String)) throws -> [UInt8] {
        let pipe = try pipeline()
        var generator = TorchGenerator(seed: request.seed)
        var scheduler = try request.sampler.makeScheduler(config: pipe.schedulerConfig, steps: request.steps)
        var latents = generator.randn([1, 4, request.height / 8, request.width / 8]) * scheduler.initNoiseSigma
        for (i, t) in scheduler.timesteps.enumerated() {
            let (prompt, negative) = texts(i)
            let (cond, uncond) = try pipe.encodeText(prompt: prompt, negativePrompt: negative, clipSkip: 1, guidance: true)
            let context = Tensor.concatBatch([try XCTUnwrap(uncond), cond])
            let input = scheduler.scaleModelInput(latents, stepIndex: i)
            let both = try pipe.unet(Tensor.concatBatch([input, input]), timestep: t, context: context)
            let u = both.slice(batch: 0), c = both.slice(batch: 1)
            latents = scheduler.step(modelOutput: u + (c - u) * request.guidanceScale, stepIndex: i, sample: latents,
                                     generator: &generator)
        }
        return PixelImage(decoded: try pipe.vae.decode(latents)).rgb
    }

    func pixels(_ request: GenerationRequest) throws -> [UInt8] {
        try pipeline().generate(request)[0].image.rgb
    }

    /// `[a:b:when]` with `when` at or past the last step is `a` throughout; below 1, `b` throughout.
    func testAnEditOutsideTheStepsIsThePlainPrompt() throws {
        let fox = try pixels(request("a red fox"))
        XCTAssertEqual(try pixels(request("[a red fox:a blue bird:5]")), fox)
        XCTAssertEqual(try pixels(request("[a red fox:a blue bird:1.0]")), fox)
        XCTAssertEqual(try pixels(request("[a blue bird:a red fox:0]")), fox)
    }

    /// `[a red fox:a blue bird:2]` over 5 steps: evaluations 0, 1, 2 see the fox, 3 and 4 the bird.
    func testAnEditSwitchesTheTextAtItsStep() throws {
        let edited = request("[a red fox:a blue bird:2]")
        let got = try pixels(edited)
        XCTAssertEqual(got, try reference(edited) { i in (i <= 2 ? "a red fox" : "a blue bird", "") })
        XCTAssertNotEqual(got, try pixels(request("a red fox")))
        XCTAssertNotEqual(got, try pixels(request("a blue bird")))
    }

    /// The negative prompt is scheduled the same way, and alternation takes turns from the second
    /// evaluation on (A1111's schedule ends at steps 1, 2, 3, … and its counter starts at 0).
    func testNegativeAlternation() throws {
        let alternating = request("a red fox", negative: "[blurry|dark]", steps: 4, sampler: .dpmpp2m)
        XCTAssertEqual(try pixels(alternating), try reference(alternating) { i in
            ("a red fox", ["blurry", "blurry", "dark", "blurry"][i])
        })
    }

    /// Each distinct pair of texts is encoded once, whatever the number of steps.
    func testEachDistinctPairOfTextsIsEncodedOnce() throws {
        let pipe = try pipeline()
        XCTAssertEqual(try pipe.conditioning(for: request("[a|b] fox", steps: 30), guidance: true).contexts.count, 2)
        XCTAssertEqual(try pipe.conditioning(for: request("a fox", negative: "[x:y:0.5]", steps: 30), guidance: true).contexts.count, 2)
        XCTAssertEqual(try pipe.conditioning(for: request("a fox", negative: "[x:y:0.5]", steps: 30), guidance: false).contexts.count, 1)
        XCTAssertEqual(try pipe.conditioning(for: request("a (red:1.2) fox", steps: 30), guidance: true).contexts.count, 1)
    }

    /// A bad weight inside a scheduled text is refused before any step runs.
    func testABadWeightInAScheduledTextIsRefusedUpFront() throws {
        var steps = 0
        XCTAssertThrowsError(try pipeline().generate(request("[a fox:(a bird:1.2.3):2]"), progress: { _ in steps += 1 })) { error in
            XCTAssertTrue("\(error)".contains("1.2.3"), "\(error)")
        }
        XCTAssertEqual(steps, 0)
    }
}
