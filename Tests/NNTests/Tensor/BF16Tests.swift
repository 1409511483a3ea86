import CBF16
import Foundation
import TestSupport
import XCTest
@testable import NN

/// bf16 products: the rounding, oneDNN's matmul glue, the emulation and what this CPU is said to have.
final class BF16Tests: XCTestCase {
    /// Round to nearest even, as torch rounds:
    /// `torch.tensor(xs, dtype=torch.float32).to(torch.bfloat16).view(torch.int16)` (as unsigned hex).
    func testRoundingMatchesTorch() {
        let xs: [Float] = [1.0, 1.00390625, 1.01171875, 1.0078125 + 0x1p-20, -3.14159265, 65504.0, 3.0e38, 1e-40,
                           .infinity, -.infinity, 0.1, -0.0]
        let torch: [UInt16] = [0x3f80, 0x3f80, 0x3f82, 0x3f81, 0xc049, 0x4780, 0x7f62, 0x0001, 0x7f80, 0xff80, 0x3dcd, 0x8000]
        var packed = [UInt16](repeating: 0, count: xs.count)
        sd_bf16_pack(xs, 1, xs.count, xs.count, &packed)
        XCTAssertEqual(packed.map { String($0, radix: 16) }, torch.map { String($0, radix: 16) })
        var rounded = [Float](repeating: 0, count: xs.count)
        sd_bf16_round(xs, 1, xs.count, xs.count, &rounded)
        XCTAssertEqual(rounded.map { UInt16($0.bitPattern >> 16) }, torch, "the fp32 form is the bf16 bits with a zero tail")
        XCTAssertEqual(rounded.map { $0.bitPattern & 0xffff }, [UInt32](repeating: 0, count: xs.count))
        var nan: [UInt16] = [0]
        sd_bf16_pack([Float.nan], 1, 1, 1, &nan)
        XCTAssertTrue(Float(bitPattern: UInt32(nan[0]) << 16).isNaN, "NaN stays NaN, never infinity")
    }

    /// Every orientation, a row stride past the width, alpha and beta: `C = alpha·op(A)·op(B) + beta·C`.
    struct Shape { let m, n, k, lda, ldb, ldc: Int; let transA, transB: Bool; let alpha, beta: Float }

    static let shapes: [Shape] = [
        Shape(m: 7, n: 5, k: 9, lda: 9, ldb: 5, ldc: 5, transA: false, transB: false, alpha: 1, beta: 0),
        Shape(m: 33, n: 17, k: 40, lda: 33, ldb: 45, ldc: 20, transA: true, transB: true, alpha: 0.125, beta: 1),
        Shape(m: 64, n: 48, k: 77, lda: 80, ldb: 77, ldc: 48, transA: false, transB: true, alpha: 1, beta: 1),
        Shape(m: 16, n: 130, k: 8, lda: 16, ldb: 131, ldc: 140, transA: true, transB: false, alpha: 2, beta: 0),
    ]

    func inputs(_ s: Shape, seed: UInt64) -> (a: [Float], b: [Float], c: [Float]) {
        var state = seed
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
        let aCount = (s.transA ? s.k : s.m) * s.lda
        let bCount = (s.transB ? s.n : s.k) * s.ldb
        return ((0..<aCount).map { _ in next() }, (0..<bCount).map { _ in next() }, (0..<s.m * s.ldc).map { _ in next() })
    }

    /// The product in Double of the given inputs, as `C` would hold it after the call.
    func reference(_ s: Shape, _ a: [Float], _ b: [Float], _ c: [Float]) -> [Float] {
        var out = c
        for i in 0..<s.m {
            for j in 0..<s.n {
                var sum = 0.0
                for p in 0..<s.k {
                    let x = s.transA ? a[p * s.lda + i] : a[i * s.lda + p]
                    let y = s.transB ? b[j * s.ldb + p] : b[p * s.ldb + j]
                    sum += Double(x) * Double(y)
                }
                out[i * s.ldc + j] = Float(Double(s.alpha) * sum + Double(s.beta) * Double(c[i * s.ldc + j]))
            }
        }
        return out
    }

    func rounded(_ xs: [Float]) -> [Float] {
        var out = xs
        sd_bf16_round(xs, 1, xs.count, xs.count, &out)
        return out
    }

