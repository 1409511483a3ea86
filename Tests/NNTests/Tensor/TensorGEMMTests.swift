import Foundation
import XCTest
@testable import NN
import Diffusion

/// Linear, convolution and attention (the sgemm-backed ops) against naive loops in Double,
/// plus run-to-run determinism. Tolerances: 1e-4 × sqrt(reduction length) on O(1) inputs,
/// well above Float rounding of a sum of that many products yet far below any indexing error.
final class TensorGEMMTests: XCTestCase {
    // MARK: linear

    func referenceLinear(_ x: Tensor, _ w: Tensor, _ b: Tensor?) -> Tensor {
        let out = w.shape[0], inF = w.shape[1], rows = x.count / inF
        var y = Tensor(shape: Array(x.shape.dropLast()) + [out])
        for r in 0..<rows { for o in 0..<out {
            var s = Double(b?.data[o] ?? 0)
            for i in 0..<inF { s += Double(x.data[r * inF + i]) * Double(w.data[o * inF + i]) }
            y.data[r * out + o] = Float(s)
        } }
        return y
    }

    func testLinear() {
        let x = Tensor.random([2, 13, 37], seed: 40)
        let w = Tensor.random([29, 37], seed: 41), b = Tensor.random([29], seed: 42)
        assertClose(x.linear(weight: w, bias: b), referenceLinear(x, w, b), tolerance: 1e-5, "with bias")
        assertClose(x.linear(weight: w, bias: nil), referenceLinear(x, w, nil), tolerance: 1e-5, "no bias")
        // A vector ([in] → [out]) and the time-embedding shape [B, 320] → [B, 1280].
        let v = Tensor.random([37], seed: 43)
        assertClose(v.linear(weight: w, bias: b), referenceLinear(v, w, b), tolerance: 1e-5, "rank 1")
        let t = Tensor.random([2, 320], seed: 44), wt = Tensor.random([1280, 320], in: -0.1...0.1, seed: 45)
        assertClose(t.linear(weight: wt, bias: nil), referenceLinear(t, wt, nil), tolerance: 1e-5, "time embedding")
    }

    // MARK: conv2d

