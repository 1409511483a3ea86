import Foundation
import XCTest
@testable import NN
import Diffusion

/// SplitMix64: a tiny seeded generator, so every test input is the same on every run.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Tensor {
    /// Uniform random values in `range`, from a seeded generator.
    static func random(_ shape: [Int], in range: ClosedRange<Float> = -1...1, seed: UInt64) -> Tensor {
        var g = SeededGenerator(seed: seed)
        return Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float.random(in: range, using: &g) })
    }
}

/// Fails unless `actual` has `expected`'s shape and every element is within `tolerance`.
func assertClose(_ actual: Tensor, _ expected: Tensor, tolerance: Float, _ what: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "shape \(what)", file: file, line: line)
    guard actual.shape == expected.shape else { return }
    var worst: Float = 0, at = 0
    for i in 0..<actual.count {
        let e = abs(actual.data[i] - expected.data[i])
        if !(e <= worst) { worst = e; at = i }  // NaN counts as worst
    }
    XCTAssert(worst <= tolerance, "\(what): max abs error \(worst) at \(at) (got \(actual.data[at]), want \(expected.data[at])) > \(tolerance)",
              file: file, line: line)
}

/// The bit patterns, for determinism checks (NaN-safe, -0 ≠ +0).
func bits(_ t: Tensor) -> [UInt32] { t.data.map(\.bitPattern) }

/// Shape, arithmetic, batch and embedding ops against direct index arithmetic.
final class TensorTests: XCTestCase {
    func testUpsampleNearest2x() {
        let x = Tensor.random([2, 3, 5, 4], seed: 1)
        let y = x.upsampleNearest2x()
        var want = Tensor(shape: [2, 3, 10, 8])
        for p in 0..<6 { for oy in 0..<10 { for ox in 0..<8 {
            want.data[(p * 10 + oy) * 8 + ox] = x.data[(p * 5 + oy / 2) * 4 + ox / 2]
        } } }
        XCTAssertEqual(y, want)
    }

    func testConcatChannels() {
        let a = Tensor.random([2, 3, 4, 5], seed: 2), b = Tensor.random([2, 2, 4, 5], seed: 3)
        let y = Tensor.concatChannels(a, b)
        XCTAssertEqual(y.shape, [2, 5, 4, 5])
        for n in 0..<2 { for c in 0..<5 { for i in 0..<20 {
            let want = c < 3 ? a.data[(n * 3 + c) * 20 + i] : b.data[(n * 2 + c - 3) * 20 + i]
            XCTAssertEqual(y.data[(n * 5 + c) * 20 + i], want)
        } } }
    }

    func testTokensRoundTripAndLayout() {
        // 37 × 45 spans several 32-wide transpose tiles with ragged edges.
        let x = Tensor.random([2, 37, 5, 9], seed: 4)
        let t = x.nchwToTokens()
        XCTAssertEqual(t.shape, [2, 45, 37])
        for b in 0..<2 { for c in 0..<37 { for p in 0..<45 {
            XCTAssertEqual(t.data[(b * 45 + p) * 37 + c], x.data[(b * 37 + c) * 45 + p])
        } } }
        XCTAssertEqual(t.tokensToNCHW(height: 5, width: 9), x)
    }

    func testArithmetic() {
        let a = Tensor.random([3, 70_000], seed: 5), b = Tensor.random([3, 70_000], seed: 6)
        let sum = a + b, diff = a - b, scaled = a * 0.5
        for i in stride(from: 0, to: a.count, by: 997) {
            XCTAssertEqual(sum.data[i], a.data[i] + b.data[i])
            XCTAssertEqual(diff.data[i], a.data[i] - b.data[i])
            XCTAssertEqual(scaled.data[i], a.data[i] * 0.5)
        }
        XCTAssertEqual(sum.data.last, a.data.last! + b.data.last!)
        let shifted = a + 0.25
        let clamped = (a * 3).clamped(to: -1...0.5)
        for i in stride(from: 0, to: a.count, by: 991) {
            XCTAssertEqual(shifted.data[i], a.data[i] + 0.25)
            XCTAssertEqual(clamped.data[i], min(max(a.data[i] * 3, -1), 0.5))
        }
        XCTAssertTrue(Tensor(shape: [1], data: [.nan]).clamped(to: 0...1).data[0].isNaN)
    }

    func testAddingChannelBias() {
        let x = Tensor.random([2, 3, 4, 5], seed: 7)
        let perChannel = Tensor.random([3], seed: 8), perSample = Tensor.random([2, 3], seed: 9)
        let y1 = x.addingChannelBias(perChannel), y2 = x.addingChannelBias(perSample)
        for n in 0..<2 { for c in 0..<3 { for i in 0..<20 {
            let j = (n * 3 + c) * 20 + i
            XCTAssertEqual(y1.data[j], x.data[j] + perChannel.data[c])
            XCTAssertEqual(y2.data[j], x.data[j] + perSample.data[n * 3 + c])
        } } }
    }

    func testBatchConcatAndSlice() {
        let a = Tensor.random([1, 4, 3, 3], seed: 10), b = Tensor.random([2, 4, 3, 3], seed: 11)
        let ab = Tensor.concatBatch([a, b])
        XCTAssertEqual(ab.shape, [3, 4, 3, 3])
        XCTAssertEqual(ab.slice(batch: 0), a)
        XCTAssertEqual(ab.slice(batch: 1..<3), b)
        XCTAssertEqual(ab.slice(batch: 2), b.slice(batch: 1))
        XCTAssertEqual(Tensor.concatBatch([ab.slice(batch: 0..<1), ab.slice(batch: 1..<3)]), ab)
    }

    /// Reference: diffusers `get_timestep_embedding` evaluated in Double.
    func testTimestepEmbedding() {
        func reference(_ ts: [Float], dim: Int, flip: Bool, shift: Double) -> Tensor {
            let half = dim / 2
            var out = Tensor(shape: [ts.count, dim])
            for (r, t) in ts.enumerated() { for i in 0..<half {
                let a = Double(t) * Foundation.exp(-Foundation.log(10000.0) * Double(i) / (Double(half) - shift))
                out.data[r * dim + i] = Float(flip ? Foundation.cos(a) : Foundation.sin(a))
                out.data[r * dim + half + i] = Float(flip ? Foundation.sin(a) : Foundation.cos(a))
            } }
            return out
        }
        let ts: [Float] = [0, 1, 37.5, 500, 999]
        // Float32 angles of up to 999 rad carry ~6e-5 rad of rounding, as torch's do.
        assertClose(Tensor.timestepEmbedding(ts, dim: 320), reference(ts, dim: 320, flip: true, shift: 0),
                    tolerance: 2e-4, "flip, shift 0")
        assertClose(Tensor.timestepEmbedding(ts, dim: 64, flipSinToCos: false, downscaleFreqShift: 1),
                    reference(ts, dim: 64, flip: false, shift: 1), tolerance: 2e-4, "no flip, shift 1")
        // t = 0: cos 0 = 1 in the first half, sin 0 = 0 in the second.
        let zero = Tensor.timestepEmbedding([0], dim: 8)
        XCTAssertEqual(zero.data, [1, 1, 1, 1, 0, 0, 0, 0])
        // An odd width gets a zero column at the end, as diffusers pads.
        let odd = Tensor.timestepEmbedding([3], dim: 7)
        XCTAssertEqual(odd.shape, [1, 7])
        XCTAssertEqual(odd.data[6], 0)
    }
}
