import Foundation

/// diffusers' `LCMScheduler`: multistep latent-consistency sampling, Luo et al., "Latent
/// Consistency Models" (2023), Algorithm 1. The timesteps are chosen among the
/// `original_inference_steps` of the distillation schedule (every T/50-th step: 999, 979, ...).
/// At each step, with the boundary scalings of consistency models (Song et al. 2023) at
/// s = t · `timestep_scaling`, σ_data = 0.5:
/// ```
/// c_skip = σ_data² / (s² + σ_data²),   c_out = s / sqrt(s² + σ_data²)
/// x̂₀ = (x - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t),   denoised = c_out x̂₀ + c_skip x
/// x ← sqrt(ᾱ_t') denoised + sqrt(1 - ᾱ_t') z,   z ~ N(0, I)
/// ```
/// with t' the next timestep; the last step returns `denoised` and draws nothing. Like
/// `StableDiffusionPipeline`, the sampler continues from `prev_sample`.
public struct LCMScheduler: Scheduler {
    public let timesteps: [Float]
    public let initNoiseSigma: Float = 1
    private let shared: ConsistencySchedule
    private var integerTimesteps: [Int] { shared.integerTimesteps }
    private var schedule: NoiseSchedule { shared.schedule }
    private var finalAlphaCumprod: Float { shared.finalAlphaCumprod }
    private var prediction: PredictionType { shared.prediction }
    private let clipRange: Float?
    private let timestepScaling: Float

    /// - Throws: `SchedulerError` for steps outside 1 ... `original_inference_steps` (50) or an
    ///   unsupported option.
    public init(config: SchedulerConfig, steps: Int) throws {
        shared = try ConsistencySchedule(config: config, steps: steps, sampler: .lcm)
        clipRange = config.clipSample ?? false ? Float(config.clipSampleRange ?? 1) : nil
        timestepScaling = Float(config.timestepScaling ?? 10)
        timesteps = shared.integerTimesteps.map { Float($0) }
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor { sample }

    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) -> Tensor {
        shared.addNoise(to: original, noise: noise, stepIndex: stepIndex)
    }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator) -> Tensor {
        let timestep = integerTimesteps[stepIndex]
        let previous = stepIndex + 1 < integerTimesteps.count ? integerTimesteps[stepIndex + 1] : timestep
        let alphaProd = schedule.alphasCumprod[timestep]
        let alphaProdPrev = previous >= 0 ? schedule.alphasCumprod[previous] : finalAlphaCumprod
        let betaProd = 1 - alphaProd
        let betaProdPrev = 1 - alphaProdPrev

        // get_scalings_for_boundary_condition_discrete, in Float32 as torch computes it.
        let sigmaData: Float = 0.5
        let scaled = Float(timestep) * timestepScaling
        let cSkip = sigmaData * sigmaData / (scaled * scaled + sigmaData * sigmaData)
        let cOut = scaled / (scaled * scaled + sigmaData * sigmaData).squareRoot()

        let sqrtAlpha = alphaProd.squareRoot(), sqrtBeta = betaProd.squareRoot()
        var predictedOriginal: Tensor
        switch prediction {
        case .epsilon: predictedOriginal = elementwise(sample, modelOutput) { ($0 - sqrtBeta * $1) / sqrtAlpha }
        case .sample: predictedOriginal = modelOutput
        case .vPrediction: predictedOriginal = elementwise(sample, modelOutput) { sqrtAlpha * $0 - sqrtBeta * $1 }
        }
        if let range = clipRange {
            predictedOriginal = elementwise(predictedOriginal) { min(max($0, -range), range) }
        }
        let denoised = elementwise(predictedOriginal, sample) { cOut * $0 + cSkip * $1 }
        guard stepIndex != integerTimesteps.count - 1 else { return denoised }
        let noise = generator.randn(modelOutput.shape)
        let sqrtAlphaPrev = alphaProdPrev.squareRoot(), sqrtBetaPrev = betaProdPrev.squareRoot()
        return elementwise(denoised, noise) { sqrtAlphaPrev * $0 + sqrtBetaPrev * $1 }
    }
}

/// What the consistency samplers (LCM, TCD) share: their noise schedule (the distillation's scaled
/// linear betas by default), the final ᾱ, the prediction type, and the timesteps chosen among the
/// `original_inference_steps` of the distillation schedule:
/// `origin = arange(1, original + 1) · (T // original) − 1`, taken from the end at
/// `floor(linspace(0, original, steps, endpoint=False))`.
struct ConsistencySchedule: Sendable {
    let schedule: NoiseSchedule
    let integerTimesteps: [Int]
    let finalAlphaCumprod: Float
    let prediction: PredictionType

    /// - Throws: `SchedulerError` for steps outside 1 ... `original_inference_steps` or an unsupported option.
    init(config: SchedulerConfig, steps: Int, sampler: Sampler) throws {
        try config.rejectUnsupported()
        let resolved = config.schedule(betaStart: 0.00085, betaEnd: 0.012, betaSchedule: "scaled_linear")
        let originalSteps = config.originalInferenceSteps ?? 50
        guard (1...resolved.numTrainTimesteps).contains(originalSteps) else {
            throw SchedulerError.invalidConfig(
                "original_inference_steps \(originalSteps) must be 1...\(resolved.numTrainTimesteps)")
        }
        try validateSteps(steps, sampler: sampler, range: 1...originalSteps)
        schedule = try NoiseSchedule(config: resolved)
        finalAlphaCumprod = config.setAlphaToOne ?? true ? 1 : schedule.alphasCumprod[0]
        prediction = try PredictionType(config.predictionType, supported: [.epsilon, .vPrediction, .sample])
        let k = resolved.numTrainTimesteps / originalSteps
        let origin = (1...originalSteps).map { $0 * k - 1 }.reversed() as [Int]
        let indices = numpyLinspace(0, Double(origin.count), steps, endpoint: false).map { Int($0.rounded(.down)) }
        integerTimesteps = indices.map { origin[$0] }
    }

    func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) -> Tensor {
        schedule.addNoise(to: original, noise: noise, timestep: integerTimesteps[stepIndex])
    }
}
