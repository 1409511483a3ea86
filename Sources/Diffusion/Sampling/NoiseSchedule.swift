import Foundation

/// The training noise schedule shared by every sampler: `betas`, `alphas_cumprod` and the
/// Karras-style noise levels `sigmas = sqrt((1 - ᾱ) / ᾱ)`, computed with the same roundings as
/// diffusers (torch Float32 tensors for the table, NumPy Float64 for inference-time interpolation).
struct NoiseSchedule: Sendable {
    /// β_t for t = 0 ..< trainSteps, Float32 as `torch.linspace(..., dtype=torch.float32)`.
    let betas: [Float]
    /// ᾱ_t = ∏_{s≤t} (1 - β_s). torch's CPU `cumprod` multiplies in Double and rounds each
    /// partial product to Float32; a Float32 running product drifts away from it by many ulps.
    let alphasCumprod: [Float]

    init(config: ResolvedScheduleConfig) throws {
        let n = config.numTrainTimesteps
        var betas: [Float]
        if let trained = config.trainedBetas {
            guard trained.count == n else {
                throw SchedulerError.invalidConfig(
                    "trained_betas has \(trained.count) values but num_train_timesteps is \(n)")
            }
            betas = trained.map { Float($0) }
        } else {
            switch config.betaSchedule {
            case "linear":
                betas = torchLinspace(config.betaStart, config.betaEnd, n)
            case "scaled_linear":
                betas = torchLinspace(config.betaStart.squareRoot(), config.betaEnd.squareRoot(), n).map { $0 * $0 }
            case "squaredcos_cap_v2":
                betas = cosineBetas(n)
            default:
                throw SchedulerError.unsupportedOption(
                    key: "beta_schedule", value: config.betaSchedule,
                    supported: ["linear", "scaled_linear", "squaredcos_cap_v2"])
            }
        }
        self.betas = betas
        var product = 1.0
        alphasCumprod = betas.map { beta in
            product *= Double(1 - beta)
            return Float(product)
        }
    }

    /// `((1 - ᾱ) / ᾱ) ** 0.5` as a Float32 tensor expression, for t = 0 ..< trainSteps (ascending).
    ///
    /// The square root here is IEEE's (correctly rounded). torch's vectorised Float32 `sqrt` on an
    /// x86 CPU is not: about one value in five comes out 1 ulp away, so σ may differ from
    /// diffusers' in the last bit (relative 6e-8), far below anything visible.
    var sigmas: [Float] {
        alphasCumprod.map { ((1 - $0) / $0).squareRoot() }
    }
}

extension NoiseSchedule {
    /// diffusers' `add_noise` of the DDPM-family schedulers (DDIM, PNDM, LCM):
    /// `ᾱ_t ** 0.5 · x₀ + (1 − ᾱ_t) ** 0.5 · ε`, each product and the sum rounded to Float32 as torch does.
    func addNoise(to original: Tensor, noise: Tensor, timestep: Int) -> Tensor {
        let alphaProd = alphasCumprod[timestep]
        let signal = alphaProd.squareRoot(), spread = (1 - alphaProd).squareRoot()
        return elementwise(original, noise) { x, e in
            let a = signal * x, b = spread * e
            return a + b
        }
    }
}

/// The beta-schedule keys of a scheduler config after diffusers' defaulting for one class.
struct ResolvedScheduleConfig {
    var numTrainTimesteps: Int
    var betaStart: Double
    var betaEnd: Double
    var betaSchedule: String
    var trainedBetas: [Double]?
}

// MARK: - torch and NumPy numerics, reproduced

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU: the step is computed in
/// Float32, the first half counts up from `start` and the second half down from `end`, each value
/// as one fused multiply-add (what torch's vectorised kernel does; checked against torch 2.15).
func torchLinspace(_ start: Double, _ end: Double, _ steps: Int) -> [Float] {
    let s = Float(start), e = Float(end)
    guard steps > 1 else { return steps == 1 ? [s] : [] }
    let step = (e - s) / Float(steps - 1)
    let halfway = steps / 2
    return (0..<steps).map { i in
        i < halfway ? s.addingProduct(step, Float(i)) : e.addingProduct(-step, Float(steps - 1 - i))
    }
}

/// `betas_for_alpha_bar(n)` with the cosine ᾱ of Nichol & Dhariwal (2021), eq. 17, in Double,
/// β capped at 0.999, stored as Float32.
private func cosineBetas(_ n: Int) -> [Float] {
    func alphaBar(_ t: Double) -> Double { pow(cos((t + 0.008) / 1.008 * Double.pi / 2), 2) }
    return (0..<n).map { i in
        let t1 = Double(i) / Double(n), t2 = Double(i + 1) / Double(n)
        return Float(min(1 - alphaBar(t2) / alphaBar(t1), 0.999))
    }
}

