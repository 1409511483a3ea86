import Foundation

/// A diffusion sampler: the timesteps at which the model is evaluated and the update that turns
/// one model output into the next latents.
///
/// The shape follows Apple's ml-stable-diffusion `Scheduler` and diffusers' `SchedulerMixin`. A
/// generation runs
/// ```
/// var scheduler = try Sampler.pndm.makeScheduler(config: modelConfig, steps: 30)
/// var generator = TorchGenerator(seed: seed)
/// var latents = generator.randn([1, 4, h / 8, w / 8])     // then each element × initNoiseSigma
/// for i in scheduler.timesteps.indices {
///     let input = scheduler.scaleModelInput(latents, stepIndex: i)
///     let output = unet(input, timestep: scheduler.timesteps[i])      // + guidance
///     latents = scheduler.step(modelOutput: output, stepIndex: i, sample: latents, generator: &generator)
/// }
/// ```
/// exactly as diffusers' `StableDiffusionPipeline` loops over `scheduler.timesteps`, so the same
/// generator feeds the initial latents and any noise a sampler draws, in the same order.
public protocol Scheduler {
    /// The model timesteps, one per model evaluation, in order. Usually `steps` of them; PNDM
    /// (PLMS) has `steps + 1`, its second timestep repeating the first step's target. Whole
    /// numbers except for the Euler samplers' `linspace` spacing (e.g. 978.6122).
    var timesteps: [Float] { get }

    /// The standard deviation of the initial noise: the latents are `randn * initNoiseSigma`.
    var initNoiseSigma: Float { get }

    /// The model input for step `stepIndex` (Euler samplers divide by `sqrt(σ² + 1)`; the others
    /// return `sample` unchanged).
    func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor

    /// One update: the latents after step `stepIndex`, from the model's (guided) output at
    /// `timesteps[stepIndex]` and the latents before it.
    /// - Parameters:
    ///   - modelOutput: the model output (ε, v or x₀ per the config's `prediction_type`),
    ///     shaped like `sample`.
    ///   - stepIndex: the position in `timesteps`; steps must be taken in order, each once.
    ///   - sample: the current latents.
    ///   - generator: the generator that made the initial latents. Only the ancestral samplers
    ///     (`euler-a`, `lcm`) draw from it, with the shape and at the steps diffusers draws.
    mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator) -> Tensor

    /// Noises clean latents to the level of `timesteps[stepIndex]`, as diffusers' `add_noise` does for
    /// image-to-image: `sqrt(ᾱ_t)·x₀ + sqrt(1 − ᾱ_t)·ε` for the DDPM-family samplers, `x₀ + σ·ε` for
    /// the σ-parameterised ones.
    /// - Parameters:
    ///   - original: the encoded image's latents (already times the VAE's scaling factor).
    ///   - noise: standard normal noise shaped like `original`.
    ///   - stepIndex: the position in `timesteps` the sampling starts from.
    func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) -> Tensor
}

extension Scheduler {
    /// Where sampling starts for an image-to-image `strength` (0…1), as diffusers' img2img
    /// `get_timesteps`: `init = min(int(steps · strength), steps)`, `start = max(steps − init, 0)`.
    /// Every sampler here has diffusers' `order` 1, so the index is the step number itself.
    /// - Parameters:
    ///   - strength: 1 starts from pure noise (every step runs), 0 runs none.
    ///   - steps: the inference steps the scheduler was made for (not `timesteps.count`, which is
    ///     one more for PNDM).
    public func firstStepIndex(strength: Double, steps: Int) -> Int {
        let initSteps = min(Int(Double(steps) * strength), steps)
        return max(steps - initSteps, 0)
    }

    /// The timesteps an image-to-image run at `strength` evaluates: `timesteps[firstStepIndex...]`.
    /// The model of Apple's ml-stable-diffusion `calculateTimesteps(strength:)`.
    public func timesteps(strength: Double, steps: Int) -> ArraySlice<Float> {
        timesteps[min(firstStepIndex(strength: strength, steps: steps), timesteps.count)...]
    }
}

/// What went wrong choosing or setting up a sampler.
public enum SchedulerError: Error, Equatable, CustomStringConvertible {
    /// No sampler has this name.
    case unknownSampler(String)
    /// The step count is outside what the sampler accepts.
    case invalidSteps(Int, sampler: String, range: ClosedRange<Int>)
    /// A config option has a value this port does not implement.
    case unsupportedOption(key: String, value: String, supported: [String])
    /// The config is inconsistent.
    case invalidConfig(String)

