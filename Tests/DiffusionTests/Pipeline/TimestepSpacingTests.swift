import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// Every sampler with each `timestep_spacing` against diffusers' `StableDiffusionPipeline` on the tiny
/// model (`spacing/manifest.json` holds the Python; `make_spacing_fixtures.py` writes it).
final class TimestepSpacingTests: XCTestCase {
    private struct Manifest: Decodable {
        struct Case: Decodable { let sampler: String; let spacing: String; let timesteps: [Float] }
        let prompt: String
        let negative_prompt: String
        let seed: UInt64
        let steps: Int
        let guidance: Float
        let size: Int
        let cases: [Case]
    }

    func testEverySamplerAndSpacingMatchesDiffusers() throws {
        let pipe = try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast))
        let manifest = try Fixture.json(Manifest.self, "spacing/manifest.json")
        let images = try Fixture.tensors("spacing/images")
        // LCM and TCD have their own skipping schedules, which the spacing does not change.
        XCTAssertEqual(manifest.cases.count, Sampler.allCases.filter { $0 != .lcm && $0 != .tcd }.count * TimestepSpacing.allCases.count)
        for c in manifest.cases {
            let spacing = try XCTUnwrap(TimestepSpacing(rawValue: c.spacing))
            let request = GenerationRequest(prompt: manifest.prompt, negativePrompt: manifest.negative_prompt, seed: manifest.seed,
                                            steps: manifest.steps, guidanceScale: manifest.guidance, width: manifest.size,
                                            height: manifest.size, sampler: try Sampler(name: c.sampler), spacing: spacing)
            let scheduler = try request.sampler.makeScheduler(config: pipe.schedulerConfig(for: request), steps: request.steps)
            XCTAssertEqual(scheduler.timesteps, c.timesteps, "\(c.sampler) \(c.spacing): timesteps")
            let image = try pipe.generate(request)[0].image
            // The pipeline tests' bound: within 1/255 of diffusers' float image.
            assertClose(image.rgb.map { Float($0) / 255 }, try images.tensor("\(c.sampler)/\(c.spacing)").data,
                        tolerance: 1.0 / 255 + 1e-6, "\(c.sampler) \(c.spacing)")
        }
    }
}