/// `np.linspace(start, stop, num)` (Float64): `i * step + start`, the last value exactly `stop`.
func numpyLinspace(_ start: Double, _ stop: Double, _ num: Int, endpoint: Bool = true) -> [Double] {
    guard num > 0 else { return [] }
    let div = endpoint ? num - 1 : num
    guard div > 0 else { return [start] }
    let step = (stop - start) / Double(div)
    var values = (0..<num).map { Double($0) * step + start }
    if endpoint && num > 1 { values[num - 1] = stop }
    return values
}

/// `np.arange(start, stop, step)` for Floats: NumPy fills `start + i * delta` where `delta` is
/// `(start + step) - start`, not `step` itself.
func numpyArange(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
    let count = max(0, Int(((stop - start) / step).rounded(.up)))
    let delta = (start + step) - start
    return (0..<count).map { start + Double($0) * delta }
}

/// `np.interp(x, arange(len(fp)), fp)` in Float64: `slope * (x - x_j) + fp_j` on the segment
/// holding `x`, clamped to the ends.
func numpyInterp(_ x: Double, _ fp: [Float]) -> Double {
    let last = fp.count - 1
    if x >= Double(last) { return Double(fp[last]) }
    if x <= 0 { return Double(fp[0]) }
    let j = Int(x.rounded(.down))
    let slope = (Double(fp[j + 1]) - Double(fp[j])) / 1.0
    return slope * (x - Double(j)) + Double(fp[j])
}

/// Karras et al. (2022), eq. 5: `σ_i = (σ_max^(1/ρ) + i/(n-1) · (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ`,
/// ρ = 7, in Float64 as diffusers' `_convert_to_karras`.
func karrasSigmas(sigmaMin: Double, sigmaMax: Double, count: Int) -> [Double] {
    let rho = 7.0
    let minInvRho = pow(sigmaMin, 1 / rho), maxInvRho = pow(sigmaMax, 1 / rho)
    return numpyLinspace(0, 1, count).map { ramp in pow(maxInvRho + ramp * (minInvRho - maxInvRho), rho) }
}

/// diffusers' `_sigma_to_t`: the fractional training timestep whose log-sigma brackets
/// `log(sigma)`, linearly interpolated in log-sigma. `logSigmas` are Float32 (NumPy's log of a
/// Float32 array); the arithmetic mixes them into Float64 as NumPy does.
func sigmaToT(_ sigma: Double, logSigmas: [Float]) -> Double {
    let logSigma = log(max(sigma, 1e-10))
    // The last index whose log-sigma is <= log(sigma), capped so that a segment follows it.
    var lowIndex = 0
    for (i, value) in logSigmas.enumerated() where logSigma - Double(value) >= 0 { lowIndex = i }
    lowIndex = min(lowIndex, logSigmas.count - 2)
    let low = logSigmas[lowIndex], high = logSigmas[lowIndex + 1]
    var w = (Double(low) - logSigma) / Double(low - high)
    w = min(max(w, 0), 1)
    return (1 - w) * Double(lowIndex) + w * Double(lowIndex + 1)
}

/// The integer timesteps of DDIM and PNDM for `steps` inference steps, in ascending order
/// (`np.round` rounds half to even):
/// - `linspace`: `round(linspace(0, T - 1, steps))`;
/// - `leading`: `arange(steps) * (T // steps) + steps_offset`;
/// - `trailing`: `round(arange(T, 0, -T / steps)) - 1`.
/// diffusers' integer timesteps for `spacing`, checked to index the noise schedule.
///
/// With `leading` spacing and `steps_offset` 1 (SD1.5's config), 1000 steps would ask for timestep
/// 1000 of a 1000-entry schedule; diffusers fails there with an IndexError. We refuse the step count
/// instead, naming the largest one that works.
/// - Throws: `SchedulerError.invalidSteps` when a timestep falls outside `0..<trainSteps`.
func discreteTimesteps(_ spacing: TimestepSpacing, steps: Int, trainSteps: Int, stepsOffset: Int, sampler: Sampler) throws -> [Int] {
    func timesteps(_ steps: Int) -> [Int] {
        switch spacing {
        case .linspace:
            return numpyLinspace(0, Double(trainSteps - 1), steps).map { Int($0.rounded(.toNearestOrEven)) }
        case .leading:
            let ratio = trainSteps / steps
            return (0..<steps).map { $0 * ratio + stepsOffset }
        case .trailing:
            let ratio = Double(trainSteps) / Double(steps)
            return numpyArange(Double(trainSteps), 0, -ratio).map { Int($0.rounded(.toNearestOrEven)) - 1 }.reversed()
        }
    }
    func valid(_ ts: [Int]) -> Bool { ts.allSatisfy { (0..<trainSteps).contains($0) } }
    let result = timesteps(steps)
    guard valid(result) else {
        let largest = (1..<steps).reversed().first { valid(timesteps($0)) } ?? 1
        throw SchedulerError.invalidSteps(steps, sampler: sampler.rawValue, range: 1...largest)
    }
    return result
}
