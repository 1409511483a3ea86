import Foundation

/// diffusers' `DPMSolverMultistepScheduler` with its defaults: DPM-Solver++(2M) of Lu et al.,
/// "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models" (2022),
/// Algorithm 2, midpoint form. With α_t = 1/sqrt(σ² + 1), σ_t = σ α_t, λ = log α_t - log σ_t,
/// h = λ_{i+1} - λ_i and the data prediction x̂₀ = (x - σ_t ε) / α_t:
/// ```
/// first order:  x ← (σ_{i+1}/σ_i) x - α_{i+1} (e^{-h} - 1) D₀
/// second order: x ← (σ_{i+1}/σ_i) x - α_{i+1} (e^{-h} - 1) D₀ - ½ α_{i+1} (e^{-h} - 1) D₁,
///               D₀ = x̂₀_i,  D₁ = (x̂₀_i - x̂₀_{i-1}) · h / h_{i-1}
/// ```
/// The first step is first order; so is the last (`final_sigmas_type` "zero", and with
/// `lower_order_final` for fewer than 15 steps); with fewer than 15 steps the one before is second
/// order. `dpmpp-2m-karras` spaces σ as Karras et al. (2022), eq. 5 (`use_karras_sigmas`), with
/// the model timesteps rounded from σ.
public struct DPMSolverMultistepScheduler: Scheduler {
    public let timesteps: [Float]
    public let initNoiseSigma: Float = 1
    /// σ for each timestep, then the final σ: `timesteps.count + 1` values, Float32.
    public let sigmas: [Float]
    private let prediction: PredictionType
    private let order: Int
    private let heun: Bool
    private let lowerOrderFinal: Bool
    private let eulerAtFinal: Bool
    private let finalSigmaIsZero: Bool
    /// The data predictions x̂₀ of the previous steps, newest last.
    private var dataPredictions: [Tensor] = []
    private var lowerOrderCount = 0

    /// - Parameter useKarrasSigmas: overrides the config's `use_karras_sigmas` (the
    ///   `dpmpp-2m-karras` sampler passes true).
    /// - Throws: `SchedulerError` for steps outside 1 ... num_train_timesteps or an unsupported option.
    public init(config: SchedulerConfig, steps: Int, useKarrasSigmas: Bool? = nil) throws {
        try config.rejectUnsupported()
        if let algorithm = config.algorithmType, algorithm != "dpmsolver++" {
            throw SchedulerError.unsupportedOption(key: "algorithm_type", value: algorithm, supported: ["dpmsolver++"])
        }
        if let clip = config.lambdaMinClipped, clip != -.infinity {
            throw SchedulerError.unsupportedOption(key: "lambda_min_clipped", value: "\(clip)", supported: ["-inf"])
        }
        if let variance = config.varianceType {
            throw SchedulerError.unsupportedOption(key: "variance_type", value: variance, supported: ["null"])
        }
        order = config.solverOrder ?? 2
        guard order == 1 || order == 2 else {
            throw SchedulerError.unsupportedOption(key: "solver_order", value: "\(order)", supported: ["1", "2"])
        }
        switch config.solverType ?? "midpoint" {
        case "midpoint": heun = false
        case "heun": heun = true
        case let other:
            throw SchedulerError.unsupportedOption(key: "solver_type", value: other, supported: ["midpoint", "heun"])
        }
        lowerOrderFinal = config.lowerOrderFinal ?? true
        eulerAtFinal = config.eulerAtFinal ?? false
        prediction = try PredictionType(config.predictionType, supported: [.epsilon, .vPrediction, .sample])

        let resolved = config.schedule()
        let trainSteps = resolved.numTrainTimesteps
        let karras = useKarrasSigmas ?? config.useKarrasSigmas ?? false
        // Without Karras sigmas, `trainSteps` steps repeat a timestep (linspace over steps + 1 points
        // rounds two to the same integer), the step size h becomes 0 and diffusers returns NaN
        // latents. Refuse that count rather than return a NaN image.
        try validateSteps(steps, sampler: karras ? .dpmpp2mKarras : .dpmpp2m, range: 1...(karras ? trainSteps : trainSteps - 1))
        let table = try NoiseSchedule(config: resolved).sigmas
        // With lambda_min_clipped = -inf no timestep is clipped: last_timestep = T.
        let spacing = try TimestepSpacing(config.timestepSpacing, default: .linspace)
        var times: [Double]
        switch spacing {
        case .linspace:
            times = numpyLinspace(0, Double(trainSteps - 1), steps + 1).map { $0.rounded(.toNearestOrEven) }
                .reversed().dropLast()
        case .leading:
            let ratio = trainSteps / (steps + 1)
            times = (0...steps).reversed().dropLast().map { Double($0 * ratio + (config.stepsOffset ?? 0)) }
        case .trailing:
            let ratio = Double(trainSteps) / Double(steps)
            times = numpyArange(Double(trainSteps), 0, -ratio).map { $0.rounded(.toNearestOrEven) - 1 }
        }
        var values: [Double]
        if useKarrasSigmas ?? config.useKarrasSigmas ?? false {
            values = karrasSigmas(
                sigmaMin: config.sigmaMin ?? Double(table[0]), sigmaMax: config.sigmaMax ?? Double(table[trainSteps - 1]),
                count: steps)
            let logSigmas = table.map { Float(log(Double($0))) }
            times = values.map { sigmaToT($0, logSigmas: logSigmas) }
            if resolved.betaSchedule != "squaredcos_cap_v2" {
                times = times.map { $0.rounded(.toNearestOrEven) }
            }
        } else {
            values = times.map { numpyInterp($0, table) }
        }
        let last: Float
        switch config.finalSigmasType ?? "zero" {
        case "zero": last = 0; finalSigmaIsZero = true
        case "sigma_min": last = table[0]; finalSigmaIsZero = false
        case let other:
            throw SchedulerError.unsupportedOption(key: "final_sigmas_type", value: other, supported: ["zero", "sigma_min"])
        }
        // timesteps are int64 in diffusers: truncation toward zero.
        timesteps = times.map { Float(Int($0)) }
        sigmas = values.map { Float($0) } + [last]
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor { sample }

    /// `_sigma_to_alpha_sigma_t`: α = 1/sqrt(σ² + 1), σ_t = σ α (Float32).
    private func alphaSigma(_ sigma: Float) -> (alpha: Float, sigma: Float) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }

