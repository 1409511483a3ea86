import Foundation

/// PyTorch's CPU random generator, reproduced bit for bit: `torch.Generator("cpu").manual_seed(seed)`
/// followed by `torch.randn(shape, generator=g)` or `torch.rand(...)`, in Float32.
///
/// Diffusers draws the initial latents (and every ancestral sampler's noise) this way, so the same
/// seed gives the same picture only if these numbers are identical to the last bit. What torch does
/// (ATen: `CPUGeneratorImpl.cpp`, `core/MT19937RNGEngine.h`, `core/DistributionsHelper.h`,
/// `core/TransformationHelper.h`, `native/cpu/DistributionTemplates.h`, `DistributionKernels.cpp`,
/// `native/cpu/avx_mathfun.h`):
///
/// - **Engine.** A standard 32-bit Mersenne Twister (MT19937). `manual_seed(s)` takes a `uint64`
///   but seeds the state with `s & 0xffffffff`, so seeds 2^32 and 0 give the same numbers. Seeding
///   also clears the cached Box–Muller sample (below).
/// - **Uniform floats** (`uniform_real_distribution<float>`): one 32-bit output, its low 24 bits
///   times 2^-24, in Float32. **Uniform doubles** use `random64()` = (first output << 32) | second
///   output, its low 53 bits times 2^-53.
/// - **randn with 16 or more elements** (contiguous Float32, `normal_fill`): first every element
///   gets a uniform float; then each block of 16 is turned into normals by Box–Muller, pairing
///   element `i` with `i + 8`: `u1 = 1 - d[i]`, `u2 = d[i+8]`, `r = sqrt(-2 log u1)`,
///   `θ = 2π u2`, `d[i] = r cos θ`, `d[i+8] = r sin θ`. If the count is not a multiple of 16, 16
///   *fresh* uniforms overwrite the last 16 elements (overlapping the previous block) and that block
///   is transformed again.
/// - **On an x86 CPU with AVX2** (and on AVX-512 CPUs too: `DistributionKernels.cpp` registers no
///   AVX-512 kernel for `normal_stub`, so they fall back to the AVX2 one) that transform is
///   `normal_fill_16_AVX2`, whose `log`, `sin` and `cos` are not libm's but the Cephes-derived
///   polynomials of `avx_mathfun.h` (`log256_ps`, `sincos256_ps`), and `2π` is the Float32
///   `6.2831855`. Their results differ from libm's in the last bits, so they are reproduced here
///   operation by operation (`cephesLog`, `cephesSinCos`). More: the shipped `libtorch_cpu.so` is
///   built by GCC with `-mfma` and its default `-ffp-contract=fast`, and GCC fuses many of the
///   header's separate `_mm256_mul_ps`/`_mm256_add_ps` pairs into FMA instructions. Which ones was
///   read off the disassembly of `NormalFill16<float, true>::operator()` in torch 2.15's
///   `libtorch_cpu.so`; without the same fusions about 1 value in 100 is off by 1–2 ulp.
/// - **randn with fewer than 16 elements** takes the scalar path: per element,
///   `normal_distribution<double>`, which uses Box–Muller in Double on two uniform doubles
///   (`u1`, then `u2`): `r = sqrt(-2 log1p(-u2))`, `θ = 2π u1`, returns `r cos θ` and caches
///   `r sin θ` *in the generator*, to be returned by the next scalar-path draw (even one in a
///   later `randn` call); the result is rounded to Float32. The ≥ 16 path neither reads nor clears
///   that cache. `log1p`, `sin` and `cos` are the C library's in both programs (glibc on Linux),
///   which is what keeps this path exact.
///
/// What is reproduced is torch on x86-64 (any CPU with AVX2, which is where diffusers' reference
/// images come from). torch on an ARM or pre-AVX2 CPU runs the scalar `normal_fill_16` with libm's
/// `log`/`sin`/`cos` instead, and its numbers differ from these in the last bits.
public struct TorchGenerator: Sendable {
    private var engine: MersenneTwister
    /// The second value of the last scalar Box–Muller pair, as torch's `next_double_normal_sample_`.
    private var cachedNormal: Double?

    /// A generator in the state of `torch.Generator("cpu").manual_seed(seed)`.
    /// - Parameter seed: any 64-bit value; only its low 32 bits matter, as in torch.
    public init(seed: UInt64) {
        engine = MersenneTwister(seed: UInt32(truncatingIfNeeded: seed))
        cachedNormal = nil
    }

