import Foundation

/// diffusers' `EulerAncestralDiscreteScheduler` ("Euler a"): the ancestral Euler sampler of
/// k-diffusion (Karras et al. 2022, with the ancestral split of Song et al. 2021). From σ = σ_i to
/// σ' = σ_{i+1} the step goes deterministically down to σ_down and adds fresh noise of σ_up:
/// ```
/// σ_up = sqrt(σ'² (σ² - σ'²) / σ²),   σ_down = sqrt(σ'² - σ_up²)
/// x̂₀ = x - σ ε,   x ← x + (x - x̂₀)/σ · (σ_down - σ) + σ_up · z,   z ~ N(0, I)
/// ```
/// `z` is drawn from the pipeline's generator at every step, the last one included (where
/// σ_up = 0), shaped like the model output.
public struct EulerAncestralDiscreteScheduler: SigmaScheduler {
    public let timesteps: [Float]
    public let initNoiseSigma: Float
    /// σ for each timestep, then 0: `timesteps.count + 1` values, Float32.
    public let sigmas: [Float]
    private let prediction: PredictionType

    /// - Throws: `SchedulerError` for steps outside 1 ... num_train_timesteps or an unsupported option.
    public init(config: SchedulerConfig, steps: Int) throws {
        try config.rejectUnsupported()
        var plain = config
        plain.finalSigmasType = nil  // not a key of this class
        let sigmaSchedule = try SigmaSchedule(config: plain, steps: steps, sampler: .eulerAncestral, useKarrasSigmas: false)
        timesteps = sigmaSchedule.timesteps
        sigmas = sigmaSchedule.sigmas
        initNoiseSigma = sigmaSchedule.initNoiseSigma
        prediction = try PredictionType(config.predictionType, supported: [.epsilon, .vPrediction])
    }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator) -> Tensor {
        let sigma = sigmas[stepIndex]
        let predictedOriginal = predictOriginal(prediction, sigma: sigma, sigmaHat: sigma, sample: sample, modelOutput: modelOutput)
        let sigmaFrom = sigma, sigmaTo = sigmas[stepIndex + 1]
        let sigmaUp = (sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo) / (sigmaFrom * sigmaFrom)).squareRoot()
        let sigmaDown = (sigmaTo * sigmaTo - sigmaUp * sigmaUp).squareRoot()
        let dt = sigmaDown - sigma
        let deterministic = elementwise(sample, predictedOriginal) { x, x0 in
            let derivative = (x - x0) / sigma
            return x + derivative * dt
        }
        let noise = generator.randn(modelOutput.shape)
        return elementwise(deterministic, noise) { $0 + $1 * sigmaUp }
    }
}
