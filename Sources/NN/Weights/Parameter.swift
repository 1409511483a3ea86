import Foundation

/// Something that holds named tensors: a safetensors file, a diffusers folder, a remapped
/// single-file checkpoint. Keys are the source's own (already mapped) names.
public protocol TensorSource: AnyObject, Sendable {
    /// A human name for messages: usually the file or folder path.
    var sourceDescription: String { get }
    /// Every key the source holds.
    var keys: [String] { get }
    /// The shape of `key`, or nil when the source has no such tensor.
    func shape(of key: String) -> [Int]?
    /// Converts `key` to Float32 into `buffer`, whose count must equal the element count.
    func read(_ key: String, into buffer: UnsafeMutableBufferPointer<Float>) throws
    /// Converts rows `rows` of `key`, seen as `[rows, width]`, to Float32 into `buffer`
    /// (`rows.count · width` floats, in the order given). The default reads the whole tensor; a
    /// file converts only those rows (a token table's 77 of its 49408).
    func readRows(_ key: String, rows: [Int], width: Int, into buffer: UnsafeMutableBufferPointer<Float>) throws
    /// The stored elements of `key` in place, when they are two-byte floats in the key's own order,
    /// mapped for as long as the source lives; nil (the default) when `read` does more than widen.
    func storedHalfElements(_ key: String) -> HalfElements?
    /// The mapped files behind the source that were rewritten in place since they were opened
    /// (`MappedFile.changedSinceMapped`): reading them on would give other weights or SIGBUS, so the
    /// source must be opened again. Empty (the default) for a source that maps nothing.
    func filesChangedOnDisk() -> [String]
    /// Where `key` is stored and in what element type, so that a weight whose type cannot be read
    /// is refused when the model is built (`Weights.parameter`) rather than when it is first used.
    /// nil (the default) for a source that stores nothing (a recorder, generated weights).
    func storedTensor(_ key: String) -> StoredTensor?
}

/// One tensor as a file stores it: the file, the tensor's own name there (before any renaming
/// to a model's key), and its element type.
public struct StoredTensor: Sendable, Equatable {
    public let path: String
    public let name: String
    public let dtype: TensorDType

    public init(path: String, name: String, dtype: TensorDType) {
        (self.path, self.name, self.dtype) = (path, name, dtype)
    }
}

/// Two-byte floats in a file's mapping: what fast mode keeps of an fp16 or bf16 weight without a copy.
public struct HalfElements: @unchecked Sendable {
    public let bits: UnsafePointer<UInt16>
    public let count: Int
    /// bf16; otherwise IEEE fp16.
    public let isBF16: Bool

    public init(bits: UnsafePointer<UInt16>, count: Int, isBF16: Bool) {
        (self.bits, self.count, self.isBF16) = (bits, count, isBF16)
    }
}

extension TensorSource {
    public func storedHalfElements(_ key: String) -> HalfElements? { nil }

    public func filesChangedOnDisk() -> [String] { [] }

    public func storedTensor(_ key: String) -> StoredTensor? { nil }

    /// Throws unless `key` is stored as floats a weight may be in (`TensorDType.isReadableAsWeight`).
    /// Reading cannot fail after this (for the types it cannot convert), nor convert integers that
    /// stand where floats should.
    /// - Throws: `WeightsError.notFloat` naming the stored tensor, its file and its type.
    public func requireWeightType(_ key: String) throws {
        guard let stored = storedTensor(key), !stored.dtype.isReadableAsWeight else { return }
        throw WeightsError.notFloat(tensor: stored.name, dtype: stored.dtype.rawValue, path: stored.path)
    }

    public func readRows(_ key: String, rows: [Int], width: Int, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        try readRowsOfWholeTensor(key, rows: rows, width: width, into: buffer)
    }

