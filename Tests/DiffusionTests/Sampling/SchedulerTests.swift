import Foundation
import XCTest
@testable import Diffusion
@testable import NN
import TestSupport

/// The samplers against diffusers 0.42.1 / torch 2.15 (`Tests/Fixtures/schedulers`, written by
/// `Tests/Fixtures/make_fixtures.py`):
/// ```
/// s = Cls.from_config(SD15_SCHEDULER_CONFIG)          # use_karras_sigmas=True for dpmpp-2m-karras
/// s.set_timesteps(steps)                               # steps in 1, 2, 3, 4, 5, 10, 20, 25, 50
/// s.timesteps, s.sigmas, s.init_noise_sigma
/// ```
final class SchedulerTests: XCTestCase {
    /// `schedules.json`: the SD1.5 config and, per sampler and step count, timesteps and
    /// init_noise_sigma (sigmas are in `schedules.safetensors` as Float32).
    private struct Schedules: Decodable {
        struct Entry: Decodable {
            let timesteps: [Double]
            let initNoiseSigma: Double  // init_noise_sigma: the decoder reads snake-case keys
        }
        struct SamplerEntry: Decodable {
            let schedules: [String: Entry]
        }
        let config: SchedulerConfig
        let samplers: [String: SamplerEntry]
    }

    private func schedules() throws -> Schedules {
        try Fixture.json(Schedules.self, "schedulers/schedules.json", decoder: SchedulerConfig.decoder)
    }

    private func sigmas(of scheduler: any Scheduler) -> [Float]? {
        switch scheduler {
        case let s as EulerDiscreteScheduler: return s.sigmas
        case let s as EulerAncestralDiscreteScheduler: return s.sigmas
        case let s as DPMSolverMultistepScheduler: return s.sigmas
        default: return nil
        }
    }

    // s.betas, s.alphas_cumprod of any SD1.5 scheduler (torch.linspace ** 2, torch.cumprod).
    // Exact: every sampler's arithmetic starts from these.
    func testNoiseScheduleIsBitExact() throws {
        let file = try Fixture.tensors("schedulers/schedules")
        let schedule = try NoiseSchedule(config: SchedulerConfig.sd15.schedule())
        XCTAssertEqual(schedule.betas, try file.tensor("common/betas").data)
        XCTAssertEqual(schedule.alphasCumprod, try file.tensor("common/alphas_cumprod").data)
    }

    // The SD1.5 scheduler_config.json decodes to `SchedulerConfig.sd15`.
    func testSD15ConfigDecodes() throws {
        XCTAssertEqual(try schedules().config, SchedulerConfig.sd15)
    }

    // Timesteps exactly (they are what the UNet sees); init_noise_sigma and sigmas to 1e-6
    // relative. Not exact because torch's Float32 `** 0.5` / `sqrt` (its vectorised kernel on this
    // CPU) is not correctly rounded: about 1 value in 5 of the σ table `((1-ᾱ)/ᾱ) ** 0.5` is 1 ulp
    // away from the IEEE square root used here (e.g. σ at t = 0: torch 0.029167535, IEEE 0.029167533).
    func testTimestepsAndSigmasMatchDiffusers() throws {
        let reference = try schedules()
        let file = try Fixture.tensors("schedulers/schedules")
        XCTAssertEqual(Set(reference.samplers.keys), Set(Sampler.allCases.map(\.rawValue)))
        var checked = 0
        for sampler in Sampler.allCases {
            let entries = try XCTUnwrap(reference.samplers[sampler.rawValue]?.schedules, sampler.rawValue)
            for (stepsKey, entry) in entries {
                let steps = try XCTUnwrap(Int(stepsKey))
                let scheduler = try sampler.makeScheduler(config: reference.config, steps: steps)
                let label = "\(sampler)/steps=\(steps)"
                XCTAssertEqual(scheduler.timesteps, entry.timesteps.map { Float($0) }, label)
                let sigma0 = Float(entry.initNoiseSigma)
                XCTAssertLessThanOrEqual(abs(scheduler.initNoiseSigma - sigma0), 1e-6 * sigma0, label)
                if let ours = sigmas(of: scheduler) {
                    let theirs = try file.tensor("\(sampler.rawValue)/steps=\(steps)/sigmas").data
                    XCTAssertEqual(ours.count, theirs.count, label)
                    for (a, b) in zip(ours, theirs) {
                        XCTAssertLessThanOrEqual(abs(a - b), 1e-6 * abs(b), "\(label): sigma \(a) vs \(b)")
                    }
                }
                checked += 1
            }
        }
        XCTAssertEqual(checked, Sampler.allCases.count * 9, "every sampler at each of the 9 step counts")
    }