    /// The glue to oneDNN's matmul (strides, orientations, alpha as an output scale, beta as a sum
    /// post-op, a user scratchpad) run with fp32 inputs, which oneDNN has on every x86-64 CPU: only
    /// the input type differs on a CPU with bf16. Columns past `n` in C are left alone.
    func testOneDNNMatmulGlueMatchesTheProductInFP32() throws {
        var reason: UnsafePointer<CChar>?
        XCTAssertEqual(sd_dnnl_open(&reason), 1, "oneDNN did not open: \(reason.map { String(cString: $0) } ?? "?") (make deps installs libdnnl-dev)")
        for (index, s) in Self.shapes.enumerated() {
            var (a, b, c) = inputs(s, seed: UInt64(index + 1))
            let expected = reference(s, a, b, c)
            let ran = BLAS.dnnlGemm(bf16: false, transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: s.alpha,
                                    a: &a, lda: s.lda, b: &b, ldb: s.ldb, beta: s.beta, c: &c, ldc: s.ldc)
            XCTAssertTrue(ran, "shape \(index)")
            // fp32 sums of k products of values in [-1, 1]: well within 1e-5 relative to k.
            assertClose(c, expected, tolerance: 1e-5 * Float(s.k), "shape \(index)")
        }
    }

    /// The emulation is an fp32 product of the rounded inputs, at any orientation and stride; and it is
    /// within bf16's 2⁻⁸ relative error of the fp32 product.
    func testEmulatedProductIsTheFP32ProductOfRoundedInputs() throws {
        let saved = BF16Support.detected
        BF16Support.detected = .success(.emulated)
        defer { BF16Support.detected = saved }
        for (index, s) in Self.shapes.enumerated() {
            var (a, b, c) = inputs(s, seed: UInt64(index + 10))
            let exact = reference(s, a, b, c)
            let ofRounded = reference(s, rounded(a), rounded(b), c)
            BLAS.withPrecision(.bf16) {
                BLAS.sgemm(transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: s.alpha, a: &a, lda: s.lda,
                           b: &b, ldb: s.ldb, beta: s.beta, c: &c, ldc: s.ldc)
            }
            XCTAssertEqual(BLAS.precision, .fp32, "the precision comes back after the block")
            assertClose(c, ofRounded, tolerance: 1e-5 * Float(s.k), "shape \(index): the rounded inputs' product")
            let difference = zip(c, exact).map { abs($0 - $1) }.max() ?? 0
            XCTAssertGreaterThan(difference, 1e-4, "shape \(index): the inputs were rounded")
            XCTAssertLessThan(difference, Float(s.k) * abs(s.alpha) * 2 * 0x1p-8, "shape \(index): within bf16's error")
        }
    }

    /// What the machine is said to have follows /proc/cpuinfo: bf16 on oneDNN exactly when the CPU
    /// lists avx512_bf16 or amx_bf16; `SDREPL_BF16` turns it off or asks for the emulation.
    func testDetectionFollowsTheCPUFlagsAndTheEnvironment() throws {
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
        let hasBF16 = flags.contains("avx512_bf16") || flags.contains("amx_bf16")
        switch BF16Support.detect(environment: [:]) {
        case .success(let backend):
            XCTAssertTrue(hasBF16, "bf16 found on a CPU whose flags have neither avx512_bf16 nor amx_bf16")
            XCTAssertEqual(backend, .oneDNN)
        case .failure(let unavailable):
            XCTAssertFalse(hasBF16, "the CPU lists bf16 but oneDNN's matmul was not found: \(unavailable)")
            XCTAssertTrue(unavailable.description.contains("no bf16 instructions"), unavailable.description)
        }
        guard case .failure(let off) = BF16Support.detect(environment: ["SDREPL_BF16": "off"]) else {
            return XCTFail("SDREPL_BF16=off still found bf16")
        }
        XCTAssertTrue(off.description.contains("SDREPL_BF16=off"), off.description)
        XCTAssertEqual(try BF16Support.detect(environment: ["SDREPL_BF16": "emulate"]).get(), .emulated)
    }

    /// On a CPU with bf16, oneDNN's products equal the emulation's within fp32 summation order.
    func testOneDNNBF16MatchesTheEmulationWhereTheCPUHasIt() throws {
        guard BF16Support.detect(environment: [:]).isSuccess else {
            throw XCTSkip("this CPU has no bf16 instructions: testDetectionFollowsTheCPUFlagsAndTheEnvironment checks that")
        }
        for (index, s) in Self.shapes.enumerated() {
            var (a, b, c) = inputs(s, seed: UInt64(index + 20))
            let ofRounded = reference(s, rounded(a), rounded(b), c)
            XCTAssertTrue(BLAS.dnnlGemm(bf16: true, transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: s.alpha,
                                        a: &a, lda: s.lda, b: &b, ldb: s.ldb, beta: s.beta, c: &c, ldc: s.ldc), "shape \(index)")
            assertClose(c, ofRounded, tolerance: 1e-5 * Float(s.k), "shape \(index)")
        }
    }
}

private extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}
