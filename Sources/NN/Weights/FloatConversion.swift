import Foundation

/// Widening of stored tensor elements to Float32: the hot path of low-memory mode, where every
/// weight is converted again on each use.
///
/// fp16 → fp32 is `SIMD8<Float>(SIMD8<Float16>)`, which the release build (`-target-cpu haswell`)
/// compiles to F16C's `vcvtph2ps`, eight elements an instruction. The branchy bit trick of
/// `halfToFloat` took ~1.4 ns, as did a 64 K-entry table; without F16C (a debug build) the Swift
/// conversion is a call into compiler-rt's `__extendhfsf2`, ~5.6 ns, which only tests pay.
enum FloatConversion {
    /// Tensors at least this large are split across cores.
    static let parallelThreshold = 1 << 20

    /// Converts `dst.count` elements of `dtype` starting at `src` (any alignment, little-endian).
    /// - Precondition: `dtype.isReadableAsFloat`.
    static func convert(_ dtype: SafetensorsDType, from src: UnsafeRawPointer, to dst: UnsafeMutableBufferPointer<Float>) {
        let count = dst.count
        guard count > 0, let out = dst.baseAddress else { return }
        if count < parallelThreshold {
            convertRange(dtype, src, out, 0..<count)
            return
        }
        let chunks = min(ProcessInfo.processInfo.activeProcessorCount * 4, count / 65_536)
        let per = (count + chunks - 1) / chunks
        // Each chunk writes a disjoint range of `out`, so the result is the same however it is split.
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = c * per, hi = min(count, lo + per)
            if lo < hi { convertRange(dtype, src, out, lo..<hi) }
        }
    }

    private static func convertRange(_ dtype: SafetensorsDType, _ src: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>, _ range: Range<Int>) {
        switch dtype {
        case .f32:
            // The data section need not be 4-byte aligned (the header length is arbitrary), so copy bytes.
            (out + range.lowerBound).withMemoryRebound(to: UInt8.self, capacity: range.count * 4) {
                $0.update(from: (src + range.lowerBound * 4).assumingMemoryBound(to: UInt8.self), count: range.count * 4)
            }
        case .f16:
            var i = range.lowerBound
            #if _endian(little)
            // Eight at a time: the scalar loop below compiles to one `vcvtph2ps` per element (the
            // unaligned loads keep it from being vectorised); this is one per eight.
            while i + 8 <= range.upperBound {
                let h = src.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<UInt16>.self)
                UnsafeMutableRawPointer(out + i).storeBytes(of: SIMD8<Float>(unsafeBitCast(h, to: SIMD8<Float16>.self)), as: SIMD8<Float>.self)
                i += 8
            }
            #endif
            for j in i..<range.upperBound {
                out[j] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: 2 * j, as: UInt16.self).littleEndian))
            }
        case .bf16:
            // bfloat16 is the top half of a binary32, so widening is a shift (exact for every value).
            var i = range.lowerBound
            #if _endian(little)
            while i + 8 <= range.upperBound {
                let h = SIMD8<UInt32>(truncatingIfNeeded: src.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<UInt16>.self))
                UnsafeMutableRawPointer(out + i).storeBytes(of: unsafeBitCast(h &<< 16, to: SIMD8<Float>.self), as: SIMD8<Float>.self)
                i += 8
            }
            #endif
            for j in i..<range.upperBound {
                out[j] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * j, as: UInt16.self).littleEndian) << 16)
            }
        case .f64:
            for i in range { out[i] = Float(Double(bitPattern: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian)) }
        case .i64:
            for i in range { out[i] = Float(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case .u64:
            for i in range { out[i] = Float(UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
        case .i32:
            for i in range { out[i] = Float(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case .u32:
            for i in range { out[i] = Float(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .i16:
            for i in range { out[i] = Float(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
        case .u16:
            for i in range { out[i] = Float(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .i8:
            for i in range { out[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case .u8, .bool:
            for i in range { out[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        case .f4, .f6e2m3, .f6e3m2, .f8e5m2, .f8e4m3, .f8e8m0, .c64:
            preconditionFailure("\(dtype) is not readable as Float32; callers check isReadableAsFloat")
        }
    }

    /// IEEE binary16 → binary32, exact for every input (F. Giesen, "half_to_float_fast"): the
    /// portable reference the tests hold F16C's conversion to.
    ///
    /// Shifting the 15 exponent+mantissa bits left by 13 lines the mantissa up with binary32's;
    /// adding (127 − 15) << 23 rebiases the exponent. Two cases need more: exponent 31 (inf/NaN) gets
    /// another (128 − 16) << 23 so it becomes 255, keeping the NaN payload; exponent 0 (zero and
    /// subnormals, value m·2⁻²⁴) is built as the float 2⁻¹⁴·(1 + m/1024) and then 2⁻¹⁴ is subtracted,
    /// which is exact because the result m·2⁻²⁴ is representable.
    @inline(__always)
    static func halfToFloat(_ h: UInt16) -> Float {
        let bits = UInt32(h)
        var o = (bits & 0x7FFF) << 13
        let exponent = o & 0x0F80_0000
        o &+= (127 - 15) << 23
        if exponent == 0x0F80_0000 {
            o &+= (128 - 16) << 23
        } else if exponent == 0 {
            o &+= 1 << 23
            o = (Float(bitPattern: o) - Float(bitPattern: 113 << 23)).bitPattern
        }
        return Float(bitPattern: o | (bits & 0x8000) << 16)
    }

    /// IEEE binary32 → binary16, rounding to nearest even (Swift's own conversion), as bits.
    @inline(__always)
    static func floatToHalf(_ f: Float) -> UInt16 { Float16(f).bitPattern }

    /// binary32 → bfloat16, rounding to nearest even (as torch's `.to(torch.bfloat16)`); NaN stays NaN.
    @inline(__always)
    static func floatToBFloat16(_ f: Float) -> UInt16 {
        let bits = f.bitPattern
        if f.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let roundingBias: UInt32 = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
    }
}
