import Foundation

/// A `TensorSource` that holds no data and accepts every parameter a model asks for, recording its
/// key and shape. Building the models against it lists a checkpoint's tensors from the
/// architecture itself, with no hand-written table (the benchmark synthesises a full-size
/// checkpoint from it).
///
/// `Weights.parameter` consults `record(_:shape:)` instead of checking the shape; reading throws.
public final class ShapeRecorder: TensorSource, @unchecked Sendable {
    private var recorded: [(key: String, shape: [Int])] = []
    private var seen = Set<String>()
    private let lock = NSLock()

    public init() {}

    /// Every key asked for so far, in the order first asked, with its shape.
    public var tensors: [(key: String, shape: [Int])] { lock.lock(); defer { lock.unlock() }; return recorded }

    public func record(_ key: String, shape: [Int]) {
        lock.lock(); defer { lock.unlock() }
        if seen.insert(key).inserted { recorded.append((key, shape)) }
    }

    public var sourceDescription: String { "shape recorder" }
    public var keys: [String] { tensors.map(\.key) }
    public func shape(of key: String) -> [Int]? {
        lock.lock(); defer { lock.unlock() }
        return recorded.first { $0.key == key }?.shape
    }
    public func read(_ key: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        throw WeightsError.missingTensor(key: key, source: sourceDescription)
    }

}
