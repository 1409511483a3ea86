import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// DeepCache against the paper's own `DeepCacheSDHelper` (PyPI `DeepCache` 0.1.1) wrapping diffusers'
/// pipelines on the tiny SD1.5-topology model, `cache_branch_id=0`, intervals 2 and 3
/// (`make_deepcache_fixtures.py`; the Python lines are in `deepcache/manifest.json`):
///
///     helper = DeepCacheSDHelper(pipe=pipe); helper.set_params(cache_interval=N, cache_branch_id=0); helper.enable()
///     pipe(prompt, negative_prompt=negative, width=w, height=h, num_inference_steps=10, guidance_scale=g,
///          generator=torch.Generator('cpu').manual_seed(21), output_type='np').images[0]
final class DeepCachePipelineTests: XCTestCase {
    private struct Manifest: Decodable {
        struct Case: Decodable {
            let name: String, sampler: String, interval: Int, guidance: Float, width: Int, height: Int
            let strength: Double?
            /// Per UNet call, as the helper decided: its timestep's first position, and whether it was whole.
            let timestep_positions: [Int], full: [Bool]
            let max_difference_from_plain: Float
        }
        let prompt: String, negative_prompt: String, seed: UInt64, steps: Int
        let cases: [Case]
    }

    private static let pipeline = Result { try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast)) }
    private let manifest = Result { try Fixture.json(Manifest.self, "deepcache/manifest.json") }

    private func request(_ c: Manifest.Case, _ manifest: Manifest) throws -> GenerationRequest {
        var request = GenerationRequest(prompt: manifest.prompt, negativePrompt: manifest.negative_prompt, seed: manifest.seed,
                                        steps: manifest.steps, guidanceScale: c.guidance, width: c.width, height: c.height,
                                        sampler: try Sampler(name: c.sampler), deepCache: c.interval)
        if let strength = c.strength {
            request.initImage = try TinySD15Fixture.initImage()
            request.strength = strength
        }
        return request
    }

    /// The bound: within 2/255 of the helper's images, for every sampler kind here (PLMS's
    /// repeated timestep, DPM-Solver++'s history, Euler's fractional timesteps, no guidance, and
    /// image-to-image starting part-way).
    func testImagesMatchTheReferenceHelper() throws {
        let pipe = try Self.pipeline.get()
        let manifest = try manifest.get()
        XCTAssertEqual(Set(manifest.cases.map(\.interval)), [2, 3])
        for c in manifest.cases {
            let result = try pipe.generate(try request(c, manifest))[0].image
            let expected = try Fixture.tensors("deepcache/\(c.name).safetensors").tensor("image")  // [H, W, 3] in [0, 1], float16
            assertClose(result.rgb.map { Float($0) / 255 }, expected.data, tolerance: 2.0 / 255, "\(c.name): pixels")
            // The cached steps move these pictures far from the plain ones, so a pipeline that
            // ignored the option could not pass.
            XCTAssertGreaterThan(c.max_difference_from_plain, 10.0 / 255, c.name)
        }
    }

    /// Without the option the same request gives the plain picture, not the reference's.
    func testOffRunsTheWholeUNetAtEveryStep() throws {
        let pipe = try Self.pipeline.get()
        let manifest = try manifest.get()
        let c = try XCTUnwrap(manifest.cases.first { $0.name == "dpmpp-2m_3" })
        var plain = try request(c, manifest)
        plain.deepCache = nil
        let image = try pipe.generate(plain)[0].image.rgb.map { Float($0) / 255 }
        let expected = try Fixture.tensors("deepcache/\(c.name).safetensors").tensor("image").data
        XCTAssertGreaterThan(maxAbsDifference(image, expected), 10.0 / 255)
    }

    /// Which calls run the whole UNet, call by call as the helper decided them: by the first
    /// position of the timestep (PLMS's repeated one counts once), from the first step that runs.
    func testFullStepsAreTheHelpers() throws {
        let pipe = try Self.pipeline.get()
        let manifest = try manifest.get()
        for c in manifest.cases {
            let sampler = try Sampler(name: c.sampler)
            let scheduler = try sampler.makeScheduler(config: pipe.schedulerConfig, steps: manifest.steps)
            let first = c.strength.map { scheduler.firstStepIndex(strength: $0, steps: manifest.steps) } ?? 0
            var cache = DeepCache(interval: c.interval)
            let full = (first..<scheduler.timesteps.count).map { cache.isFullStep(stepIndex: $0, of: scheduler.timesteps) }
            XCTAssertEqual(full, c.full, c.name)
            let positions = (first..<scheduler.timesteps.count).map { scheduler.timesteps.firstIndex(of: scheduler.timesteps[$0]) }
            XCTAssertEqual(positions, c.timestep_positions, c.name)
        }
    }

    /// A cached step on the feature kept from the same input is the whole UNet to the bit, with and
    /// without a ControlNet residual on `conv_in`'s output: the split loses nothing.
    func testShallowStepOnItsOwnFeatureIsTheWholeUNet() throws {
        let unet = try Self.pipeline.get().unet
        var generator = TorchGenerator(seed: 5)
        let latents = generator.randn([2, unet.config.inChannels, 12, 10])
        let context = generator.randn([2, 77, unet.config.contextDim])
        let (output, feature) = unet.forward(latents, timestep: 700, context: context, residuals: nil, checkpoint: {})
        XCTAssertEqual(output.data, unet(latents, timestep: 700, context: context).data)
        let shallow = unet.shallowForward(latents, timestep: 700, context: context, deepFeature: feature, convInResidual: nil, checkpoint: {})
        XCTAssertEqual(shallow.data, output.data)

        // A ControlNet's residuals, zero but for conv_in's output (skip 0), shaped like the skips.
        var h = unet.convIn(latents)
        var skipShapes = [h.shape]
        let timeEmbedding = unet.timeEmbedding(for: latents, timestep: 700, context: context)
        for block in unet.downBlocks {
            let (out, skips) = block(h, timeEmbedding: timeEmbedding, context: context)
            (h, skipShapes) = (out, skipShapes + skips.map(\.shape))
        }
        let residual = generator.randn(skipShapes[0])
        let residuals = UNetResiduals(down: [residual] + skipShapes.dropFirst().map { Tensor(shape: $0) }, mid: nil)
        let (controlled, controlledFeature) = unet.forward(latents, timestep: 700, context: context, residuals: residuals, checkpoint: {})
        XCTAssertGreaterThan(maxAbsDifference(controlled.data, output.data), 1e-4, "the residual reaches the output")
        let shallowControlled = unet.shallowForward(latents, timestep: 700, context: context, deepFeature: controlledFeature,
                                                    convInResidual: residual, checkpoint: {})
        XCTAssertEqual(shallowControlled.data, controlled.data)
    }
}