    /// `readRows` through `read` of the whole tensor: the default, for a source to fall back on.
    public func readRowsOfWholeTensor(_ key: String, rows: [Int], width: Int, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        let count = shape(of: key)?.reduce(1, *) ?? 0
        try withUnsafeTemporaryAllocation(of: Float.self, capacity: count) { whole in
            try read(key, into: whole)
            for (i, row) in rows.enumerated() {
                precondition(row >= 0 && (row + 1) * width <= count, "row \(row) outside \(key)")
                UnsafeMutableBufferPointer(rebasing: buffer[(i * width)..<((i + 1) * width)])
                    .update(fromContentsOf: whole[(row * width)..<((row + 1) * width)])
            }
        }
    }
}

/// One named weight of a model: validated when the model is built, materialised when used.
///
/// In `.fast` mode the Float32 copy is made on first use and kept, or, for a large weight whose
/// values are all exactly fp16 (or bf16), a two-byte copy is kept and widened on each use
/// (`CompactWeight`); in `.low` mode the Float32 copy is made on each use and dropped by the
/// caller, so only the layer running now holds converted weights.
public final class Parameter: @unchecked Sendable {
    /// The full key in the source (e.g. `unet.conv_in.weight`).
    public let key: String
    public let shape: [Int]
    private let source: TensorSource
    private let keep: Bool
    private var cached: Tensor?
    private var compact: CompactWeight?
    private let lock = NSLock()

    init(key: String, shape: [Int], source: TensorSource, keep: Bool) {
        self.key = key
        self.shape = shape
        self.source = source
        self.keep = keep
    }

    /// The weight as a Float32 tensor.
    ///
    /// Shapes, byte ranges and element types were validated when the parameter was made
    /// (`Weights.parameter`), so a failure here means the file changed underneath us; that is
    /// reported as a fatal error naming the tensor.
    public var value: Tensor {
        lock.lock(); defer { lock.unlock() }
        if let cached { return cached }
        return Profiler.measure(.weights, flops: 0) {
            // Uninitialised storage: zero-filling first would be one more pass over every weight on
            // each use in low-memory mode.
            let count = shape.reduce(1, *)
            if let compact {
                return Tensor(shape: shape, data: [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                    compact.widen(into: UnsafeMutableBufferPointer(rebasing: buffer[0..<count]))
                    initialized = count
                })
            }
            let data = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                do {
                    try source.read(key, into: UnsafeMutableBufferPointer(rebasing: buffer[0..<count]))
                } catch {
                    fatalError("weight \(key) in \(source.sourceDescription) could not be read after validation: \(error)")
                }
                initialized = count
            }
            let out = Tensor(shape: shape, data: data)
            if keep, count >= CompactWeight.minimumCount, let stored = source.storedHalfElements(key), stored.count == count {
                // Kept in the file's own pages: clean, so the kernel can drop them under pressure and the
                // pipeline can let them go between uses (`releasePages`), unlike a copy of ours.
                compact = CompactWeight(mapped: stored, owner: source)
            } else if keep {
                compact = data.withUnsafeBufferPointer { CompactWeight(exactly: $0) }
                if compact == nil { cached = out }
            }
            return out
        }
    }

    /// Bytes this parameter holds now: its kept Float32 copy or two-byte copy (0 before first use,
    /// and always in `.low` mode).
    public var heldBytes: Int {
        lock.lock(); defer { lock.unlock() }
        return cached.map { 4 * $0.count } ?? compact?.byteCount ?? 0
    }

    /// Where the two-byte copy's elements are, nil when there is none (for tests: a file's mapping or
    /// pages of its own).
    var compactElements: UnsafeRawPointer? {
        lock.lock(); defer { lock.unlock() }
        return compact?.elements
    }

    /// Rows `ids` of a 2-D weight, `ids.count · shape[1]` floats in the order given. A weight that
    /// is not kept converts only those rows.
    /// - Precondition: every id is a row of the weight.
    public func rows(_ ids: [Int]) -> [Float] {
        let width = shape.dropFirst().reduce(1, *)
        if keep {
            let table = value.data
            return ids.flatMap { table[($0 * width)..<(($0 + 1) * width)] }
        }
        return Profiler.measure(.weights) {
            [Float](unsafeUninitializedCapacity: ids.count * width) { buffer, initialized in
                do {
                    try source.readRows(key, rows: ids, width: width, into: UnsafeMutableBufferPointer(rebasing: buffer[0..<(ids.count * width)]))
                } catch {
                    fatalError("weight \(key) in \(source.sourceDescription) could not be read after validation: \(error)")
                }
                initialized = ids.count * width
            }
        }
    }

    /// Calls `body` with the weight's Float32 values, valid only during the call.
    ///
    /// In `.fast` mode this is the kept copy. In `.low` mode the weight is converted into a temporary
    /// buffer that is freed when `body` returns, so a layer that reads its weights this way holds
    /// them only while it runs, without the zero-filled `[Float]` that `value` allocates.
    public func withValue<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        // A compact weight is widened into a fresh array by `value`, freed when `body` returns.
        if keep { return try value.data.withUnsafeBufferPointer(body) }
        return try withUnsafeTemporaryAllocation(of: Float.self, capacity: shape.reduce(1, *)) { buffer in
            do {
                try source.read(key, into: buffer)
            } catch {
                fatalError("weight \(key) in \(source.sourceDescription) could not be read after validation: \(error)")
            }
            return try body(UnsafeBufferPointer(buffer))
        }
    }
}

