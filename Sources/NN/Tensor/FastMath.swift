import Foundation

/// Vector kernels for the element-wise work BLAS does not do. Everything is written on
/// `SIMD8<Float>` with no libm calls and no branches: attention's softmax alone takes 268 million
/// exponentials per UNet step at 512×512, and a scalar loop calling `expf` (7 ns each) or a
/// generic Swift `rounded`/`Int32(_:)` (which do not vectorise) would cost seconds per step.
///
/// Each function is the single implementation of its formula: a row's ragged tail is padded to a
/// full vector rather than sent through a scalar twin, so an element's value never depends on its
/// position in the row.
///
/// The polynomials use separate multiplies and adds: written with `addingProduct`, LLVM scalarised
/// some lanes of the chained FMAs, and an unoptimised build would call `fmaf` per lane.
enum FastMath {
    typealias V = SIMD8<Float>

    /// `exp(x)` to 1e-7 relative (Cephes `expf`): `x = n·ln2 + r`, `|r| ≤ ln2/2`, `exp(r)` by a
    /// degree-6 minimax polynomial, `2ⁿ` built in the exponent bits. Returns 0 below −87.34 (the
    /// smallest normal result, and so for −∞) and saturates at exp(88.38).
    @inline(__always)
    static func exp(_ x: V) -> V {
        let hi = V(repeating: 88.3762626647949), lo = V(repeating: -87.3365447504)
        var xc = x.replacing(with: hi, where: x .> hi)
        xc = xc.replacing(with: lo, where: xc .< lo)
        // n = round(x / ln2) by the 1.5·2²³ trick: after the addition, n sits in the low mantissa bits.
        let magic = V(repeating: 12_582_912)
        let t = xc * 1.44269504088896341 + magic
        let n = t - magic
        // r = x − n·ln2, ln2 split into an exact short part and a correction.
        var r = xc - n * 0.693359375
        r = r - n * -2.12194440e-4
        var p = V(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let y = p * r * r + r + 1
        let nInt = unsafeBitCast(t, to: SIMD8<UInt32>.self) &- 0x4B40_0000  // bits(t) − bits(magic) = n
        let scale = unsafeBitCast((nInt &+ 127) &<< 23, to: V.self)
        return (y * scale).replacing(with: 0, where: x .< lo)
    }

    /// The logistic function `1 / (1 + e^(−x))`.
    @inline(__always)
    static func sigmoid(_ x: V) -> V { 1 / (1 + exp(-x)) }

    /// `erf(x)` to ~2e-7 absolute: the rational minimax approximation Eigen and XLA use for float
    /// erf, `x·P(x²) / Q(x²)` on [−4, 4] (beyond, erf rounds to ±1 in Float).
    @inline(__always)
    static func erf(_ x: V) -> V {
        let four = V(repeating: 4), minusFour = V(repeating: -4)
        var xc = x.replacing(with: four, where: x .> four)
        xc = xc.replacing(with: minusFour, where: xc .< minusFour)
        let x2 = xc * xc
        var p = V(repeating: -2.72614225801306e-10)
        p = p * x2 + 2.77068142495902e-08
        p = p * x2 + -2.10102402082508e-06
        p = p * x2 + -5.69250639462346e-05
        p = p * x2 + -7.34990630326855e-04
        p = p * x2 + -2.95459980854025e-03
        p = p * x2 + -1.60960333262415e-02
        p = p * xc
        var q = V(repeating: -1.45660718464996e-05)
        q = q * x2 + -2.13374055278905e-04
        q = q * x2 + -1.68282697438203e-03
        q = q * x2 + -7.37332916720468e-03
        q = q * x2 + -1.42647390514189e-02
        return p / q
    }

    /// Exact GELU, `x/2 · (1 + erf(x/√2))`.
    @inline(__always)
    static func gelu(_ x: V) -> V { 0.5 * x * (1 + erf(x * 0.70710678118654752)) }

    // MARK: scalar entry points (tests, one-off values)

    static func exp(_ x: Float) -> Float { exp(V(repeating: x))[0] }
    static func erf(_ x: Float) -> Float { erf(V(repeating: x))[0] }

    // MARK: loops over rows

    /// `dst[i] = f(src[i])` for `count` elements; `src` and `dst` may be the same buffer.
    @inline(__always)
    static func map(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int, _ f: (V) -> V) {
        let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
        var i = 0
        while i + 8 <= count {
            d.storeBytes(of: f(s.loadUnaligned(fromByteOffset: i * 4, as: V.self)), toByteOffset: i * 4, as: V.self)
            i += 8
        }
        if i < count {
            var v = V()
            for j in i..<count { v[j - i] = src[j] }
            let y = f(v)
            for j in i..<count { dst[j] = y[j - i] }
        }
    }

    /// `dst[i] = f(a[i], b[i])` for `count` elements.
    @inline(__always)
    static func zip(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int,
                    _ f: (V, V) -> V) {
        let ar = UnsafeRawPointer(a), br = UnsafeRawPointer(b), d = UnsafeMutableRawPointer(dst)
        var i = 0
        while i + 8 <= count {
            let y = f(ar.loadUnaligned(fromByteOffset: i * 4, as: V.self), br.loadUnaligned(fromByteOffset: i * 4, as: V.self))
            d.storeBytes(of: y, toByteOffset: i * 4, as: V.self)
            i += 8
        }
        if i < count {
            var u = V(), v = V()
            for j in i..<count { u[j - i] = a[j]; v[j - i] = b[j] }
            let y = f(u, v)
            for j in i..<count { dst[j] = y[j - i] }
        }
    }

    /// The largest of `count ≥ 1` elements.
    @inline(__always)
    static func max(_ p: UnsafePointer<Float>, count: Int) -> Float {
        let raw = UnsafeRawPointer(p)
        var acc = V(repeating: -.infinity)
        var i = 0
        while i + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            acc = acc.replacing(with: v, where: v .> acc)
            i += 8
        }
        var m = acc.max()
        while i < count { m = Swift.max(m, p[i]); i += 1 }
        return m
    }

    /// Replaces each of `count` elements `x` by `exp(x − shift)` and returns their sum (eight lane
    /// sums, then the lanes in a fixed order): softmax's exponentials and normaliser in one pass.
    @inline(__always)
    static func expShiftedSum(_ p: UnsafeMutablePointer<Float>, count: Int, shift: Float) -> Float {
        let raw = UnsafeMutableRawPointer(p)
        let m = V(repeating: shift)
        var acc = V()
        var i = 0
        while i + 8 <= count {
            let e = exp(raw.loadUnaligned(fromByteOffset: i * 4, as: V.self) - m)
            raw.storeBytes(of: e, toByteOffset: i * 4, as: V.self)
            acc += e
            i += 8
        }
        if i < count {
            // Padding lanes hold −∞, whose exponential is exactly 0, so they add nothing.
            var v = V(repeating: -.infinity)
            for j in i..<count { v[j - i] = p[j] }
            let e = exp(v - m)
            for j in i..<count { p[j] = e[j - i] }
            acc += e
        }
        return acc.sum()
    }

    /// The sum of `count` elements: eight lanes, then the lanes and the tail in a fixed order.
    @inline(__always)
    static func sum(_ p: UnsafePointer<Float>, count: Int) -> Float {
        let raw = UnsafeRawPointer(p)
        var acc = V()
        var i = 0
        while i + 8 <= count {
            acc += raw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            i += 8
        }
        var s = acc.sum()
        while i < count { s += p[i]; i += 1 }
        return s
    }
}
