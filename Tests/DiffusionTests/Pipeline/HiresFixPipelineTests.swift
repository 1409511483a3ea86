import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// The hires fix against A1111's two passes written as a loop over diffusers' components on the tiny
/// model (`make_hires_fixtures.py`; `hires/manifest.json` lists the cases), and `F.interpolate`'s modes.
final class HiresFixPipelineTests: XCTestCase {
    private struct Manifest: Decodable {
        struct Case: Decodable {
            let name: String, sampler: String, upscaler: String, width: Int, height: Int
            let hires_steps: Int, strength: Double, second_pass_timesteps: Int
        }
        let prompt: String, negative_prompt: String, seed: UInt64, steps: Int, guidance: Float, width: Int, height: Int
        let cases: [Case]
    }

    private static let pipeline = Result { try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast)) }

    func testEveryUpscalerKindMatchesTheReferenceLoop() throws {
        let pipe = try Self.pipeline.get()
        let manifest = try Fixture.json(Manifest.self, "hires/manifest.json")
        for c in manifest.cases {
            // A built-in upscaler by name, or an upscaler network's fixture file.
            let network = c.upscaler.hasPrefix("esrgan/") ? Fixture.url(c.upscaler).path : nil
            let hires = HiresFix(width: c.width, height: c.height, steps: c.hires_steps, strength: c.strength,
                                 upscaler: network == nil ? try XCTUnwrap(HiresUpscaler(rawValue: c.upscaler)) : .lanczos,
                                 upscalerModel: network)
            let request = GenerationRequest(prompt: manifest.prompt, negativePrompt: manifest.negative_prompt, seed: manifest.seed,
                                            steps: manifest.steps, guidanceScale: manifest.guidance, width: manifest.width,
                                            height: manifest.height, sampler: try Sampler(name: c.sampler), hires: hires)
            var last = (step: 0, total: 0)
            let result = try pipe.generate(request, progress: { last = ($0.step, $0.total) })[0].image
            XCTAssertEqual([result.width, result.height], [c.width, c.height], c.name)
            let expected = try Fixture.tensors("hires/\(c.name).safetensors").tensor("image")  // [H, W, 3] in [0, 1], float16
            assertClose(result.rgb.map { Float($0) / 255 }, expected.data, tolerance: 2.0 / 255, "\(c.name): pixels")
            // Progress counts both passes: the first pass's steps, then the second's.
            XCTAssertEqual(last.step, last.total, c.name)
            let firstPass = try Sampler(name: c.sampler).makeScheduler(config: pipe.schedulerConfig, steps: manifest.steps).timesteps.count
            XCTAssertEqual(last.total, firstPass + c.second_pass_timesteps, c.name)
        }
    }

    func testInterpolateModesOnAKnownGrid() {
        // F.interpolate(torch.arange(6.).reshape(1, 1, 2, 3), size=(3, 4), mode=m) for each mode.
        let x = Tensor(shape: [1, 1, 2, 3], data: [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(x.interpolated(height: 3, width: 4, mode: .nearest).data, [0, 0, 1, 2, 0, 0, 1, 2, 3, 3, 4, 5])
        XCTAssertEqual(x.interpolated(height: 3, width: 4, mode: .nearestExact).data, [0, 1, 1, 2, 3, 4, 4, 5, 3, 4, 4, 5])
        assertClose(x.interpolated(height: 3, width: 4, mode: .bilinear).data,
                    [0, 0.625, 1.375, 2, 1.5, 2.125, 2.875, 3.5, 3, 3.625, 4.375, 5], tolerance: 1e-6, "bilinear")
        assertClose(x.interpolated(height: 3, width: 4, mode: .bicubic).data,
                    [-0.33219412, 0.26936847, 1.20979834, 1.81136096, 1.42822266, 2.02978516, 2.97021484, 3.57177734,
                     3.18863893, 3.79020166, 4.73063135, 5.33219385], tolerance: 1e-5, "bicubic")
    }

    func testBadHiresRequestsAreRefused() throws {
        let pipe = try Self.pipeline.get()
        var request = GenerationRequest(prompt: "x", seed: 1, steps: 2, width: 64, height: 64, hires: HiresFix(width: 4096, height: 128))
        XCTAssertThrowsError(try pipe.generate(request)) {
            XCTAssertEqual($0 as? PipelineError, .invalidRequest("hires width 4096 is not allowed: use a multiple of 8 from 64 to 2048"))
        }
        request.hires = HiresFix(width: 128, height: 128, strength: 0)
        XCTAssertThrowsError(try pipe.generate(request)) {
            XCTAssertEqual($0 as? PipelineError, .invalidRequest("hires strength 0.0 is not allowed: use more than 0 and at most 1 (0.7 is A1111's default)"))
        }
        request.steps = 25
        request.hires = HiresFix(width: 128, height: 128, strength: 0.02)
        XCTAssertThrowsError(try pipe.generate(request)) {
            XCTAssertEqual($0 as? PipelineError, .invalidRequest("hires strength 0.02 with 25 second-pass steps needs a 1250-step schedule, "
                                                                 + "over 1000: raise hires strength or lower hires steps"))
        }
    }
}
