import Foundation

/// Runs a case once to warm up (page in buffers, start OpenBLAS's threads), then times it at
/// least `repeats` times and for at least `minSeconds`, and reports the **best** time: on a shared
/// machine the fastest run is the one least disturbed by other work, which is what a roof is.
struct Timing {
    var repeats: Int
    var minSeconds: Double

    func best(_ body: () -> Void) -> Double {
        body()
        var best = Double.infinity, total = 0.0, runs = 0
        while runs < repeats || total < minSeconds {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
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