    public var description: String {
        switch self {
        case .unknownSampler(let name):
            let names = Sampler.allCases.map(\.rawValue).joined(separator: ", ")
            return "unknown sampler \"\(name)\"; valid samplers: \(names) "
                + "(A1111 names such as \"Euler a\" or \"DPM++ 2M Karras\" work too)"
        case .invalidSteps(let steps, let sampler, let range):
            return "\(sampler) cannot take \(steps) steps; use \(range.lowerBound)...\(range.upperBound)"
        case .unsupportedOption(let key, let value, let supported):
            return "scheduler option \(key) = \(value) is not supported; supported: "
                + supported.joined(separator: ", ")
        case .invalidConfig(let message):
            return "invalid scheduler config: \(message)"
        }
    }
}

// MARK: - Config

/// A model's `scheduler/scheduler_config.json`, with diffusers' key names.
///
/// `nil` means "not in the file": as with diffusers' `from_config`, each scheduler class then uses
/// its own default (for example `set_alpha_to_one` is false for PNDM but true for DDIM and LCM,
/// and `timestep_spacing` is "leading" for PNDM, DDIM and LCM but "linspace" for Euler and
/// DPM-Solver). Keys a class does not know are ignored. `SchedulerConfig()` is SD1.5's file.
public struct SchedulerConfig: Codable, Sendable, Equatable {
    public var numTrainTimesteps: Int?
    public var betaStart: Double?
    public var betaEnd: Double?
    public var betaSchedule: String?
    public var trainedBetas: [Double]?
    public var setAlphaToOne: Bool?
    public var skipPrkSteps: Bool?
    public var stepsOffset: Int?
    public var clipSample: Bool?
    public var clipSampleRange: Double?
    public var predictionType: String?
    public var timestepSpacing: String?
    public var thresholding: Bool?
    public var rescaleBetasZeroSnr: Bool?
    // Euler and DPM-Solver
    public var useKarrasSigmas: Bool?
    public var useExponentialSigmas: Bool?
    public var useBetaSigmas: Bool?
    public var useLuLambdas: Bool?
    public var sigmaMin: Double?
    public var sigmaMax: Double?
    public var finalSigmasType: String?
    public var interpolationType: String?
    public var timestepType: String?
    // DPM-Solver
    public var solverOrder: Int?
    public var algorithmType: String?
    public var solverType: String?
    public var lowerOrderFinal: Bool?
    public var eulerAtFinal: Bool?
    public var lambdaMinClipped: Double?
    public var varianceType: String?
    // LCM
    public var originalInferenceSteps: Int?
    public var timestepScaling: Double?

    /// SD1.5's `scheduler_config.json` (runwayml/stable-diffusion-v1-5): PNDMScheduler, 1000
    /// training steps, scaled-linear betas from 0.00085 to 0.012, `set_alpha_to_one` false,
    /// `skip_prk_steps` true, `steps_offset` 1, `clip_sample` false.
    public init(
        numTrainTimesteps: Int? = 1000,
        betaStart: Double? = 0.00085, betaEnd: Double? = 0.012, betaSchedule: String? = "scaled_linear",
        trainedBetas: [Double]? = nil, setAlphaToOne: Bool? = false, skipPrkSteps: Bool? = true,
        stepsOffset: Int? = 1, clipSample: Bool? = false
    ) {
        self.numTrainTimesteps = numTrainTimesteps
        self.betaStart = betaStart
        self.betaEnd = betaEnd
        self.betaSchedule = betaSchedule
        self.trainedBetas = trainedBetas
        self.setAlphaToOne = setAlphaToOne
        self.skipPrkSteps = skipPrkSteps
        self.stepsOffset = stepsOffset
        self.clipSample = clipSample
    }

    /// SD1.5's scheduler config.
    public static let sd15 = SchedulerConfig()

    /// Reads a `scheduler_config.json`.
    /// - Throws: `DecodingError` for invalid JSON or a key of the wrong type.
    public init(contentsOf url: URL) throws {
        self = try SchedulerConfig.decoder.decode(SchedulerConfig.self, from: Data(contentsOf: url))
    }

