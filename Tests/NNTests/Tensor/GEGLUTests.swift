import Foundation
import XCTest
@testable import NN
import TestSupport

/// The fused projection and gate of the feed-forward against a Double reference of diffusers'
/// `GEGLU`: `h = x @ W.T + b; a, g = h.chunk(2, -1); a * F.gelu(g)` (exact erf GELU).
final class GEGLUTests: XCTestCase {
    func reference(_ x: Tensor, _ w: Tensor, _ b: Tensor) -> Tensor {
        let inner = w.shape[0] / 2, k = w.shape[1], rows = x.count / k
        var want = Tensor(shape: Array(x.shape.dropLast()) + [inner])
        for r in 0..<rows { for i in 0..<inner {
            var a = Double(b.data[i]), g = Double(b.data[inner + i])
            for j in 0..<k {
                a += Double(x.data[r * k + j]) * Double(w.data[i * k + j])
                g += Double(x.data[r * k + j]) * Double(w.data[(inner + i) * k + j])
            }
            want.data[r * inner + i] = Float(a * 0.5 * g * (1 + Foundation.erf(g / 2.0.squareRoot())))
        } }
        return want
    }

    func testFusedMatchesReferenceInOneBlockAndInMany() {
        let x = Tensor.random([2, 37, 24], in: -1...1, seed: 5)
        let w = Tensor.random([2 * 40, 24], in: -0.5...0.5, seed: 6)
        let b = Tensor.random([2 * 40], in: -0.5...0.5, seed: 7)
        let want = reference(x, w, b)
        assertClose(x.linearGEGLU(weight: w, bias: b), want, tolerance: 2e-5)
        // 3 rows per block: 25 blocks, the last one short.
        assertClose(x.linearGEGLU(weight: w, bias: b, blockFloats: 3 * 80), want, tolerance: 2e-5)
        // Without a bias, against the unfused path.
        assertClose(x.linearGEGLU(weight: w, bias: nil, blockFloats: 7 * 80), x.linear(weight: w, bias: nil).geglu(), tolerance: 1e-6)
    }
}
