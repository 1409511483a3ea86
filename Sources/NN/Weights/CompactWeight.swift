import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A weight kept in two bytes per element, widened to Float32 on each use: how fast mode holds
/// the large weights of an fp16 or bf16 checkpoint in half the memory of their Float32 copies.
///
/// A weight is kept this way only when every one of its Float32 values is exactly an fp16 (or
/// bf16) value, so widening gives back the very floats fast mode would have kept and outputs do
/// not change by a bit. That holds for every weight of an fp16 or bf16 file, and for none of an
/// fp32 file or a weight with a LoRA merged into it, which stay Float32 as before.
///
/// Widening fp16 is `vcvtph2ps` (F16C, which Swift's `Float(Float16)` compiles to in the release
/// build for Haswell): ~0.35 ns per element on one core from memory, a small part of the sgemm
/// that reads the widened weight afterwards (README "Memory modes").
final class CompactWeight: @unchecked Sendable {
    enum Format: Sendable { case f16, bf16 }

    let format: Format
    let count: Int
    /// The two-byte elements, in pages of their own (see `init`) or in a file's mapping
    /// (`init(mapped:owner:)`); immutable once made.
    private let bits: UnsafePointer<UInt16>
    /// What keeps a file's mapping alive; nil for pages of our own, unmapped on deinit.
    private let owner: AnyObject?

    /// Weights smaller than this stay Float32: norms, biases and small projections are a sliver
    /// of the bytes, and widening them on each use would only cost calls.
    static let minimumCount = 1 << 16

    /// The two-byte copy of `values`, or nil when some value is not exactly representable in
    /// either format (or `values` is too small to be worth it).
    ///
    /// The copy lives in its own anonymous mapping, not on the malloc heap: it is made during the
    /// first UNet step, between the step's activations, and in the heap (whose large blocks are
    /// kept for reuse, `MemoryMode.keepFreedBlocksForReuse`) each copy would pin the space around
    /// it, so freed activations could not be merged and the heap would grow past the sum of its
    /// parts.
    init?(exactly values: UnsafeBufferPointer<Float>) {
        guard values.count >= Self.minimumCount,
              let raw = mmap(nil, 2 * values.count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED else { return nil }
        let bits = raw.bindMemory(to: UInt16.self, capacity: values.count)
        guard let format = [Format.f16, .bf16].first(where: { Self.narrow(values, to: $0, into: bits) }) else {
            munmap(raw, 2 * values.count)
            return nil
        }
        (self.format, self.count, self.bits, self.owner) = (format, values.count, UnsafePointer(bits), nil)
    }

    /// The elements where a file's mapping holds them, which `owner` keeps mapped.
    init(mapped stored: HalfElements, owner: AnyObject) {
        (self.format, self.count, self.bits, self.owner) = (stored.isBF16 ? .bf16 : .f16, stored.count, stored.bits, owner)
    }

    deinit { if owner == nil { munmap(UnsafeMutableRawPointer(mutating: bits), 2 * count) } }

    /// Bytes held (two per element).
    var byteCount: Int { 2 * count }

    /// Where the elements are: a file's mapping (`init(mapped:owner:)`) or pages of our own.
    var elements: UnsafeRawPointer { UnsafeRawPointer(bits) }

    /// Widens every element into `out`, whose count must equal `count`.
    func widen(into out: UnsafeMutableBufferPointer<Float>) {
        precondition(out.count == count, "widening \(count) elements into \(out.count)")
        guard let dst = out.baseAddress else { return }
        let d = SharedPointer(dst), src = SharedPointer(UnsafeMutablePointer(mutating: bits))
        // 256 K elements per worker at least: below that a dispatch costs more than it saves.
        Parallel.forEach(count, grain: 1 << 18) { range in
            switch format {
            case .f16:
                for i in range { d.base[i] = Float(Float16(bitPattern: src.base[i])) }
            case .bf16:
                for i in range { d.base[i] = Float(bitPattern: UInt32(src.base[i]) << 16) }
            }
        }
    }

    /// Writes the elements as two-byte patterns of `format` into `out`; false at the first one that
    /// does not widen back to itself exactly (NaN payloads included, as bit patterns are compared).
    private static func narrow(_ values: UnsafeBufferPointer<Float>, to format: Format, into out: UnsafeMutablePointer<UInt16>) -> Bool {
        for (i, v) in values.enumerated() {
            let h: UInt16, back: Float
            switch format {
            case .f16:
                h = Float16(v).bitPattern
                back = Float(Float16(bitPattern: h))
            case .bf16:
                h = UInt16(truncatingIfNeeded: v.bitPattern >> 16)
                back = Float(bitPattern: UInt32(h) << 16)
            }
            if back.bitPattern != v.bitPattern { return false }
            out[i] = h
        }
        return true
    }
}
