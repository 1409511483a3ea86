import Foundation
import XCTest
@testable import NN
import Diffusion

/// Activations, softmax, norms and FastMath against libm in Double.
final class TensorMathTests: XCTestCase {
    func testFastExpMatchesLibm() {
        var worst: Double = 0
        var x: Float = -87
        while x < 88 {
            let want = Foundation.exp(Double(x))
            worst = max(worst, abs(Double(FastMath.exp(x)) - want) / want)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 3e-7, "relative error")
        XCTAssertEqual(FastMath.exp(-100), 0)
        XCTAssertEqual(FastMath.exp(-.infinity), 0)
        XCTAssertEqual(FastMath.exp(0), 1)
    }

    func testFastErfMatchesLibm() {
        var worst: Double = 0
        var x: Float = -6
        while x < 6 {
            worst = max(worst, abs(Double(FastMath.erf(x)) - Foundation.erf(Double(x))))
            x += 0.00731
        }
        XCTAssertLessThan(worst, 5e-7, "absolute error")
    }

    func testSiLU() {
        let x = Tensor.random([3, 50_001], in: -12...12, seed: 20)
        let want = Tensor(shape: x.shape, data: x.data.map { Float(Double($0) / (1 + Foundation.exp(-Double($0)))) })
        assertClose(x.silu(), want, tolerance: 1e-5)
    }

    func testGELUIsExactErfForm() {
        let x = Tensor.random([2, 40_003], in: -8...8, seed: 21)
        let want = Tensor(shape: x.shape, data: x.data.map { v in
            let d = Double(v); return Float(0.5 * d * (1 + Foundation.erf(d / 2.0.squareRoot())))
        })
        assertClose(x.gelu(), want, tolerance: 4e-6)
        // The tanh approximation differs by 4.4e-4 at x = 2.5, far beyond the tolerance: it would fail here.
        let tanhForm = Float(0.5 * 2.5 * (1 + tanh(0.7978845608 * (2.5 + 0.044715 * 2.5 * 2.5 * 2.5))))
        XCTAssertGreaterThan(abs(Tensor(shape: [1], data: [2.5]).gelu().data[0] - tanhForm), 4e-4)
    }

    func testQuickGELU() {
        let x = Tensor.random([77, 300], in: -10...10, seed: 22)
        let want = Tensor(shape: x.shape, data: x.data.map { v in
            let d = Double(v); return Float(d / (1 + Foundation.exp(-1.702 * d)))
        })
        assertClose(x.quickGELU(), want, tolerance: 1e-5)
    }

    func testGEGLU() {
        let x = Tensor.random([2, 33, 2 * 70], in: -5...5, seed: 23)
        var want = Tensor(shape: [2, 33, 70])
        for r in 0..<66 { for i in 0..<70 {
            let a = Double(x.data[r * 140 + i]), g = Double(x.data[r * 140 + 70 + i])
            want.data[r * 70 + i] = Float(a * 0.5 * g * (1 + Foundation.erf(g / 2.0.squareRoot())))
        } }
        assertClose(x.geglu(), want, tolerance: 2e-5)
    }

    func testSoftmax() {
        // Logits up to ±60 would overflow exp without the max subtraction.
        let x = Tensor.random([5, 7, 131], in: -60...60, seed: 24)
        var want = Tensor(shape: x.shape)
        for r in 0..<35 {
            let row = x.data[(r * 131)..<((r + 1) * 131)].map(Double.init)
            let m = row.max()!
            let e = row.map { Foundation.exp($0 - m) }
            let s = e.reduce(0, +)
            for i in 0..<131 { want.data[r * 131 + i] = Float(e[i] / s) }
        }
        assertClose(x.softmax(), want, tolerance: 1e-6)
    }

    /// Reference: mean and biased variance in Double over each (sample, group).
    func referenceGroupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, eps: Double, silu: Bool) -> Tensor {
        let n = x.shape[0], c = x.shape[1], spatial = x.count / (n * c), per = c / groups
        var out = Tensor(shape: x.shape)
        for s in 0..<n { for g in 0..<groups {
            let start = (s * c + g * per) * spatial, end = start + per * spatial
            let vals = x.data[start..<end].map(Double.init)
            let mean = vals.reduce(0, +) / Double(vals.count)
            let variance = vals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(vals.count)
            for i in start..<end {
                let ch = (i / spatial) % c
                var y = (Double(x.data[i]) - mean) / (variance + eps).squareRoot() * Double(weight.data[ch]) + Double(bias.data[ch])
                if silu { y = y / (1 + Foundation.exp(-y)) }
                out.data[i] = Float(y)
            }
        } }
        return out
    }

    func testGroupNorm() {
        // Odd spatial size (7×5), batch 2, 4 groups of 3 channels, offset so the mean is far from 0.
        let x = Tensor.random([2, 12, 7, 5], in: 9...11, seed: 25)
        let w = Tensor.random([12], in: 0.5...1.5, seed: 26), b = Tensor.random([12], seed: 27)
        assertClose(x.groupNorm(groups: 4, weight: w, bias: b, eps: 1e-5),
                    referenceGroupNorm(x, groups: 4, weight: w, bias: b, eps: 1e-5, silu: false), tolerance: 2e-4)
        assertClose(x.groupNorm(groups: 4, weight: w, bias: b, eps: 1e-5, fusedSiLU: true),
                    referenceGroupNorm(x, groups: 4, weight: w, bias: b, eps: 1e-5, silu: true), tolerance: 2e-4, "fused SiLU")
        // eps inside the square root matters on a near-constant group: eps = 1 dominates the variance.
        let flat = Tensor.random([1, 2, 3, 3], in: 0.99...1.01, seed: 28)
        let one = Tensor(shape: [2], repeating: 1), zero = Tensor(shape: [2])
        assertClose(flat.groupNorm(groups: 1, weight: one, bias: zero, eps: 1),
                    referenceGroupNorm(flat, groups: 1, weight: one, bias: zero, eps: 1, silu: false), tolerance: 1e-6, "eps 1")
    }

    func testGroupNormLargeGroupAndSequenceShape() {
        // 3-D input (N, C, L) and groups of 40 000 elements, where Float accumulation would drift.
        let x = Tensor.random([1, 64, 5000], in: 99...101, seed: 29)
        let w = Tensor.random([64], seed: 30), b = Tensor.random([64], seed: 31)
        assertClose(x.groupNorm(groups: 8, weight: w, bias: b, eps: 1e-6),
                    referenceGroupNorm(x, groups: 8, weight: w, bias: b, eps: 1e-6, silu: false), tolerance: 2e-4)
    }

    func testLayerNorm() {
        let x = Tensor.random([2, 77, 83], in: -3...5, seed: 32)
        let w = Tensor.random([83], seed: 33), b = Tensor.random([83], seed: 34)
        var want = Tensor(shape: x.shape)
        for r in 0..<154 {
            let row = x.data[(r * 83)..<((r + 1) * 83)].map(Double.init)
            let mean = row.reduce(0, +) / 83
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 83
            for i in 0..<83 {
                want.data[r * 83 + i] = Float((row[i] - mean) / (variance + 1e-5).squareRoot() * Double(w.data[i]) + Double(b.data[i]))
            }
        }
        assertClose(x.layerNorm(weight: w, bias: b, eps: 1e-5), want, tolerance: 1e-5)
    }
}
