import ArgumentParser
import Foundation

/// Runs a case once to warm up (page in buffers, start OpenBLAS's threads), then times it at
/// least `repeats` times and for at least `minSeconds`, and reports the **best** time: on a shared
/// machine the fastest run is the one least disturbed by other work, which is what a roof is.
///
/// With `clock: .cpu` it reports the process's CPU time instead (all threads): on a machine shared
/// with other work, wall time mostly measures the neighbours, while CPU time still measures the
/// work done. Use it with `--threads 1`, since OpenBLAS's idle threads spin and would count.
struct Timing {
    enum Clock: String, ExpressibleByArgument, CaseIterable { case wall, cpu }

    var repeats: Int
    var minSeconds: Double
    var clock: Clock = .wall

    func now() -> Double {
        switch clock {
        case .wall:
            return Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        case .cpu:
            var t = timespec()
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
    }

    func best(_ body: () -> Void) -> Double {
        body()
        var best = Double.infinity, total = 0.0, runs = 0
        while runs < repeats || total < minSeconds {
            let start = now()
            body()
            let seconds = now() - start
            best = min(best, seconds)
            total += seconds
            runs += 1
        }
        return best
    }
}

/// A minimal ordered JSON writer: the benchmark's keys come out in the order written, so the
/// line reads the same way every time.
enum JSON {
    case number(Double, decimals: Int)
    case int(Int)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    var text: String {
        switch self {
        case let .number(v, decimals):
            return v.isFinite ? String(format: "%.\(decimals)f", v) : "null"
        case let .int(v):
            return String(v)
        case let .string(s):
            let escaped = s.unicodeScalars.map { c -> String in
                switch c {
                case "\"": return "\\\""
                case "\\": return "\\\\"
                case _ where c.value < 0x20: return String(format: "\\u%04x", c.value)
                default: return String(c)
                }
            }.joined()
            return "\"\(escaped)\""
        case let .array(items):
            return "[" + items.map(\.text).joined(separator: ", ") + "]"
        case let .object(fields):
            return "{" + fields.map { "\(JSON.string($0.0).text): \($0.1.text)" }.joined(separator: ", ") + "}"
        }
    }
}
