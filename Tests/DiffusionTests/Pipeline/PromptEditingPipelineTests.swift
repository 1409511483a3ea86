import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

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
        try reference(request, weights: [1]) { i in let (p, n) = texts(i); return ([p], n) }
    }

    /// The loop with A1111's composable guidance: the UNet on [negative, part 1, …, part k], then
    /// `uncond + Σ (condᵢ − uncond) · (weightᵢ · scale)` (`combine_denoised`).
    func reference(_ request: GenerationRequest, weights: [Double],
                   texts: (Int) -> (parts: [String], negative: String)) throws -> [UInt8] {
        let pipe = try pipeline()
        var generator = TorchGenerator(seed: request.seed)
        var scheduler = try request.sampler.makeScheduler(config: pipe.schedulerConfig, steps: request.steps)
        var latents = generator.randn([1, 4, request.height / 8, request.width / 8]) * scheduler.initNoiseSigma
        for (i, t) in scheduler.timesteps.enumerated() {
            let (parts, negative) = texts(i)
            let encode: ([Int]) -> Tensor = { pipe.textEncoder(tokens: $0, clipSkip: 1) }
            let chunker = PromptChunker(tokenizer: pipe.tokenizer)
            let context = Tensor.concatBatch(try ([negative] + parts).map { PromptConditioning.encode(try chunker.chunk($0), using: encode) })
            let input = scheduler.scaleModelInput(latents, stepIndex: i)
            let out = try pipe.unet(Tensor.concatBatch(Array(repeating: input, count: 1 + parts.count)), timestep: t, context: context)
            let u = out.slice(batch: 0)
            var noise = u
            for (k, weight) in weights.enumerated() {
                noise = noise + (out.slice(batch: k + 1) - u) * Float(weight * Double(request.guidanceScale))
            }
            latents = scheduler.step(modelOutput: noise, stepIndex: i, sample: latents, generator: &generator)
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

    /// `a red fox AND a blue bird:0.5`: both guide, the bird at half weight; each part keeps its own
    /// prompt editing. A weight on a single prompt scales its guidance; `:1` is the plain prompt.
    func testComposedPromptsAddTheirGuidance() throws {
        let composed = request("a red fox AND a [blue:green:2] bird:0.5")
        let got = try pixels(composed)
        XCTAssertEqual(got, try reference(composed, weights: [1, 0.5]) { i in
            (["a red fox", i <= 2 ? " a blue bird" : " a green bird"], "")
        })
        XCTAssertNotEqual(got, try pixels(request("a red fox")))
        let weighted = request("a red fox:1.5")
        XCTAssertEqual(try pixels(weighted), try reference(weighted, weights: [1.5]) { _ in (["a red fox"], "") })
        XCTAssertEqual(try pixels(request("a red fox : 1")), try pixels(request("a red fox")))
    }

    /// Guidance 1 skips the negative prompt's pass, as diffusers does, unless the prompt is composed.
    func testAComposedPromptIsGuidedEvenAtScaleOne() throws {
        var plain = request("a red fox")
        plain.guidanceScale = 1
        XCTAssertFalse(try pipeline().conditioning(for: plain).guidance)
        var composed = request("a red fox AND a hen")
        composed.guidanceScale = 1
        XCTAssertTrue(try pipeline().conditioning(for: composed).guidance)
        XCTAssertEqual(try pixels(composed), try reference(composed, weights: [1, 1]) { _ in (["a red fox", " a hen"], "") })
    }

    /// Each distinct pair of texts is encoded once, whatever the number of steps.
    func testEachDistinctPairOfTextsIsEncodedOnce() throws {
        let pipe = try pipeline()
        XCTAssertEqual(try pipe.conditioning(for: request("[a|b] fox", steps: 30)).contexts.count, 2)
        XCTAssertEqual(try pipe.conditioning(for: request("a fox", negative: "[x:y:0.5]", steps: 30)).contexts.count, 2)
        var unguided = request("a fox", negative: "[x:y:0.5]", steps: 30)
        unguided.guidanceScale = 1
        XCTAssertEqual(try pipe.conditioning(for: unguided).contexts.count, 1)
        XCTAssertEqual(try pipe.conditioning(for: request("a (red:1.2) fox", steps: 30)).contexts.count, 1)
        // (a, c) and (b, c) serve evaluations 0-3, then (b, d) and (a, d): four sets of three texts.
        XCTAssertEqual(try pipe.conditioning(for: request("[a|b] fox AND [c:d:3] hen", steps: 30)).contexts.map(\.shape[0]), [3, 3, 3, 3])
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
