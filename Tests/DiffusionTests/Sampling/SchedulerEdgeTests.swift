import XCTest
@testable import Diffusion
@testable import NN

/// Every sampler, at the edges of its step range, either runs to the end or refuses the step count
/// with an error: never a trap. (diffusers itself raises IndexError for PNDM/DDIM at 1000 steps.)
final class SchedulerEdgeTests: XCTestCase {
    func testRefusalsNameTheLargestStepCountThatWorks() {
        // diffusers: PNDMScheduler/DDIMScheduler.set_timesteps(1000) with steps_offset=1 reach timestep
        // 1000 (IndexError); DPMSolverMultistepScheduler at 1000 repeats a timestep (NaN latents).
        for sampler in [Sampler.pndm, .ddim, .dpmpp2m] {
            XCTAssertThrowsError(try sampler.makeScheduler(steps: 1000)) { error in
                XCTAssertEqual(error as? SchedulerError, .invalidSteps(1000, sampler: sampler.rawValue, range: 1...999))
                XCTAssertTrue("\(error)".contains("use 1...999"), "\(error)")
            }
        }
    }

    func testEveryStepCountRunsOrIsRefused() throws {
        for sampler in Sampler.allCases {
            for steps in [1, 2, 3, 49, 50, 51, 500, 999, 1000, 1001] {
                let scheduler: any Scheduler
                do { scheduler = try sampler.makeScheduler(steps: steps) } catch {
                    XCTAssertTrue(error is SchedulerError, "\(sampler) \(steps): \(error)")
                    continue
                }
                var s = scheduler
                var generator = TorchGenerator(seed: 1)
                var latents = generator.randn([1, 4, 2, 2]) * s.initNoiseSigma
                for i in s.timesteps.indices {
                    let x = s.scaleModelInput(latents, stepIndex: i)
                    latents = s.step(modelOutput: x * 0.8, stepIndex: i, sample: latents, generator: &generator)
                }
                XCTAssertTrue(latents.data.allSatisfy(\.isFinite), "\(sampler) at \(steps) steps gave non-finite latents")
            }
        }
    }
}