    /// A JSON decoder for diffusers' snake-case keys that also accepts `Infinity`, `-Infinity` and
    /// `NaN`, which Python's `json` writes for diffusers' float defaults (`"lambda_min_clipped": -Infinity`).
    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.allowsJSON5 = true
        return decoder
    }

    /// The beta-schedule keys with the class defaults of diffusers' `__init__`.
    func schedule(betaStart: Double = 0.0001, betaEnd: Double = 0.02, betaSchedule: String = "linear") -> ResolvedScheduleConfig {
        ResolvedScheduleConfig(
            numTrainTimesteps: numTrainTimesteps ?? 1000,
            betaStart: self.betaStart ?? betaStart, betaEnd: self.betaEnd ?? betaEnd,
            betaSchedule: self.betaSchedule ?? betaSchedule, trainedBetas: trainedBetas)
    }

    /// Throws for values no scheduler can work with (diffusers would fail or divide by zero on
    /// them too), so that a broken `scheduler_config.json` is refused when the model loads rather
    /// than at every `gen`.
    public func validate() throws {
        func invalid(_ key: String, _ value: Any, _ rule: String) -> SchedulerError {
            .invalidConfig("scheduler_config.json sets \(key) = \(value); \(rule)")
        }
        if let n = numTrainTimesteps, !(2...100_000).contains(n) {
            throw invalid("num_train_timesteps", n, "it must be from 2 to 100000 (SD1.5 uses 1000)")
        }
        for (key, value) in [("beta_start", betaStart), ("beta_end", betaEnd)] {
            if let value, !(value > 0 && value < 1) { throw invalid(key, value, "betas must be between 0 and 1 (SD1.5 uses 0.00085 and 0.012)") }
        }
        if let betas = trainedBetas {
            if betas.count < 2 { throw invalid("trained_betas", "\(betas.count) values", "it needs one beta per training step") }
            if let bad = betas.first(where: { !($0 > 0 && $0 < 1) }) { throw invalid("trained_betas", "[… \(bad) …]", "betas must be between 0 and 1") }
        }
        if let offset = stepsOffset, !(0..<(numTrainTimesteps ?? 1000)).contains(offset) {
            throw invalid("steps_offset", offset, "it must be from 0 to num_train_timesteps − 1 (SD1.5 uses 1)")
        }
        if let steps = originalInferenceSteps, !(1...(numTrainTimesteps ?? 1000)).contains(steps) {
            throw invalid("original_inference_steps", steps, "it must be from 1 to num_train_timesteps (LCM uses 50)")
        }
        if let order = solverOrder, !(1...3).contains(order) { throw invalid("solver_order", order, "it must be 1, 2 or 3") }
        if let value = sigmaMin, !(value >= 0 && value.isFinite) { throw invalid("sigma_min", value, "it must be a number of at least 0") }
        for (key, value) in [("sigma_max", sigmaMax), ("clip_sample_range", clipSampleRange), ("timestep_scaling", timestepScaling)] {
            if let value, !(value > 0 && value.isFinite) { throw invalid(key, value, "it must be a positive number") }
        }
    }

    /// Throws for options no sampler here implements when they are set away from their default.
    func rejectUnsupported() throws {
        if thresholding == true {
            throw SchedulerError.unsupportedOption(key: "thresholding", value: "true", supported: ["false"])
        }
        if rescaleBetasZeroSnr == true {
            throw SchedulerError.unsupportedOption(key: "rescale_betas_zero_snr", value: "true", supported: ["false"])
        }
        if useExponentialSigmas == true || useBetaSigmas == true || useLuLambdas == true {
            throw SchedulerError.unsupportedOption(
                key: "use_exponential_sigmas/use_beta_sigmas/use_lu_lambdas", value: "true", supported: ["false"])
        }
    }
}

/// diffusers' `prediction_type`: what the model predicts.
enum PredictionType: String {
    case epsilon
    case vPrediction = "v_prediction"
    case sample

    init(_ value: String?, supported: [PredictionType]) throws {
        guard let type = PredictionType(rawValue: value ?? "epsilon"), supported.contains(type) else {
            throw SchedulerError.unsupportedOption(
                key: "prediction_type", value: value ?? "", supported: supported.map(\.rawValue))
        }
        self = type
    }
}

/// diffusers' `timestep_spacing`.
/// diffusers' `timestep_spacing`: how the inference timesteps are spread over the training ones.
/// Few-step distilled models (Hyper-SD, PCM, TCD) want `trailing`, which starts at the last training step.
public enum TimestepSpacing: String, CaseIterable, Codable, Sendable {
    case linspace, leading, trailing

    init(_ value: String?, default defaultValue: TimestepSpacing) throws {
        guard let value else { self = defaultValue; return }
        guard let spacing = TimestepSpacing(rawValue: value) else {
            throw SchedulerError.unsupportedOption(
                key: "timestep_spacing", value: value, supported: ["linspace", "leading", "trailing"])
        }
        self = spacing
    }
}

/// Checks `steps` against `range`.
func validateSteps(_ steps: Int, sampler: Sampler, range: ClosedRange<Int>) throws {
    guard range.contains(steps) else {
        throw SchedulerError.invalidSteps(steps, sampler: sampler.rawValue, range: range)
    }
}

// MARK: - Elementwise arithmetic on latents

/// `f` applied to corresponding elements of `a` and `b` (same shape): one Float32 tensor
/// expression of diffusers' step code.
func elementwise(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
    precondition(a.shape == b.shape, "shape \(a.shape) vs \(b.shape)")
    var out = [Float](repeating: 0, count: a.count)
    a.data.withUnsafeBufferPointer { x in
        b.data.withUnsafeBufferPointer { y in
            for i in 0..<x.count { out[i] = f(x[i], y[i]) }
        }
    }
    return Tensor(shape: a.shape, data: out)
}

/// `f` applied to each element of `a`.
func elementwise(_ a: Tensor, _ f: (Float) -> Float) -> Tensor {
    Tensor(shape: a.shape, data: a.data.map(f))
}