    /// Standard normal samples, as `torch.randn(shape, generator=g)` in Float32.
    /// - Parameter shape: the tensor's shape; an empty shape gives one element (a 0-d tensor).
    /// - Returns: a tensor of that shape; the generator advances exactly as torch's does.
    public mutating func randn(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: randn(count: shape.reduce(1, *)))
    }

    /// `count` standard normal samples, as `torch.randn(count, generator=g)` in Float32.
    public mutating func randn(count: Int) -> [Float] {
        precondition(count >= 0, "negative count \(count)")
        if count >= 16 {
            return normalFill(count: count)
        }
        return (0..<count).map { _ in Float(scalarNormal()) }
    }

    /// Uniform samples in [0, 1), as `torch.rand(shape, generator=g)` in Float32.
    public mutating func rand(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: rand(count: shape.reduce(1, *)))
    }

    /// `count` uniform samples in [0, 1), as `torch.rand(count, generator=g)` in Float32.
    public mutating func rand(count: Int) -> [Float] {
        precondition(count >= 0, "negative count \(count)")
        return (0..<count).map { _ in uniformFloat() }
    }

    // MARK: - Uniform conversions (TransformationHelper.h `uniform_real`)

    /// The low 24 bits of one output, scaled to [0, 1).
    private mutating func uniformFloat() -> Float {
        Float(engine.next() & 0xFF_FFFF) * 0x1p-24
    }

    /// The low 53 bits of two outputs (first one high), scaled to [0, 1).
    private mutating func uniformDouble() -> Double {
        let hi = UInt64(engine.next()), lo = UInt64(engine.next())
        return Double(((hi << 32) | lo) & ((1 << 53) - 1)) * 0x1p-53
    }

    // MARK: - randn below 16 elements (normal_distribution<double>)

    private mutating func scalarNormal() -> Double {
        if let cached = cachedNormal {
            cachedNormal = nil
            return cached
        }
        let u1 = uniformDouble()
        let u2 = uniformDouble()
        let r = (-2.0 * log1p(-u2)).squareRoot()
        let theta = 2.0 * Double.pi * u1
        cachedNormal = r * sin(theta)
        return r * cos(theta)
    }

    // MARK: - randn from 16 elements (normal_fill_AVX2)

    private mutating func normalFill(count: Int) -> [Float] {
        var data = [Float](repeating: 0, count: count)
        for i in 0..<count { data[i] = uniformFloat() }
        var start = 0
        while start + 16 <= count {
            Self.boxMuller16(&data, at: start)
            start += 16
        }
        if count % 16 != 0 {
            // torch recomputes the last 16 values from fresh uniforms.
            let tail = count - 16
            for i in tail..<count { data[i] = uniformFloat() }
            Self.boxMuller16(&data, at: tail)
        }
        return data
    }

    /// `normal_fill_16_AVX2` with mean 0 and std 1 (its final `fmadd(n, 1, 0)` is exact).
    private static func boxMuller16(_ data: inout [Float], at start: Int) {
        for j in start..<(start + 8) {
            let u1 = 1 - data[j]
            let u2 = data[j + 8]
            let radius = (-2 * cephesLog(u1)).squareRoot()
            let theta = twoPi * u2
            let (sinTheta, cosTheta) = cephesSinCos(theta)
            data[j] = radius * cosTheta
            data[j + 8] = radius * sinTheta
        }
    }

    /// `_mm256_set1_ps(2.0f * c10::pi<double>)`: 2π rounded to Float32.
    static let twoPi = Float(bitPattern: 0x40C9_0FDB)
}

// MARK: - avx_mathfun.h, one lane at a time

/// Constants of `avx_mathfun.h`, given by bit pattern because the C source writes them as double
/// literals rounded to float (a decimal Float literal in Swift could round differently).
private enum Cephes {
    static let sqrtHalf = Float(bitPattern: 0x3F35_04F3)
    static let logP: [Float] = [
        0x3D90_21BB, 0xBDEB_D1B8, 0x3DEF_251A, 0xBDFE_5D4F, 0x3E11_E9BF,
        0xBE2A_AE50, 0x3E4C_CEAC, 0xBE7F_FFFC, 0x3EAA_AAAA,
    ].map { Float(bitPattern: $0) }
    static let logQ1 = Float(bitPattern: 0xB95E_8083)  // -2.12194440e-4
    static let logQ2 = Float(bitPattern: 0x3F31_8000)  // 0.693359375
    static let minusDP1 = Float(bitPattern: 0xBF49_0000)
    static let minusDP2 = Float(bitPattern: 0xB97D_A000)
    static let minusDP3 = Float(bitPattern: 0xB322_2169)
    static let sinP0 = Float(bitPattern: 0xB94C_A1F9)
    static let sinP1 = Float(bitPattern: 0x3C08_839E)
    static let sinP2 = Float(bitPattern: 0xBE2A_AAA3)
    static let cosP0 = Float(bitPattern: 0x37CC_F5CE)
    static let cosP1 = Float(bitPattern: 0xBAB6_061A)
    static let cosP2 = Float(bitPattern: 0x3D2A_AAA5)
    static let fourOverPi = Float(bitPattern: 0x3FA2_F983)
}