    /// λ = log α - log σ_t (Float32; +inf at σ = 0).
    private func lambda(_ pair: (alpha: Float, sigma: Float)) -> Float {
        log(pair.alpha) - log(pair.sigma)
    }

    /// `α_t·x₀ + σ_t·ε` with α_t, σ_t from σ at `stepIndex` (diffusers' DPM-Solver `add_noise`).
    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) -> Tensor {
        let (alpha, sigma) = alphaSigma(sigmas[stepIndex])
        return elementwise(original, noise) { x, e in
            let a = alpha * x, b = sigma * e
            return a + b
        }
    }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator) -> Tensor {
        let count = timesteps.count
        let finalFirstOrder = stepIndex == count - 1 && (eulerAtFinal || (lowerOrderFinal && count < 15) || finalSigmaIsZero)

        // convert_model_output: the data prediction x̂₀.
        let (alphaS, sigmaS) = alphaSigma(sigmas[stepIndex])
        let x0: Tensor
        switch prediction {
        case .epsilon: x0 = elementwise(sample, modelOutput) { ($0 - sigmaS * $1) / alphaS }
        case .sample: x0 = modelOutput
        case .vPrediction: x0 = elementwise(sample, modelOutput) { alphaS * $0 - sigmaS * $1 }
        }
        dataPredictions = Array((dataPredictions + [x0]).suffix(order))

        let target = alphaSigma(sigmas[stepIndex + 1])
        let current = alphaSigma(sigmas[stepIndex])
        let h = lambda(target) - lambda(current)
        let ratio = target.sigma / current.sigma
        let expm = exp(-h) - 1.0
        let coefficient0 = target.alpha * expm
        let result: Tensor
        if order == 1 || lowerOrderCount < 1 || finalFirstOrder {
            // dpm_solver_first_order_update
            result = elementwise(sample, x0) { ratio * $0 - coefficient0 * $1 }
        } else {
            // multistep_dpm_solver_second_order_update
            let previous = alphaSigma(sigmas[stepIndex - 1])
            let h0 = lambda(current) - lambda(previous)
            let r0 = h0 / h
            let inverseR0 = 1.0 / r0
            let m0 = dataPredictions[dataPredictions.count - 1], m1 = dataPredictions[dataPredictions.count - 2]
            let d1 = elementwise(m0, m1) { inverseR0 * ($0 - $1) }
            let base = elementwise(sample, m0) { ratio * $0 - coefficient0 * $1 }
            if heun {
                let coefficient1 = target.alpha * (expm / h + 1.0)
                result = elementwise(base, d1) { $0 + coefficient1 * $1 }
            } else {
                let coefficient1 = 0.5 * (target.alpha * expm)
                result = elementwise(base, d1) { $0 - coefficient1 * $1 }
            }
        }
        if lowerOrderCount < order { lowerOrderCount += 1 }
        return result
    }
}
