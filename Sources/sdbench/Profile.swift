import Diffusion

// The per-op profile of a timed run (`bestProfiled`), printed as a table and as the benchmark's JSON.

/// Prints `profile` as a table: per op kind its calls, seconds, share of `total` and GFLOP/s on the
/// engine's dense counts against `roof`; `reference` is the reference's dense count of the run.
func printProfile(_ what: String, _ profile: [Profiler.Kind: Profiler.Entry], total: Double, roof: Double, reference: Double) {
    say("  profile of the \(what) (wall time per op kind; GFLOP/s on the engine's own dense counts):")
    say("    op kind             calls   seconds  share   GFLOP   GFLOP/s  of roof")
    var accounted = 0.0, counted = 0.0
    for kind in Profiler.Kind.allCases {
        guard let e = profile[kind] else { continue }
        accounted += e.seconds
        counted += e.flops
        let rate = e.flops > 0 ? String(format: "%8.1f  %6.3f", e.flops / e.seconds / 1e9, e.flops / e.seconds / 1e9 / roof) : "       -       -"
        say("    " + pad(kind.rawValue) + String(format: " %6d  %8.3f  %5.1f%%  %6.1f  ", e.calls, e.seconds,
                                                100 * e.seconds / total, e.flops / 1e9) + rate)
    }
    say("    " + pad("other") + String(format: "         %8.3f  %5.1f%%", total - accounted, 100 * (total - accounted) / total))
    say(String(format: "    dense FLOPs counted by the hooks: %.1f GFLOP (reference count %.1f)", counted / 1e9, reference / 1e9))
}

/// A column of the profile table.
private func pad(_ s: String) -> String { s.padding(toLength: 18, withPad: " ", startingAt: 0) }

/// The profile as a JSON object: per op kind its seconds, share and GFLOP/s, then the rest as `other`.
func profileJSON(_ profile: [Profiler.Kind: Profiler.Entry], total: Double) -> JSON {
    var fields: [(String, JSON)] = []
    var accounted = 0.0
    for kind in Profiler.Kind.allCases {
        guard let e = profile[kind] else { continue }
        accounted += e.seconds
        var entry: [(String, JSON)] = [("seconds", .number(e.seconds, decimals: 3)), ("share", .number(e.seconds / total, decimals: 3))]
        if e.flops > 0 { entry.append(("gflops", .number(e.flops / e.seconds / 1e9, decimals: 1))) }
        fields.append((kind.rawValue, .object(entry)))
    }
    fields.append(("other", .object([("seconds", .number(total - accounted, decimals: 3)),
                                      ("share", .number((total - accounted) / total, decimals: 3))])))
    return .object(fields)
}
