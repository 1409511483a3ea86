import Foundation

/// diffusers' `DDIMScheduler` with `eta = 0` (as `StableDiffusionPipeline` passes): the
/// deterministic sampler of Song et al., "Denoising Diffusion Implicit Models" (ICLR 2021), eq. 12
/// with σ_t = 0:
/// ```
/// x̂₀ = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t)
/// x_t' = sqrt(ᾱ_t') x̂₀ + sqrt(1 - ᾱ_t') ε,        t' = t - T/steps
/// ```
/// ᾱ of a negative t' is `final_alpha_cumprod` (ᾱ₀, or 1 with `set_alpha_to_one`).
public struct DDIMScheduler: Scheduler {
    public let timesteps: [Float]
    public let initNoiseSigma: Float = 1
    private let integerTimesteps: [Int]
    private let schedule: NoiseSchedule
    private let finalAlphaCumprod: Float
    private let stride: Int
    private let prediction: PredictionType
    private let clipRange: Float?

    /// - Throws: `SchedulerError` for steps outside 1 ... num_train_timesteps or an unsupported option.
    public init(config: SchedulerConfig, steps: Int) throws {
        try config.rejectUnsupported()
        let resolved = config.schedule()
        try validateSteps(steps, sampler: .ddim, range: 1...resolved.numTrainTimesteps)
        schedule = try NoiseSchedule(config: resolved)
        finalAlphaCumprod = config.setAlphaToOne ?? true ? 1 : schedule.alphasCumprod[0]
        prediction = try PredictionType(config.predictionType, supported: [.epsilon, .vPrediction, .sample])
        clipRange = config.clipSample ?? true ? Float(config.clipSampleRange ?? 1) : nil
        stride = resolved.numTrainTimesteps / steps
        let spacing = try TimestepSpacing(config.timestepSpacing, default: .leading)
        integerTimesteps = try discreteTimesteps(
            spacing, steps: steps, trainSteps: resolved.numTrainTimesteps, stepsOffset: config.stepsOffset ?? 0, sampler: .ddim).reversed()
        timesteps = integerTimesteps.map { Float($0) }
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor { sample }

    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) -> Tensor {
        schedule.addNoise(to: original, noise: noise, timestep: integerTimesteps[stepIndex])
    }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator) -> Tensor {
        let timestep = integerTimesteps[stepIndex]
        let previous = timestep - stride
        let alphaProd = schedule.alphasCumprod[timestep]
        let alphaProdPrev = previous >= 0 ? schedule.alphasCumprod[previous] : finalAlphaCumprod
        let betaProd = 1 - alphaProd
        let sqrtAlpha = alphaProd.squareRoot(), sqrtBeta = betaProd.squareRoot()

        var predictedOriginal: Tensor
        let predictedEpsilon: Tensor
        switch prediction {
        case .epsilon:
            predictedOriginal = elementwise(sample, modelOutput) { ($0 - sqrtBeta * $1) / sqrtAlpha }
            predictedEpsilon = modelOutput
        case .sample:
            predictedOriginal = modelOutput
            predictedEpsilon = elementwise(sample, modelOutput) { ($0 - sqrtAlpha * $1) / sqrtBeta }
        case .vPrediction:
            predictedOriginal = elementwise(sample, modelOutput) { sqrtAlpha * $0 - sqrtBeta * $1 }
            predictedEpsilon = elementwise(modelOutput, sample) { sqrtAlpha * $0 + sqrtBeta * $1 }
        }
        if let range = clipRange {
            predictedOriginal = elementwise(predictedOriginal) { min(max($0, -range), range) }
        }
        // eta = 0: std_dev_t = 0, so the direction term is sqrt(1 - ᾱ_t' - 0) ε and no noise is drawn.
        let directionCoeff = (1 - alphaProdPrev - 0).squareRoot()
        let sqrtAlphaPrev = alphaProdPrev.squareRoot()
        return elementwise(predictedOriginal, predictedEpsilon) { sqrtAlphaPrev * $0 + directionCoeff * $1 }
    }
}