/// `log256_ps` for one positive, normal lane: `log x = e·ln 2 + log m` with `m` in [√½, √2),
/// `log(1+f) ≈ f - f²/2 + f³·P(f)` (Cephes `logf`), `ln 2` split as `q2 + q1`.
func cephesLog(_ input: Float) -> Float {
    let bits = input.bitPattern
    var e = Float(Int32(bitPattern: bits >> 23) - 0x7f)
    var x = Float(bitPattern: (bits & ~0x7f80_0000) | Float(0.5).bitPattern)  // mantissa in [0.5, 1)
    e = e + 1
    let below = x < Cephes.sqrtHalf
    let tmp: Float = below ? x : 0
    x = x - 1
    e = e - (below ? 1 : 0)
    x = x + tmp
    let z = x * x
    var y = Cephes.logP[0]
    for p in Cephes.logP.dropFirst() {
        y = p.addingProduct(y, x)
    }
    y = y * x
    y = (e * Cephes.logQ1).addingProduct(y, z)
    y = y.addingProduct(-z, 0.5)
    x = x + y
    x = x.addingProduct(e, Cephes.logQ2)
    return x
}

/// `sincos256_ps` for one lane with `0 ≤ x < 8192`: reduce by multiples of π/4 in three parts
/// (Cody–Waite), then Cephes' `sinf`/`cosf` polynomials on [-π/4, π/4].
/// - Returns: (sin x, cos x).
func cephesSinCos(_ input: Float) -> (Float, Float) {
    var x = abs(input)
    let signSin: UInt32 = input.sign == .minus ? 0x8000_0000 : 0
    var j = Int32(x * Cephes.fourOverPi)  // truncation, as _mm256_cvttps_epi32
    j = (j + 1) & ~1
    let y = Float(j)
    let swapSin = UInt32(bitPattern: j & 4) << 29
    let useSinPoly = (j & 2) == 0  // the polynomial selection mask for the sine
    x = x.addingProduct(y, Cephes.minusDP1)
    x = x.addingProduct(y, Cephes.minusDP2)
    x = x.addingProduct(y, Cephes.minusDP3)
    let signCos = UInt32(bitPattern: ~(j - 2) & 4) << 29

    let z = x * x
    var c = Cephes.cosP1.addingProduct(Cephes.cosP0, z)
    c = Cephes.cosP2.addingProduct(c, z)
    c = c * z
    c = (-(z * 0.5)).addingProduct(c, z)
    c = c + 1

    var s = Cephes.sinP1.addingProduct(Cephes.sinP0, z)
    s = Cephes.sinP2.addingProduct(s, z)
    s = s * z
    s = x.addingProduct(s, x)

    // The lanes pick one polynomial each; the other contributes +0 (`ysin1 + ysin2`).
    let sinValue = useSinPoly ? s + 0 : 0 + c
    let cosValue = useSinPoly ? c + 0 : 0 + s
    let sinOut = Float(bitPattern: sinValue.bitPattern ^ signSin ^ swapSin)
    let cosOut = Float(bitPattern: cosValue.bitPattern ^ signCos)
    return (sinOut, cosOut)
}

// MARK: - MT19937

/// The 32-bit Mersenne Twister (Matsumoto & Nishimura 1998), as `at::mt19937`.
struct MersenneTwister: Sendable {
    private static let n = 624, m = 397
    private var state: [UInt32]
    private var index: Int

    init(seed: UInt32) {
        state = [UInt32](repeating: 0, count: Self.n)
        state[0] = seed
        for i in 1..<Self.n {
            state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i)
        }
        index = Self.n
    }

    mutating func next() -> UInt32 {
        if index == Self.n { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    private mutating func twist() {
        for i in 0..<Self.n {
            let mixed = (state[i] & 0x8000_0000) | (state[(i + 1) % Self.n] & 0x7fff_ffff)
            var next = state[(i + Self.m) % Self.n] ^ (mixed >> 1)
            if state[(i + 1) % Self.n] & 1 != 0 { next ^= 0x9908_b0df }
            state[i] = next
        }
        index = 0
    }
}
