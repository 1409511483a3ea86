import Foundation

/// A dense, row-major Float32 tensor. Images and feature maps are NCHW; token sequences are
/// `[batch, tokens, channels]`.
///
/// `Tensor` is a value type backed by a copy-on-write `[Float]`, so passing it around is cheap and
/// mutation never aliases. Operations live in `Tensor+*.swift` files, one file per aspect.
public struct Tensor: Sendable, Equatable {
    /// The size of each dimension, outermost first.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `data.count == shape.reduce(1, *)`.
    public var data: [Float]

    /// Wraps `data` with the given shape.
    /// - Precondition: `data.count` equals the product of `shape` (a programmer error otherwise).
    public init(shape: [Int], data: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(data.count == shape.reduce(1, *), "shape \(shape) does not match \(data.count) elements")
        self.shape = shape
        self.data = data
    }

    /// A tensor of the given shape filled with `value` (zero by default).
    public init(shape: [Int], repeating value: Float = 0) {
        self.init(shape: shape, data: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    /// A tensor whose elements are left unwritten, for an op that stores every element itself
    /// (a GEMM with `beta = 0`, a bias copied into every row). Skipping the zero fill saves one
    /// write pass over the output: 84 MB for the UNet's 8192×2560 feed-forward projection.
    /// - Precondition: the caller overwrites all `shape.reduce(1, *)` elements before reading any.
    init(uninitializedShape shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        let n = shape.reduce(1, *)
        self.init(shape: shape, data: [Float](unsafeUninitializedCapacity: n) { _, initialized in initialized = n })
    }

    /// The number of elements.
    @inlinable public var count: Int { data.count }

    /// The number of dimensions.
    @inlinable public var rank: Int { shape.count }

    /// Whether every element is finite (no NaN, no ±∞): what a broken weight file shows in the
    /// activations it feeds.
    public var isAllFinite: Bool {
        data.withUnsafeBufferPointer { p in
            // x · 0 is 0 for every finite x and NaN for NaN and ±∞: one comparison at the end.
            var acc = SIMD8<Float>()
            var i = 0
            while i + 8 <= p.count {
                acc += UnsafeRawPointer(p.baseAddress! + i).loadUnaligned(as: SIMD8<Float>.self) * 0
                i += 8
            }
            var tail: Float = 0
            while i < p.count { tail += p[i] * 0; i += 1 }
            return acc.sum() == 0 && tail == 0
        }
    }

    /// The same elements viewed with another shape of equal element count. `-1` in one position is
    /// inferred.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var dims = newShape
        if let hole = dims.firstIndex(of: -1) {
            let known = dims.enumerated().filter { $0.offset != hole }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            dims[hole] = count / known
        }
        return Tensor(shape: dims, data: data)
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = data.prefix(6).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(head)\(count > 6 ? ", …" : "")])"
    }
}
