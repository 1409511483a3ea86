import Foundation

/// Lets the longest single ops stop early when the work they belong to is cancelled.
///
/// A model checks for cancellation between its blocks, but at large sizes one op inside a block can
/// run for minutes (self-attention over the 65,536 tokens of a 2048×2048 picture). Such ops poll
/// `isRequested` between their tasks and return at once when it holds, leaving their output
/// unfinished. So whoever installs a poll with `polling` must treat everything computed inside it
/// as garbage once the poll has held, and throw instead of returning it.
public enum Interruption {
    nonisolated(unsafe) private static var poll: (() -> Bool)?
    private static let lock = NSLock()

    /// Runs `body` with `condition` as the poll the long ops consult (the previous poll is restored
    /// afterwards). `condition` is called from the ops' worker threads.
    public static func polling<T>(_ condition: @escaping @Sendable () -> Bool, _ body: () throws -> T) rethrows -> T {
        lock.lock()
        let previous = poll
        poll = condition
        lock.unlock()
        defer { lock.lock(); poll = previous; lock.unlock() }
        return try body()
    }

    /// Whether the running op should stop now: the installed poll holds. False when none is installed.
    public static var isRequested: Bool {
        lock.lock()
        let condition = poll
        lock.unlock()
        return condition?() ?? false
    }
}