/// Records which keys a model took from its source, so the loader can list unexpected tensors.
public final class WeightUsage: @unchecked Sendable {
    private var used = Set<String>()
    private let lock = NSLock()
    public init() {}
    func mark(_ key: String) { lock.lock(); used.insert(key); lock.unlock() }
    /// The keys taken so far.
    public var keys: Set<String> { lock.lock(); defer { lock.unlock() }; return used }
}

/// A view of a `TensorSource` under a key prefix. Each block receives the scope of its parent
/// and narrows it with `scoped(_:)`, so no block ever spells a full checkpoint key.
public struct Weights: Sendable {
    public let source: TensorSource
    public let prefix: String
    /// True when parameters keep their Float32 copy (`.fast`), false for `.low`.
    public let keepConverted: Bool
    public let usage: WeightUsage

    public init(source: TensorSource, prefix: String = "", keepConverted: Bool, usage: WeightUsage = WeightUsage()) {
        self.source = source
        self.prefix = prefix
        self.keepConverted = keepConverted
        self.usage = usage
    }

    /// The same source under `prefix.name.` (e.g. `weights.scoped("down_blocks.0")`).
    public func scoped(_ name: String) -> Weights {
        Weights(source: source, prefix: prefix + name + ".", keepConverted: keepConverted, usage: usage)
    }

    /// The parameter `prefix + name`, checked to exist with exactly `shape` and to be stored as
    /// floats (so that reading it later cannot fail).
    /// - Throws: `WeightsError.missingTensor` or `.shapeMismatch`, naming the key and both shapes;
    ///   `.notFloat` naming the stored tensor and its type.
    public func parameter(_ name: String, shape: [Int]) throws -> Parameter {
        let key = prefix + name
        if let recorder = source as? ShapeRecorder { recorder.record(key, shape: shape) }  // lists shapes, see ShapeRecorder
        guard let actual = source.shape(of: key) else {
            throw WeightsError.missingTensor(key: key, source: source.sourceDescription)
        }
        guard actual == shape else {
            throw WeightsError.shapeMismatch(key: key, expected: shape, actual: actual, source: source.sourceDescription)
        }
        try source.requireWeightType(key)
        usage.mark(key)
        return Parameter(key: key, shape: shape, source: source, keep: keepConverted)
    }

    /// True when the source holds `prefix + name` (for optional weights such as biases).
    public func contains(_ name: String) -> Bool { source.shape(of: prefix + name) != nil }
}
