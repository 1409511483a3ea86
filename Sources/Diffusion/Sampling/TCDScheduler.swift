import Foundation

/// diffusers' `TCDScheduler`: Trajectory Consistency Distillation's strategic stochastic sampling,
/// Zheng et al., "Trajectory Consistency Distillation" (2024), eq. 9. On LCM's timesteps, with
/// `s = floor((1 − γ) · t')` for the next timestep `t'` and γ = `eta`:
/// ```
/// x̂₀ = (x − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t),   x_s = sqrt(ᾱ_s) x̂₀ + sqrt(1 − ᾱ_s) ε
/// x ← sqrt(ᾱ_t' / ᾱ_s) x_s + sqrt(1 − ᾱ_t' / ᾱ_s) z,   z ~ N(0, I)   (γ > 0, not at the last step)
/// ```
/// γ = 0 is deterministic; the TCD authors recommend 0.3. The last step returns `x_s` and draws nothing.
public struct TCDScheduler: Scheduler {
    public let timesteps: [Float]
    public let initNoiseSigma: Float = 1
    private let integerTimesteps: [Int]
    private let schedule: NoiseSchedule
    private let finalAlphaCumprod: Float
    private let prediction: PredictionType
    /// γ, the stochasticity, in 0 ... 1.
    public let eta: Float

    /// - Throws: `SchedulerError` for steps outside 1 ... `original_inference_steps` (50), `eta`
    ///   outside 0 ... 1 or an unsupported option.
    public init(config: SchedulerConfig, steps: Int, eta: Double = 0.3) throws {
        try config.rejectUnsupported()
        let resolved = config.schedule(betaStart: 0.00085, betaEnd: 0.012, betaSchedule: "scaled_linear")
        let originalSteps = config.originalInferenceSteps ?? 50
        guard (1...resolved.numTrainTimesteps).contains(originalSteps) else {
            throw SchedulerError.invalidConfig("original_inference_steps \(originalSteps) must be 1...\(resolved.numTrainTimesteps)")
        }
        guard eta.isFinite, (0...1).contains(eta) else { throw SchedulerError.invalidConfig("eta \(eta) must be from 0 to 1") }
        try validateSteps(steps, sampler: .tcd, range: 1...originalSteps)
        schedule = try NoiseSchedule(config: resolved)
        finalAlphaCumprod = config.setAlphaToOne ?? true ? 1 : schedule.alphasCumprod[0]
        prediction = try PredictionType(config.predictionType, supported: [.epsilon, .vPrediction, .sample])
        self.eta = Float(eta)
        integerTimesteps = consistencyTimesteps(originalSteps: originalSteps, trainSteps: resolved.numTrainTimesteps, steps: steps)
        timesteps = integerTimesteps.map { Float($0) }
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor { sample }

    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) -> Tensor {
        schedule.addNoise(to: original, noise: noise, timestep: integerTimesteps[stepIndex])
    }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator) -> Tensor {
        let timestep = integerTimesteps[stepIndex]
        // diffusers takes timestep 0 after the last one, not the final ᾱ of 1.
        let previous = stepIndex + 1 < integerTimesteps.count ? integerTimesteps[stepIndex + 1] : 0
        // floor((1 - eta) * prev_timestep) on a Float32 tensor, then to an integer.
        let s = Int(((1 - eta) * Float(previous)).rounded(.down))
        let alphaProd = schedule.alphasCumprod[timestep], betaProd = 1 - alphaProd
        let alphaProdPrev = previous >= 0 ? schedule.alphasCumprod[previous] : finalAlphaCumprod
        let alphaProdS = schedule.alphasCumprod[s], betaProdS = 1 - alphaProdS
        let sqrtAlpha = alphaProd.squareRoot(), sqrtBeta = betaProd.squareRoot()
        let sqrtAlphaS = alphaProdS.squareRoot(), sqrtBetaS = betaProdS.squareRoot()

        let predictedNoised: Tensor
        switch prediction {
        case .epsilon:
            predictedNoised = elementwise(sample, modelOutput) { x, e in
                let x0 = (x - sqrtBeta * e) / sqrtAlpha
                return sqrtAlphaS * x0 + sqrtBetaS * e
            }
        case .sample:
            predictedNoised = elementwise(sample, modelOutput) { x, x0 in
                let e = (x - sqrtAlpha * x0) / sqrtBeta
                return sqrtAlphaS * x0 + sqrtBetaS * e
            }
        case .vPrediction:
            predictedNoised = elementwise(sample, modelOutput) { x, v in
                let x0 = sqrtAlpha * x - sqrtBeta * v, e = sqrtAlpha * v + sqrtBeta * x
                return sqrtAlphaS * x0 + sqrtBetaS * e
            }
        }
        guard eta > 0, stepIndex != integerTimesteps.count - 1 else { return predictedNoised }
        let noise = generator.randn(modelOutput.shape)
        let ratio = alphaProdPrev / alphaProdS
        let keep = ratio.squareRoot(), spread = (1 - ratio).squareRoot()
        return elementwise(predictedNoised, noise) { keep * $0 + spread * $1 }
    }
}