    /// `synthetic_runs.json`: per run the seed, steps and the Python that produced it.
    private struct Runs: Decodable {
        struct Run: Decodable {
            let seed: UInt64
            let steps: Int
        }
        let model: String
        let runs: [String: Run]
    }

    // A whole sampling loop with a synthetic model, step by step against diffusers:
    //   g = torch.Generator("cpu").manual_seed(seed)
    //   latents = torch.randn((1, 4, 8, 8), generator=g) * s.init_noise_sigma
    //   for t in s.timesteps:
    //       x_in = s.scale_model_input(latents, t)
    //       eps = 0.8 * x_in + 0.05 * (t.float() / 1000)
    //       latents = s.step(eps, t, latents, generator=g, [eta=0.0]).prev_sample
    // The initial latents must be exact. Later latents may differ in the last bits where torch's
    // scalar log/exp/pow differ from glibc's (DPM-Solver's λ, the σ interpolation), and such a
    // difference is carried through the following steps: max abs error <= 1e-5 at every step,
    // on values of magnitude up to ~15 (Euler's initial σ), i.e. a few Float32 ulps.
    func testSyntheticRunsMatchDiffusersStepByStep() throws {
        let runs = try Fixture.json(Runs.self, "schedulers/synthetic_runs.json")
        let file = try Fixture.tensors("schedulers/synthetic_runs")
        XCTAssertEqual(Set(runs.runs.keys.map { String($0.split(separator: "/")[0]) }), Set(Sampler.allCases.map(\.rawValue)))
        for (key, run) in runs.runs.sorted(by: { $0.key < $1.key }) {
            let sampler = try Sampler(name: String(key.split(separator: "/")[0]))
            var scheduler = try sampler.makeScheduler(config: .sd15, steps: run.steps)
            var generator = TorchGenerator(seed: run.seed)
            let noise = generator.randn([1, 4, 8, 8])
            let initNoiseSigma = scheduler.initNoiseSigma
            var latents = elementwise(noise) { $0 * initNoiseSigma }
            XCTAssertEqual(latents.data, try file.tensor("\(key)/init").data, "\(key)/init")
            for (i, t) in scheduler.timesteps.enumerated() {
                let input = scheduler.scaleModelInput(latents, stepIndex: i)
                let shift = Float(0.05) * (t / 1000)
                let eps = elementwise(input) { Float(0.8) * $0 + shift }
                latents = scheduler.step(modelOutput: eps, stepIndex: i, sample: latents, generator: &generator)
                assertClose(latents, try file.tensor("\(key)/step=\(i)/latents"), tolerance: 1e-5, "\(key) step \(i)")
            }
            XCTAssertNil(file.info("\(key)/step=\(scheduler.timesteps.count)/latents"),
                         "\(key): diffusers took more steps than we did")
        }
    }

    // Ancestral samplers draw noise shaped like the model output from the shared generator
    // (euler-a at every step, lcm at all but the last); the others never touch it.
    func testOnlyAncestralSamplersDrawNoise() throws {
        for sampler in Sampler.allCases {
            var scheduler = try sampler.makeScheduler(config: .sd15, steps: 4)
            var generator = TorchGenerator(seed: 1)
            var latents = Tensor(shape: [1, 4, 2, 2], repeating: 0.5)
            for i in scheduler.timesteps.indices {
                latents = scheduler.step(modelOutput: latents, stepIndex: i, sample: latents, generator: &generator)
            }
            var reference = TorchGenerator(seed: 1)
            let draws: Int
            switch sampler {
            case .eulerAncestral: draws = 4
            case .lcm: draws = 3
            default: draws = 0
            }
            for _ in 0..<draws { _ = reference.randn([1, 4, 2, 2]) }
            XCTAssertEqual(generator.randn(count: 20), reference.randn(count: 20), "\(sampler)")
        }
    }

