import Foundation

/// Progress after one sampling step.
public struct GenerationProgress: Sendable {
    /// Index of the image in the batch (0-based) and the batch size.
    public let image: Int
    public let images: Int
    /// Steps done for this image (1…total).
    public let step: Int
    public let total: Int
    /// Seconds since this image started.
    public let elapsed: Double
    /// Estimated seconds left for this image.
    public var eta: Double { step > 0 ? elapsed / Double(step) * Double(total - step) : 0 }
    /// A small preview of the current latents (see `LatentPreview`), when asked for at this step.
    public let preview: PixelImage?
    /// Whether `preview` was decoded (TAESD) rather than projected: the engine already spaced those
    /// out, so each is worth drawing.
    public var previewIsDecoded = false

    public init(image: Int, images: Int, step: Int, total: Int, elapsed: Double, preview: PixelImage? = nil) {
        self.image = image
        self.images = images
        self.step = step
        self.total = total
        self.elapsed = elapsed
        self.preview = preview
    }
}

/// A cooperative cancellation flag, safe to set from a signal-watching thread.
///
/// The pipeline checks it between the UNet's blocks and the decoders' levels, so a cancel returns
/// within one block (seconds, at the largest sizes) and leaves the loaded model ready for the next
/// request. A watched condition (Ctrl-C's flag) is polled at each check, so no step has to end first.
public final class CancellationToken: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false
    private var watched: (() -> Bool)?

    public init() {}

    public func cancel() { lock.lock(); cancelled = true; lock.unlock() }
    public func reset() { lock.lock(); cancelled = false; lock.unlock() }
    public var isCancelled: Bool {
        lock.lock()
        defer { lock.unlock() }
        if !cancelled, watched?() == true { cancelled = true }
        return cancelled
    }

    /// Runs `body` with `condition` polled at every check: it cancels the token once it holds.
    /// `condition` must be safe to call from any thread: the long ops poll it from their workers.
    public func watching<T>(_ condition: () -> Bool, _ body: () throws -> T) rethrows -> T {
        try withoutActuallyEscaping(condition) { escapable in
            lock.lock(); watched = escapable; lock.unlock()
            defer { lock.lock(); watched = nil; lock.unlock() }
            return try body()
        }
    }

    /// Throws `PipelineError.cancelled` once cancelled.
    public func check() throws { if isCancelled { throw PipelineError.cancelled } }

    /// Runs `body` with the engine's longest ops polling `token` (`Interruption`: a 2048×2048
    /// self-attention runs for minutes between two checks), then checks it. An op that stopped early
    /// left its output unfinished, so `body`'s result is returned only when nothing was cancelled.
    /// - Throws: `PipelineError.cancelled`, or what `body` throws.
    public static func guarding<T>(_ token: CancellationToken?, _ body: () throws -> T) throws -> T {
        guard let token else { return try body() }
        let result = try Interruption.polling({ token.isCancelled }, body)
        try token.check()
        return result
    }
}
