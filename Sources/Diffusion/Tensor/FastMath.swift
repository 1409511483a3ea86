import Foundation

/// Scalar kernels written so that a loop over them vectorises (no libm calls, no branches):
/// attention's softmax alone takes 268 million exponentials per UNet step at 512×512.
enum FastMath {
    /// `exp(x)` to about 2 ulp, Cephes' `expf`: `x = n·ln2 + r` with `|r| ≤ ln2/2`,
    /// `exp(r)` by a degree-6 minimax polynomial, `2ⁿ` built in the exponent bits.
    /// Returns 0 below −87.3 (the smallest normal result) and clamps at 88.7.
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        let xc = Swift.min(x, 88.7228)
        let clamped = Swift.max(xc, -87.33654)
        let n = (clamped * 1.44269504088896341 + 0.5).rounded(.down)
        // r = x − n·ln2, with ln2 split in a short high part and a low part for exactness.
        var r = clamped - n * 0.693359375
        r = r - n * -2.12194440e-4
        var p: Float = 1.9875691500e-4
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let y = p * r * r + r + 1
        let scale = Float(bitPattern: UInt32(truncatingIfNeeded: (Int32(n) &+ 127) << 23))
        return x < -87.33654 ? 0 : y * scale
    }

    /// The logistic function `1 / (1 + e^(−x))`.
    @inline(__always)
    static func sigmoid(_ x: Float) -> Float {
        1 / (1 + exp(-x))
    }

    /// `erf(x)` to about 1e-7 absolute: Abramowitz–Stegun 7.1.26 is too coarse (1.5e-7 relative
    /// error *per term* reaches 1e-6 in GELU), so this is the rational approximation used by
    /// Eigen/XLA for float erf on [-4, 4] (erf(4) rounds to 1 in Float).
    @inline(__always)
    static func erf(_ x: Float) -> Float {
        let xc = Swift.min(Swift.max(x, -4), 4)
        let x2 = xc * xc
        var p: Float = -2.72614225801306e-10
        p = p * x2 + 2.77068142495902e-08
        p = p * x2 + -2.10102402082508e-06
        p = p * x2 + -5.69250639462346e-05
        p = p * x2 + -7.34990630326855e-04
        p = p * x2 + -2.95459980854025e-03
        p = p * x2 + -1.60960333262415e-02
        p = p * xc
        var q: Float = -1.45660718464996e-05
        q = q * x2 + -2.13374055278905e-04
        q = q * x2 + -1.68282697438203e-03
        q = q * x2 + -7.37332916720468e-03
        q = q * x2 + -1.42647390514189e-02
        return p / q
    }
}