    func testSamplerNamesAndAliases() throws {
        for sampler in Sampler.allCases {
            XCTAssertEqual(try Sampler(name: sampler.rawValue), sampler)
            XCTAssertEqual(try Sampler(name: sampler.rawValue.uppercased()), sampler)
        }
        let a1111: [String: Sampler] = [
            "Euler a": .eulerAncestral, "Euler": .euler, "DDIM": .ddim, "PLMS": .pndm,
            "DPM++ 2M": .dpmpp2m, "DPM++ 2M Karras": .dpmpp2mKarras, "LCM": .lcm, " euler A ": .eulerAncestral,
        ]
        for (name, sampler) in a1111 {
            XCTAssertEqual(try Sampler(name: name), sampler, name)
        }
        XCTAssertEqual(Sampler.default, .pndm)
        XCTAssertThrowsError(try Sampler(name: "heun")) { error in
            let message = "\(error)"
            XCTAssertEqual(error as? SchedulerError, .unknownSampler("heun"))
            XCTAssertTrue(message.contains("heun"), message)
            for sampler in Sampler.allCases {
                XCTAssertTrue(message.contains(sampler.rawValue), message)
            }
        }
    }

    func testInvalidStepCountsAndOptionsThrow() {
        XCTAssertThrowsError(try Sampler.pndm.makeScheduler(steps: 0)) { error in
            XCTAssertEqual(error as? SchedulerError, .invalidSteps(0, sampler: "pndm", range: 1...1000))
        }
        XCTAssertThrowsError(try Sampler.lcm.makeScheduler(steps: 51)) { error in
            XCTAssertEqual(error as? SchedulerError, .invalidSteps(51, sampler: "lcm", range: 1...50))
        }
        var config = SchedulerConfig.sd15
        config.skipPrkSteps = false
        XCTAssertThrowsError(try Sampler.pndm.makeScheduler(config: config, steps: 20))
        config = .sd15
        config.predictionType = "flow_prediction"
        XCTAssertThrowsError(try Sampler.euler.makeScheduler(config: config, steps: 20))
    }

    // diffusers' from_config: keys the file omits take each class's default. With "leading"
    // spacing Euler's initial noise is sqrt(σ_max² + 1) and its timesteps are whole numbers.
    func testMissingKeysTakeClassDefaults() throws {
        var config = SchedulerConfig.sd15
        config.timestepSpacing = "leading"
        let euler = try Sampler.euler.makeScheduler(config: config, steps: 10)
        XCTAssertEqual(euler.timesteps, [901, 801, 701, 601, 501, 401, 301, 201, 101, 1])
        let sigmaMax = try XCTUnwrap((euler as? EulerDiscreteScheduler)?.sigmas.first)
        XCTAssertEqual(euler.initNoiseSigma, (sigmaMax * sigmaMax + 1).squareRoot())
        // set_alpha_to_one: absent -> DDIM's default (true) is used; SD1.5's file says false.
        config = .sd15
        config.setAlphaToOne = nil
        var ddim = try Sampler.ddim.makeScheduler(config: config, steps: 1)
        var generator = TorchGenerator(seed: 0)
        let x = Tensor(shape: [1], data: [1])
        // One step from t = 1 to t' = -999: with ᾱ_final = 1 the result is x̂₀ = (x - sqrt(1-ᾱ₁) ε) / sqrt(ᾱ₁).
        let out = ddim.step(modelOutput: Tensor(shape: [1], data: [0]), stepIndex: 0, sample: x, generator: &generator)
        let alpha1 = try NoiseSchedule(config: SchedulerConfig.sd15.schedule()).alphasCumprod[1]
        XCTAssertEqual(out.data[0], 1 / alpha1.squareRoot())
    }
}
