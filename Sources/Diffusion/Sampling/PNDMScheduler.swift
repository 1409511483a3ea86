import Foundation

/// diffusers' `PNDMScheduler` with `skip_prk_steps` (the PLMS sampler, SD1.5's default): the
/// pseudo linear multistep method of Liu et al., "Pseudo Numerical Methods for Diffusion Models on
/// Manifolds" (ICLR 2022).
///
/// Each step moves the sample from t to t' = t - T/steps with the DDIM transfer (eq. 9)
/// ```
/// x_t' = sqrt(ᾱ_t' / ᾱ_t) x_t - (ᾱ_t' - ᾱ_t) ε / (ᾱ_t sqrt(1 - ᾱ_t') + sqrt(ᾱ_t (1 - ᾱ_t) ᾱ_t'))
/// ```
/// where ε is an Adams–Bashforth combination of the model outputs (eq. 12):
/// `(55 e₀ - 59 e₋₁ + 37 e₋₂ - 9 e₋₃) / 24` once four are known, lower orders before. The first
/// step is taken twice: at timesteps[0] with `e₀`, then again from the same sample with the
/// average of `e₀` and the output at the first step's target (timesteps[1] == timesteps[2]), which
/// is why there are `steps + 1` timesteps.
public struct PNDMScheduler: Scheduler {
    public let timesteps: [Float]
    public let initNoiseSigma: Float = 1
    private let integerTimesteps: [Int]
    private let schedule: NoiseSchedule
    private let finalAlphaCumprod: Float
    private let stride: Int
    private let prediction: PredictionType
    /// The model outputs kept for the multistep formula (`ets`), newest last.
    private var outputs: [Tensor] = []
    /// The sample before the first step, which the repeated first step starts from again.
    private var firstSample: Tensor?
    private var counter = 0

    /// - Throws: `SchedulerError` for steps outside 1 ... num_train_timesteps or an option this
    ///   port does not implement (`skip_prk_steps` false, the Runge–Kutta warm-up).
    public init(config: SchedulerConfig, steps: Int) throws {
        try config.rejectUnsupported()
        let resolved = config.schedule()
        try validateSteps(steps, sampler: .pndm, range: 1...resolved.numTrainTimesteps)
        if config.skipPrkSteps != true {
            throw SchedulerError.unsupportedOption(key: "skip_prk_steps", value: "false", supported: ["true"])
        }
        schedule = try NoiseSchedule(config: resolved)
        finalAlphaCumprod = config.setAlphaToOne ?? false ? 1 : schedule.alphasCumprod[0]
        prediction = try PredictionType(config.predictionType, supported: [.epsilon, .vPrediction])
        stride = resolved.numTrainTimesteps / steps
        let spacing = try TimestepSpacing(config.timestepSpacing, default: .leading)
        let ascending = try discreteTimesteps(
            spacing, steps: steps, trainSteps: resolved.numTrainTimesteps, stepsOffset: config.stepsOffset ?? 0, sampler: .pndm)
        // plms_timesteps = concat(ts[:-1], ts[-2:-1], ts[-1:])[::-1]
        let plms = Array(ascending.dropLast()) + Array(ascending.dropLast().suffix(1)) + [ascending[ascending.count - 1]]
        integerTimesteps = plms.reversed()
        timesteps = integerTimesteps.map { Float($0) }
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor { sample }

    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) -> Tensor {
        schedule.addNoise(to: original, noise: noise, timestep: integerTimesteps[stepIndex])
    }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator) -> Tensor {
        var timestep = integerTimesteps[stepIndex]
        var previous = timestep - stride
        if counter != 1 {
            outputs = Array(outputs.suffix(3)) + [modelOutput]
        } else {
            // The first step again, from the first sample, to the same target.
            previous = timestep
            timestep += stride
        }
        var epsilon: Tensor
        var current = sample
        switch (outputs.count, counter) {
        case (1, 0):
            epsilon = modelOutput
            firstSample = sample
        case (1, 1):
            epsilon = elementwise(modelOutput, outputs[0]) { ($0 + $1) / 2 }
            current = firstSample ?? sample
            firstSample = nil
        case (2, _):
            epsilon = elementwise(outputs[1], outputs[0]) { (3 * $0 - $1) / 2 }
        case (3, _):
            let (e1, e2, e3) = (outputs[2].data, outputs[1].data, outputs[0].data)
            epsilon = Tensor(shape: modelOutput.shape, data: (0..<e1.count).map { i in
                (23 * e1[i] - 16 * e2[i] + 5 * e3[i]) / 12
            })
        default:
            let (e1, e2, e3, e4) = (outputs[3].data, outputs[2].data, outputs[1].data, outputs[0].data)
            let oneOver24 = Float(1.0 / 24.0)
            epsilon = Tensor(shape: modelOutput.shape, data: (0..<e1.count).map { i in
                oneOver24 * (55 * e1[i] - 59 * e2[i] + 37 * e3[i] - 9 * e4[i])
            })
        }
        counter += 1
        return previousSample(current, timestep: timestep, previous: previous, modelOutput: epsilon)
    }

    /// `_get_prev_sample`: the transfer of eq. 9 in Float32, in diffusers' operation order.
    private func previousSample(_ sample: Tensor, timestep: Int, previous: Int, modelOutput: Tensor) -> Tensor {
        let alphaProd = schedule.alphasCumprod[timestep]
        let alphaProdPrev = previous >= 0 ? schedule.alphasCumprod[previous] : finalAlphaCumprod
        let betaProd = 1 - alphaProd
        let betaProdPrev = 1 - alphaProdPrev
        var epsilon = modelOutput
        if prediction == .vPrediction {
            let a = alphaProd.squareRoot(), b = betaProd.squareRoot()
            epsilon = elementwise(modelOutput, sample) { a * $0 + b * $1 }
        }
        let sampleCoeff = (alphaProdPrev / alphaProd).squareRoot()
        let denominator = alphaProd * betaProdPrev.squareRoot() + (alphaProd * betaProd * alphaProdPrev).squareRoot()
        let difference = alphaProdPrev - alphaProd
        return elementwise(sample, epsilon) { sampleCoeff * $0 - difference * $1 / denominator }
    }
}
