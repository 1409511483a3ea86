import Foundation

/// diffusers' `EulerDiscreteScheduler`: Euler's method on the probability-flow ODE in the
/// σ-parameterisation of Karras et al., "Elucidating the Design Space of Diffusion-Based
/// Generative Models" (NeurIPS 2022), Algorithm 1 without churn:
/// ```
/// x̂₀ = x - σ_i ε,    d = (x - x̂₀) / σ_i,    x ← x + d (σ_{i+1} - σ_i)
/// ```
/// The model sees `x / sqrt(σ_i² + 1)`, and the initial noise is scaled by σ_max (by
/// `sqrt(σ_max² + 1)` with "leading" spacing). With the default "linspace" spacing the timesteps
/// are fractional (`linspace(999, 0, steps)`) and σ is interpolated linearly between training steps.
public struct EulerDiscreteScheduler: SigmaScheduler {
    public let timesteps: [Float]
    public let initNoiseSigma: Float
    /// σ for each timestep, then the final σ (0): `timesteps.count + 1` values, Float32.
    public let sigmas: [Float]
    private let prediction: PredictionType

    /// - Throws: `SchedulerError` for steps outside 1 ... num_train_timesteps or an unsupported option.
    public init(config: SchedulerConfig, steps: Int) throws {
        try config.rejectUnsupported()
        if let type = config.interpolationType, type != "linear" {
            throw SchedulerError.unsupportedOption(key: "interpolation_type", value: type, supported: ["linear"])
        }
        if let type = config.timestepType, type != "discrete" {
            throw SchedulerError.unsupportedOption(key: "timestep_type", value: type, supported: ["discrete"])
        }
        let sigmaSchedule = try SigmaSchedule(
            config: config, steps: steps, sampler: .euler, useKarrasSigmas: config.useKarrasSigmas ?? false)
        timesteps = sigmaSchedule.timesteps
        sigmas = sigmaSchedule.sigmas
        initNoiseSigma = sigmaSchedule.initNoiseSigma
        prediction = try PredictionType(config.predictionType, supported: [.epsilon, .vPrediction, .sample])
    }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator) -> Tensor {
        let sigma = sigmas[stepIndex]
        let sigmaHat = sigma * (0 + 1)  // no churn: gamma = 0
        let predictedOriginal = predictOriginal(prediction, sigma: sigma, sigmaHat: sigmaHat, sample: sample, modelOutput: modelOutput)
        let dt = sigmas[stepIndex + 1] - sigmaHat
        return elementwise(sample, predictedOriginal) { x, x0 in
            let derivative = (x - x0) / sigmaHat
            return x + derivative * dt
        }
    }
}

/// The samplers in the σ-parameterisation of Karras et al. (the Euler family): the model sees
/// `x / sqrt(σ² + 1)`, and image-to-image noise is added as `x₀ + σ·ε` (diffusers' `add_noise`).
public protocol SigmaScheduler: Scheduler {
    /// σ for each timestep, then the final σ: `timesteps.count + 1` values, Float32.
    var sigmas: [Float] { get }
}

extension SigmaScheduler {
    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor {
        let sigma = sigmas[stepIndex]
        let scale = (sigma * sigma + 1).squareRoot()
        return elementwise(sample) { $0 / scale }
    }

    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) -> Tensor {
        let sigma = sigmas[stepIndex]
        return elementwise(original, noise) { x, e in
            let spread = e * sigma
            return x + spread
        }
    }
}

/// x̂₀ from the model output in the σ-parameterisation (`sample`, `epsilon`: x - σ ε,
/// `v_prediction`: -σ/sqrt(σ²+1) v + x/(σ²+1)), in diffusers' Float32 operation order.
func predictOriginal(_ prediction: PredictionType, sigma: Float, sigmaHat: Float, sample: Tensor, modelOutput: Tensor) -> Tensor {
    switch prediction {
    case .sample:
        return modelOutput
    case .epsilon:
        return elementwise(sample, modelOutput) { $0 - sigmaHat * $1 }
    case .vPrediction:
        let outputCoeff = -sigma / (sigma * sigma + 1).squareRoot()
        let sampleDivisor = sigma * sigma + 1
        return elementwise(modelOutput, sample) { $0 * outputCoeff + $1 / sampleDivisor }
    }
}

/// The timesteps and σ of the Euler samplers' `set_timesteps`, with NumPy's Float64 arithmetic
/// and the final cast to Float32.
struct SigmaSchedule {
    let timesteps: [Float]
    /// `timesteps.count + 1` values; the last is 0 (`final_sigmas_type` "zero") or σ at t = 0.
    let sigmas: [Float]
    let initNoiseSigma: Float

    init(config: SchedulerConfig, steps: Int, sampler: Sampler, useKarrasSigmas: Bool) throws {
        let resolved = config.schedule()
        let trainSteps = resolved.numTrainTimesteps
        try validateSteps(steps, sampler: sampler, range: 1...trainSteps)
        let table = try NoiseSchedule(config: resolved).sigmas
        let spacing = try TimestepSpacing(config.timestepSpacing, default: .linspace)
        var times: [Float]
        switch spacing {
        case .linspace:
            times = numpyLinspace(0, Double(trainSteps - 1), steps).reversed().map { Float($0) }
        case .leading:
            let ratio = trainSteps / steps
            times = (0..<steps).reversed().map { Float($0 * ratio) + Float(config.stepsOffset ?? 0) }
        case .trailing:
            let ratio = Double(trainSteps) / Double(steps)
            times = numpyArange(Double(trainSteps), 0, -ratio).map { Float($0.rounded(.toNearestOrEven)) - 1 }
        }
        var values = times.map { numpyInterp(Double($0), table) }
        if useKarrasSigmas {
            values = karrasSigmas(
                sigmaMin: config.sigmaMin ?? values[values.count - 1], sigmaMax: config.sigmaMax ?? values[0],
                count: steps)
            let logSigmas = table.map { Float(log(Double($0))) }
            times = values.map { Float(sigmaToT($0, logSigmas: logSigmas)) }
        }
        let last: Float
        switch config.finalSigmasType ?? "zero" {
        case "zero": last = 0
        case "sigma_min": last = table[0]
        case let other:
            throw SchedulerError.unsupportedOption(key: "final_sigmas_type", value: other, supported: ["zero", "sigma_min"])
        }
        timesteps = times
        sigmas = values.map { Float($0) } + [last]
        let maxSigma = sigmas.max() ?? 0
        initNoiseSigma = spacing == .leading ? (maxSigma * maxSigma + 1).squareRoot() : maxSigma
    }
}
