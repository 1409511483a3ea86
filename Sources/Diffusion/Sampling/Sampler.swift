import Foundation

/// The samplers sdrepl offers, by their command-line names. Each equals the diffusers class
/// `.from_config(<model's scheduler_config.json>)` with that class's defaults for the keys the
/// file does not set.
public enum Sampler: String, CaseIterable, Sendable, CustomStringConvertible {
    /// `PNDMScheduler` with `skip_prk_steps` (PLMS): the default, as SD1.5 ships.
    case pndm
    /// `DDIMScheduler` with `eta = 0`.
    case ddim
    /// `EulerDiscreteScheduler`.
    case euler
    /// `EulerAncestralDiscreteScheduler`: draws fresh noise at every step.
    case eulerAncestral = "euler-a"
    /// `DPMSolverMultistepScheduler` (DPM-Solver++(2M)).
    case dpmpp2m = "dpmpp-2m"
    /// `DPMSolverMultistepScheduler` with `use_karras_sigmas=True`.
    case dpmpp2mKarras = "dpmpp-2m-karras"
    /// `LCMScheduler`, for latent-consistency models and LCM-LoRA: draws noise between steps.
    case lcm
    /// `TCDScheduler`, for TCD-LoRA and other trajectory-consistency models; `eta` (γ) sets how much
    /// fresh noise each step draws.
    case tcd

    /// The sampler a model uses when none is asked for.
    public static let `default` = Sampler.pndm

    /// The one table of sampler names: A1111's infotext name for each sampler, then the other
    /// spellings accepted (diffusers' class names and common variants), lower-cased.
    ///
    /// diffusers' `PNDMScheduler` with SD1.5's `skip_prk_steps: true` runs only the linear multistep
    /// part of PNDM, the method A1111 (after the original CompVis code) calls `PLMS`. Karras variants
    /// are written in A1111's combined form (`DPM++ 2M Karras`), which A1111 1.9+ still reads and
    /// older prompt readers require; 1.9+'s split form (`DPM++ 2M` + `Schedule type: Karras`) is read too.
    static let names: [(sampler: Sampler, a1111: String, aliases: [String])] = [
        (.pndm, "PLMS", ["pndmscheduler"]),
        (.ddim, "DDIM", ["ddimscheduler"]),
        (.euler, "Euler", ["eulerdiscretescheduler"]),
        (.eulerAncestral, "Euler a", ["euler_a", "eulera", "euler ancestral", "eulerancestraldiscretescheduler"]),
        (.dpmpp2m, "DPM++ 2M", ["dpmpp_2m", "dpmsolvermultistepscheduler"]),
        (.dpmpp2mKarras, "DPM++ 2M Karras", ["dpmpp_2m_karras"]),
        (.lcm, "LCM", ["lcmscheduler"]),
        (.tcd, "TCD", ["tcdscheduler"]),
    ]

    /// Whether `timestep_spacing` changes this sampler's timesteps. LCM and TCD skip through their
    /// original 50 steps, and Karras sigmas set DPM++ 2M Karras's, whatever the spacing (as in diffusers).
    public var takesTimestepSpacing: Bool { ![.lcm, .tcd, .dpmpp2mKarras].contains(self) }

    /// A1111's name for the sampler in an infotext (`Euler a`, `DPM++ 2M Karras`, `PLMS`).
    public var a1111Name: String {
        Self.names.first { $0.sampler == self }?.a1111 ?? rawValue
    }

    /// Every name a user may type: the canonical names, then A1111's.
    public static var allNames: [String] { allCases.map(\.rawValue) + names.map(\.a1111) }

    /// Looks a sampler up by name, ignoring case and surrounding spaces: the names of `allCases`
    /// (`pndm`, `ddim`, `euler`, `euler-a`, `dpmpp-2m`, `dpmpp-2m-karras`, `lcm`), A1111's names
    /// ("Euler a", "DPM++ 2M Karras", "PLMS", …) and the other spellings of `names`.
    /// - Throws: `SchedulerError.unknownSampler` listing the valid names.
    public init(name: String) throws {
        let key = name.trimmingCharacters(in: .whitespaces).lowercased()
        let found = Sampler(rawValue: key)
            ?? Self.names.first { $0.a1111.lowercased() == key || $0.aliases.contains(key) }?.sampler
        guard let found else { throw SchedulerError.unknownSampler(name) }
        self = found
    }

    /// The sampler of an A1111 infotext: `Sampler` and, from A1111 1.9 on, a separate `Schedule type`
    /// (`DPM++ 2M` + `Karras` is `dpmpp-2m-karras`; `Automatic` adds nothing). Nil for samplers
    /// sdrepl does not have.
    public init?(a1111Name name: String, scheduleType: String? = nil) {
        var full = name.trimmingCharacters(in: .whitespaces)
        if let schedule = scheduleType?.trimmingCharacters(in: .whitespaces), !schedule.isEmpty,
           schedule.lowercased() != "automatic", !full.lowercased().hasSuffix(" " + schedule.lowercased()) {
            full += " " + schedule
        }
        guard let sampler = try? Sampler(name: full) else { return nil }
        self = sampler
    }

    public var description: String { rawValue }

    /// The scheduler for `steps` inference steps, from a model's scheduler config.
    /// - Parameters:
    ///   - config: the model's `scheduler/scheduler_config.json` (`SchedulerConfig.sd15` when the
    ///     model has none).
    ///   - steps: the number of inference steps, 1 ... `num_train_timesteps` (LCM: 1 ...
    ///     `original_inference_steps`).
    /// - Throws: `SchedulerError` for a step count out of range or a config option this port does
    ///   not implement (it never silently samples differently from diffusers).
    ///   - eta: TCD's γ (the other samplers ignore it); 0 as diffusers' pipelines pass by default.
    public func makeScheduler(config: SchedulerConfig = .sd15, steps: Int, eta: Double = 0) throws -> any Scheduler {
        switch self {
        case .pndm: return try PNDMScheduler(config: config, steps: steps)
        case .ddim: return try DDIMScheduler(config: config, steps: steps)
        case .euler: return try EulerDiscreteScheduler(config: config, steps: steps)
        case .eulerAncestral: return try EulerAncestralDiscreteScheduler(config: config, steps: steps)
        case .dpmpp2m: return try DPMSolverMultistepScheduler(config: config, steps: steps)
        case .dpmpp2mKarras: return try DPMSolverMultistepScheduler(config: config, steps: steps, useKarrasSigmas: true)
        case .lcm: return try LCMScheduler(config: config, steps: steps)
        case .tcd: return try TCDScheduler(config: config, steps: steps, eta: eta)
        }
    }
}
