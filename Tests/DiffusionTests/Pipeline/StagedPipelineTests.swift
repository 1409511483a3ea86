import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// The pipeline's public stages on the tiny SD1.5-topology model: a batch encodes its text once,
/// rendering a prepared request gives the whole pipeline's pixels, and the UNet's residuals hook
/// adds where diffusers adds ControlNet residuals.
final class StagedPipelineTests: XCTestCase {
    private func pipeline() throws -> StableDiffusionPipeline {
        try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast))
    }

    private let request = GenerationRequest(prompt: "a red fox in the snow", negativePrompt: "blurry", seed: 42, steps: 3,
                                            guidanceScale: 7.5, width: 64, height: 64, sampler: .euler, batchCount: 4)

    func testABatchRunsTheTextEncoderOnce() throws {
        let pipe = try pipeline()
        let results = try pipe.generate(request)
        XCTAssertEqual(results.map(\.request.seed), [42, 43, 44, 45])
        // One 77-token chunk for the negative prompt and one for the prompt, for all four images.
        XCTAssertEqual(pipe.textEncoderEvaluations, 2)
        var single = request
        single.batchCount = 1
        _ = try pipe.generate(single)
        XCTAssertEqual(pipe.textEncoderEvaluations, 4, "a one-image request costs the same two chunks")
    }

    func testRenderingAPreparedRequestIsTheWholePipeline() throws {
        let pipe = try pipeline()
        let prepared = try pipe.prepare(request)
        let third = try pipe.render(prepared, index: 2)
        var alone = request
        alone.seed = 44
        alone.batchCount = 1
        let expected = try pipe.generate(alone)[0]
        XCTAssertEqual(third.request, expected.request)
        XCTAssertEqual(third.image, expected.image, "bit-identical pixels")
        XCTAssertEqual(third.decoder, "VAE")
    }

    func testUNetResidualsAddToTheSkipsAndTheMidBlock() throws {
        let unet = try pipeline().unet
        var generator = TorchGenerator(seed: 3)
        let latents = generator.randn([1, unet.config.inChannels, 8, 8])
        let context = generator.randn([1, 77, unet.config.contextDim])
        let plain = unet(latents, timestep: 500, context: context)
        // The skip shapes: conv_in's output, then each down block's resnets and downsampler.
        var shapes: [[Int]] = []
        var side = 8
        shapes.append([1, unet.config.blockOutChannels[0], side, side])
        for (level, block) in unet.downBlocks.enumerated() {
            for _ in block.resnets { shapes.append([1, unet.config.blockOutChannels[level], side, side]) }
            if block.downsampler != nil {
                side = (side + 1) / 2
                shapes.append([1, unet.config.blockOutChannels[level], side, side])
            }
        }
        XCTAssertEqual(shapes.count, unet.skipCount)
        let midShape = [1, unet.config.blockOutChannels.last ?? 0, side, side]
        let zeros = UNetResiduals(down: shapes.map { Tensor(shape: $0) }, mid: Tensor(shape: midShape))
        let unchanged = try unet(latents, timestep: 500, context: context, residuals: zeros, cancellation: nil)
        XCTAssertEqual(unchanged.data, plain.data, "zero residuals change nothing")
        var shifted = zeros
        shifted.mid = generator.randn(midShape)
        let changed = try unet(latents, timestep: 500, context: context, residuals: shifted, cancellation: nil)
        XCTAssertGreaterThan(maxAbsDifference(changed.data, plain.data), 1e-4, "a mid-block residual reaches the output")
    }

    /// diffusers' `do_classifier_free_guidance`: with guidance at most 1 the negative prompt is not
    /// encoded and the UNet runs on the prompt alone, batch 1; above 1, on [negative, prompt].
    func testGuidanceOfOneRunsTheUNetAtBatchOne() throws {
        for (scale, batch, chunks) in [(Float(1), 1, 1), (Float(1.5), 2, 2)] {
            let pipe = try pipeline()
            var single = request
            (single.batchCount, single.guidanceScale) = (1, scale)
            let prepared = try pipe.prepare(single)
            XCTAssertEqual(pipe.textEncoderEvaluations, chunks, "guidance \(scale)")
            var generator = TorchGenerator(seed: single.seed)
            var scheduler = try single.sampler.makeScheduler(config: pipe.schedulerConfig, steps: single.steps)
            let latents = pipe.initialLatents(for: single, scheduler: scheduler, generator: &generator)
            var batches: [Int] = []
            _ = try pipe.denoise(latents, conditioning: prepared.conditioning, guidanceScale: scale, scheduler: &scheduler,
                                 generator: &generator, residuals: { _, _, input, _ in
                                     batches.append(input.shape[0])
                                     return nil
                                 }, cancellation: nil)
            XCTAssertEqual(batches, Array(repeating: batch, count: scheduler.timesteps.count), "guidance \(scale)")
        }
    }
}