    static func referenceConv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: Int, padding: Int) -> Tensor {
        let n = x.shape[0], cin = x.shape[1], h = x.shape[2], wd = x.shape[3]
        let cout = w.shape[0], k = w.shape[2]
        let ho = (h + 2 * padding - k) / stride + 1, wo = (wd + 2 * padding - k) / stride + 1
        var y = Tensor(shape: [n, cout, ho, wo])
        for s in 0..<n { for co in 0..<cout { for oy in 0..<ho { for ox in 0..<wo {
            var acc = Double(b?.data[co] ?? 0)
            for ci in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                let iy = oy * stride - padding + ky, ix = ox * stride - padding + kx
                if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
                acc += Double(x.data[((s * cin + ci) * h + iy) * wd + ix]) * Double(w.data[((co * cin + ci) * k + ky) * k + kx])
            } } }
            y.data[((s * cout + co) * ho + oy) * wo + ox] = Float(acc)
        } } } }
        return y
    }

    /// One conv case: random input and weights, through `conv2d`'s own choice and through every
    /// strategy that applies, each with the default band budget, 1-row bands and 3-row bands.
    func checkConv(n: Int, cin: Int, h: Int, w: Int, cout: Int, k: Int, stride: Int, padding: Int, bias: Bool,
                   seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let x = Tensor.random([n, cin, h, w], seed: seed)
        let wt = Tensor.random([cout, cin, k, k], seed: seed + 1)
        let b = bias ? Tensor.random([cout], seed: seed + 2) : nil
        let want = Self.referenceConv(x, wt, b, stride: stride, padding: padding)
        let tol = 1e-4 * Float(cin * k * k).squareRoot()
        let what = "\(n)×\(cin)×\(h)×\(w) → \(cout), k\(k) s\(stride) p\(padding)"
        assertClose(x.conv2d(weight: wt, bias: b, stride: stride, padding: padding), want, tolerance: tol, what, file: file, line: line)
        var strategies: [Tensor.ConvStrategy] = [.im2col]
        if stride == 1 { strategies.append(.shifted) }
        if k == 1 && stride == 1 && padding == 0 { strategies.append(.direct) }
        if k == 3 && stride == 1 && padding == 1 { strategies.append(.winograd) }
        for strategy in strategies {
            // Budgets of one and three output rows (per-row scratch is at most 9·max(Cin, Cout)·(W + 2p)).
            let perRow = 9 * max(cin, cout) * (w + 2 * padding)
            for budget in [Tensor.convColumnBudget, 1, 3 * perRow] {
                assertClose(x.conv2d(weight: wt, bias: b, stride: stride, padding: padding, columnBudget: budget, strategy: strategy),
                            want, tolerance: tol, what + " \(strategy), budget \(budget)", file: file, line: line)
            }
        }
    }

    func testConv3x3() {
        checkConv(n: 2, cin: 5, h: 9, w: 7, cout: 6, k: 3, stride: 1, padding: 1, bias: true, seed: 50)   // batch 2, non-square, odd
        checkConv(n: 1, cin: 3, h: 4, w: 11, cout: 4, k: 3, stride: 1, padding: 1, bias: false, seed: 53)
        checkConv(n: 1, cin: 4, h: 6, w: 5, cout: 3, k: 3, stride: 1, padding: 0, bias: true, seed: 56)   // no padding
        checkConv(n: 1, cin: 16, h: 16, w: 16, cout: 32, k: 3, stride: 1, padding: 1, bias: true, seed: 59)
        checkConv(n: 2, cin: 3, h: 5, w: 40, cout: 2, k: 3, stride: 1, padding: 1, bias: true, seed: 62)  // wide: shifted by default
    }

    func testConv3x3Stride2() {
        // SD's downsamplers: 3×3, stride 2, padding 1; even and odd sizes.
        checkConv(n: 2, cin: 4, h: 8, w: 8, cout: 5, k: 3, stride: 2, padding: 1, bias: true, seed: 60)
        checkConv(n: 1, cin: 3, h: 9, w: 6, cout: 2, k: 3, stride: 2, padding: 1, bias: true, seed: 63)
        checkConv(n: 1, cin: 2, h: 7, w: 10, cout: 3, k: 3, stride: 2, padding: 0, bias: false, seed: 66)  // the VAE encoder's pad-then-conv form
        // 1×1 and 2×1 images with stride 2: kernel taps fall entirely in the padding.
        checkConv(n: 1, cin: 2, h: 1, w: 1, cout: 3, k: 3, stride: 2, padding: 1, bias: true, seed: 69)
        checkConv(n: 1, cin: 2, h: 2, w: 1, cout: 3, k: 3, stride: 2, padding: 1, bias: true, seed: 72)
    }

    func testConv1x1() {
        checkConv(n: 2, cin: 7, h: 5, w: 3, cout: 4, k: 1, stride: 1, padding: 0, bias: true, seed: 80)
        checkConv(n: 1, cin: 3, h: 6, w: 6, cout: 2, k: 1, stride: 2, padding: 0, bias: false, seed: 83)
        checkConv(n: 1, cin: 3, h: 3, w: 4, cout: 2, k: 1, stride: 1, padding: 1, bias: true, seed: 86)
    }

    // MARK: attention

    func referenceAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, causal: Bool) -> Tensor {
        let b = q.shape[0], nq = q.shape[1], c = q.shape[2], nk = k.shape[1], d = c / heads
        var out = Tensor(shape: q.shape)
        for s in 0..<b { for h in 0..<heads { for i in 0..<nq {
            let visible = causal ? i + 1 : nk
            var scores = [Double](repeating: 0, count: visible)
            for j in 0..<visible {
                var dot = 0.0
                for e in 0..<d { dot += Double(q.data[(s * nq + i) * c + h * d + e]) * Double(k.data[(s * nk + j) * c + h * d + e]) }
                scores[j] = dot / Double(d).squareRoot()
            }
            let m = scores.max()!
            let ex = scores.map { Foundation.exp($0 - m) }
            let total = ex.reduce(0, +)
            for e in 0..<d {
                var acc = 0.0
                for j in 0..<visible { acc += ex[j] / total * Double(v.data[(s * nk + j) * c + h * d + e]) }
                out.data[(s * nq + i) * c + h * d + e] = Float(acc)
            }
        } } }
        return out
    }

    func checkAttention(b: Int, nq: Int, nk: Int, heads: Int, d: Int, causal: Bool, seed: UInt64,
                        file: StaticString = #filePath, line: UInt = #line) {
        // Scale 3 makes the softmax peaked enough that a wrong scale or mask shows.
        let q = Tensor.random([b, nq, heads * d], in: -3...3, seed: seed)
        let k = Tensor.random([b, nk, heads * d], in: -3...3, seed: seed + 1)
        let v = Tensor.random([b, nk, heads * d], seed: seed + 2)
        let want = referenceAttention(q, k, v, heads: heads, causal: causal)
        let what = "B\(b) Nq\(nq) Nk\(nk) H\(heads) D\(d)\(causal ? " causal" : "")"
        assertClose(Tensor.attention(q: q, k: k, v: v, heads: heads, causal: causal), want, tolerance: 2e-5, what, file: file, line: line)
        // Blocks of 16 queries (non-dividing): every block boundary and worker split exercised.
        assertClose(Tensor.attention(q: q, k: k, v: v, heads: heads, causal: causal, scoreBudget: 16 * nk), want,
                    tolerance: 2e-5, what + " (16-query blocks)", file: file, line: line)
    }

    func testSelfAttention() {
        checkAttention(b: 2, nq: 37, nk: 37, heads: 3, d: 8, causal: false, seed: 90)
        checkAttention(b: 1, nq: 64, nk: 64, heads: 8, d: 5, causal: false, seed: 93)
    }

    func testCrossAttention() {
        // The UNet's cross-attention: image tokens against CLIP's 77 tokens.
        checkAttention(b: 2, nq: 50, nk: 77, heads: 2, d: 16, causal: false, seed: 100)
    }

    func testFusedFewKeys() {
        // Head dim 40 with few keys (the UNet's cross-attention, 77 keys) in FusedAttention: a
        // single key block, key counts that are not a multiple of 16 (padding panels), partial tiles.
        checkAttention(b: 2, nq: 37, nk: 37, heads: 2, d: 40, causal: false, seed: 130)
        checkAttention(b: 1, nq: 100, nk: 77, heads: 3, d: 40, causal: false, seed: 133)
        checkAttention(b: 1, nq: 6, nk: 16, heads: 1, d: 40, causal: false, seed: 136)
    }

    func testFusedKernelTails() {
        // Head dims that are multiples of 40 take FusedAttention (tiles of 6
        // queries, chunks of 96, key blocks of 256, panels of 16 keys). 300 queries: three full
        // chunks and one of 12; 300 keys: a block of 256 and one of 44 real + 4 padding keys.
        checkAttention(b: 1, nq: 300, nk: 300, heads: 2, d: 40, causal: false, seed: 150)
        // Exactly one block (no padding); 97 queries: a chunk and a tile holding one query.
        checkAttention(b: 1, nq: 97, nk: 256, heads: 1, d: 40, causal: false, seed: 153)
        // 257 keys: the second block is one panel with a single real key; 8 heads, 2 batches.
        checkAttention(b: 2, nq: 13, nk: 257, heads: 8, d: 40, causal: false, seed: 156)
        // 600 queries (6 chunks + 24), 520 keys (blocks 256, 256, 8 + 8 padding).
        checkAttention(b: 1, nq: 600, nk: 520, heads: 1, d: 40, causal: false, seed: 159)
        // Head dim 80 (SD1.5's 32×32 blocks): two 40-column slabs in P·V.
        checkAttention(b: 1, nq: 101, nk: 270, heads: 3, d: 80, causal: false, seed: 162)
    }

    func testFusedOnlineSoftmaxRescales() {
        // Key norms growing with the key index: every block raises each row's running maximum,
        // so O and the sum are rescaled at every block. Shrinking norms: the first block holds the
        // maximum and later blocks' exponentials nearly vanish.
        for growing in [true, false] {
            let nk = 700, c = 80
            var k = Tensor.random([1, nk, c], seed: 170)
            for j in 0..<nk {
                let norm = Float(growing ? j : nk - j) / Float(nk) * 4
                for e in 0..<c { k.data[j * c + e] *= norm }
            }
            let q = Tensor.random([1, 50, c], in: -2...2, seed: 171), v = Tensor.random([1, nk, c], seed: 172)
            let want = referenceAttention(q, k, v, heads: 2, causal: false)
            assertClose(Tensor.attention(q: q, k: k, v: v, heads: 2), want, tolerance: 2e-5, growing ? "growing" : "shrinking")
        }
    }

    func testFusedBitIdenticalAcrossRuns() {
        // Many tasks over both workers; the output must not depend on scheduling.
        let q = Tensor.random([2, 300, 80], seed: 139), k = Tensor.random([2, 290, 80], seed: 140)
        let att = Tensor.attention(q: q, k: k, v: k, heads: 2)
        for _ in 0..<3 { XCTAssertEqual(bits(Tensor.attention(q: q, k: k, v: k, heads: 2)), bits(att)) }
    }

    func testCausalAttention() {
        // CLIP's text encoder: 77 tokens, query i sees keys 0...i.
        checkAttention(b: 2, nq: 77, nk: 77, heads: 4, d: 12, causal: true, seed: 110)
    }

    func testAttentionOneHeadEqualsSoftmaxOfProduct() {
        // One head, one query: the output is the softmax-weighted mean of the values.
        let q = Tensor(shape: [1, 1, 2], data: [1, 0])
        let k = Tensor(shape: [1, 2, 2], data: [2, 0, 0, 0])
        let v = Tensor(shape: [1, 2, 2], data: [1, 0, 0, 1])
        let p = Float(1 / (1 + Foundation.exp(-2 / 2.0.squareRoot())))  // softmax of [√2, 0]
        assertClose(Tensor.attention(q: q, k: k, v: v, heads: 1), Tensor(shape: [1, 1, 2], data: [p, 1 - p]), tolerance: 1e-6)
    }

    // MARK: determinism

    func testBitIdenticalAcrossRuns() {
        let x = Tensor.random([2, 32, 24, 20], seed: 120)
        let w = Tensor.random([48, 32, 3, 3], in: -0.2...0.2, seed: 121), b = Tensor.random([48], seed: 122)
        let conv = x.conv2d(weight: w, bias: b, padding: 1)
        let gw = Tensor.random([32], seed: 123), gb = Tensor.random([32], seed: 124)
        let norm = x.groupNorm(groups: 8, weight: gw, bias: gb, eps: 1e-5, fusedSiLU: true)
        let q = Tensor.random([2, 480, 64], seed: 125), k = Tensor.random([2, 480, 64], seed: 126)
        let att = Tensor.attention(q: q, k: k, v: q, heads: 4)
        for _ in 0..<3 {
            XCTAssertEqual(bits(x.conv2d(weight: w, bias: b, padding: 1)), bits(conv))
            XCTAssertEqual(bits(x.groupNorm(groups: 8, weight: gw, bias: gb, eps: 1e-5, fusedSiLU: true)), bits(norm))
            XCTAssertEqual(bits(Tensor.attention(q: q, k: k, v: q, heads: 4)), bits(att))
            XCTAssertEqual(bits(x.nchwToTokens().layerNorm(weight: gw, bias: gb, eps: 1e-5)),
                           bits(x.nchwToTokens().layerNorm(weight: gw, bias: gb, eps: 1e-5)))
        }
    }
}
