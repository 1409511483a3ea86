import Foundation

/// Per-op-kind timing of a model run, for the benchmark's profile (`make bench`): time, dense
/// FLOPs and calls per kind, so the next bottleneck is visible.
///
/// Off by default; then each hook costs one load of `isEnabled` and a branch. The hooks sit in the
/// layers (`Blocks/`), around the tensor op and apart from the weight conversion, which is its own
/// kind. Not thread-safe by design beyond a lock on the totals: models run their layers from one
/// thread, and the ops parallelise inside.
public enum Profiler {
    public enum Kind: String, CaseIterable, Sendable {
        case conv3x3 = "conv3x3"
        case conv1x1 = "conv1x1"
        case linear = "linear"
        case selfAttention = "attention (self)"
        case crossAttention = "attention (cross)"
        case groupNorm = "group norm"
        case layerNorm = "layer norm"
        case activation = "activations"
        case weights = "weight conversion"
    }

    public struct Entry: Sendable {
        public var seconds = 0.0
        public var flops = 0.0
        public var calls = 0
    }

    /// Turns the hooks on. Set it before a run and read `totals` after.
    nonisolated(unsafe) public static var isEnabled = false
    nonisolated(unsafe) private static var entries: [Kind: Entry] = [:]
    private static let lock = NSLock()

    /// The totals since the last `reset()`.
    public static var totals: [Kind: Entry] { lock.lock(); defer { lock.unlock() }; return entries }

    public static func reset() { lock.lock(); entries = [:]; lock.unlock() }

    /// Runs `body`, and when profiling is on adds its wall time and `flops` to `kind`.
    @inline(__always)
    public static func measure<R>(_ kind: Kind, flops: @autoclosure () -> Double = 0, _ body: () throws -> R) rethrows -> R {
        guard isEnabled else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try body()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let f = flops()
        lock.lock()
        entries[kind, default: Entry()].seconds += seconds
        entries[kind, default: Entry()].flops += f
        entries[kind, default: Entry()].calls += 1
        lock.unlock()
        return result
    }
}
