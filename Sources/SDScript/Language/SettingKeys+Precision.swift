import Diffusion
import NN

/// `set precision`: what the UNet's and VAE's matrix products take as inputs.
public enum PrecisionChoice: String, CaseIterable, Sendable {
    /// fp32: diffusers' fp32 pixels (the default).
    case fp32
    /// bf16 inputs, fp32 sums: about twice as fast where the CPU has bf16 instructions.
    case bf16
    /// bf16 for drafts (`set mode draft`) on a CPU with bf16 instructions, fp32 otherwise.
    case auto

    /// The precision a generation uses; `drafting` when it renders a draft.
    func resolved(drafting: Bool) -> MatmulPrecision {
        switch self {
        case .fp32: .fp32
        case .bf16: .bf16
        case .auto: drafting && BF16Support.backend == .oneDNN ? .bf16 : .fp32
        }
    }
}

extension SettingKey {
    static let precision = SettingKey(
        name: "precision", values: "fp32|bf16|auto (bf16: matrix products in bfloat16 where the CPU has it, faster, other pixels; auto: bf16 for drafts)",
        kind: .words, choices: { _ in PrecisionChoice.allCases.map(\.rawValue) }, completesPaths: false,
        apply: { session, value in try session.setPrecision(value) },
        show: { settings in
            guard settings.request.precision == .auto else { return settings.request.precision.rawValue }
            return "auto (" + (BF16Support.backend == .oneDNN ? "bf16 for drafts, fp32 otherwise" : "fp32 here") + ")"
        },
        reset: { $0.request.precision = .fp32 })
}

extension Session {
    /// `set precision VALUE`: bf16 is refused where this machine has none, keeping the precision as it was.
    func setPrecision(_ value: String) throws {
        guard let choice = PrecisionChoice(rawValue: value.lowercased()) else {
            throw ScriptError.badArgument(command: "set precision", argument: value, reason: "expected fp32, bf16 or auto, got",
                                          suggestion: closestWord(to: value.lowercased(), in: PrecisionChoice.allCases.map(\.rawValue)))
        }
        if choice == .bf16, case .failure(let unavailable) = BF16Support.detected {
            throw ScriptError.unavailable(command: "set precision", reason: "bf16 is not available here: \(unavailable); "
                                          + "keeping \(settings.request.precision.rawValue)")
        }
        settings.request.precision = choice
        if choice == .bf16, let comment = ScriptNumerics.bf16Comment { log.line.preamble.append(comment) }
        recordedAutoPrecision = nil
        if choice == .auto, case .failure(let unavailable) = BF16Support.detected {
            io.output("precision: auto is fp32 on this machine (\(unavailable))")
        }
    }

    /// The precision of a generation, `drafting` or not. Under `auto` the transcript records the one
    /// it chose whenever that changes, so a replay renders the same whatever its machine would choose.
    /// A sharded run's `auto` is fp32: its shards run on whatever machines the job runners have, and
    /// every shard must record the same line.
    func settledPrecision(_ choice: PrecisionChoice, drafting: Bool) -> MatmulPrecision {
        let precision = choice == .auto && sharding != nil ? .fp32 : choice.resolved(drafting: drafting)
        if choice == .auto && recordedAutoPrecision != precision {
            if precision == .bf16, let comment = ScriptNumerics.bf16Comment { log.line.preamble.append(comment) }
            log.line.preamble.append("set precision \(precision.rawValue)")
            recordedAutoPrecision = precision
        }
        return precision
    }
}
