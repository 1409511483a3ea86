import Foundation

/// Splits element-wise and row-wise work over the cores, for the work BLAS does not do
/// (norms, activations, softmax, im2col, transposes).
///
/// The partition is fixed: `0..<count` is cut into `parts` contiguous ranges that depend only on
/// `count` and the worker count, and every reduction in the engine happens inside one item, never
/// across ranges. So results are bit-identical from run to run whatever the scheduling.
enum Parallel {
    /// The number of workers: the active cores.
    static let workers: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Runs `body` over contiguous sub-ranges of `0..<count` concurrently.
    ///
    /// - Parameters:
    ///   - count: the number of items.
    ///   - grain: the fewest items worth a worker of its own; below `2 * grain` items it all runs on
    ///     the calling thread, so small tensors pay no dispatch cost.
    ///   - body: called once per range; ranges are disjoint and cover `0..<count`.
    ///   - concurrently: false runs it all on the calling thread (for code already inside a worker).
    @inline(__always)
    static func forEach(_ count: Int, grain: Int = 1, concurrently: Bool = true, _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        let parts = concurrently ? min(workers, max(1, count / max(1, grain))) : 1
        if parts == 1 { body(0..<count); return }
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: parts) { p in
                body(range(p, of: parts, count: count))
            }
        }
    }

    /// Runs `body(worker, items)` with a fixed, contiguous share of `0..<count` for each worker;
    /// for work that needs one scratch buffer per worker (attention's score block, conv's im2col band).
    /// `concurrently: false` runs it all as worker 0 on the calling thread.
    static func forEachWorker(_ count: Int, concurrently: Bool = true, _ body: (_ worker: Int, _ items: Range<Int>) -> Void) {
        if count <= 0 { return }
        let parts = concurrently ? min(workers, count) : 1
        if parts == 1 { body(0, 0..<count); return }
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: parts) { p in
                body(p, range(p, of: parts, count: count))
            }
        }
    }

    @inline(__always)
    static func range(_ p: Int, of parts: Int, count: Int) -> Range<Int> {
        (p * count / parts)..<((p + 1) * count / parts)
    }
}

/// A pointer that may cross into `concurrentPerform`'s workers. Each worker writes a disjoint
/// range, which is what makes sharing it sound.
struct SharedPointer<T>: @unchecked Sendable {
    let base: UnsafeMutablePointer<T>
    init(_ base: UnsafeMutablePointer<T>) { self.base = base }
}
