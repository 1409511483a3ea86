import NN
import XCTest

/// The in-place forms (RRDBNet's, and the group norm the resnets apply to a map they hand over) give
/// what the allocating ops give, bit for bit.
final class InPlaceTests: XCTestCase {
    func testInPlaceFormsMatchTheAllocatingOps() {
        let a = Tensor(shape: [1, 2, 3, 5], data: (0..<30).map { Float($0) * 0.37 - 4 })
        let b = Tensor(shape: [1, 3, 3, 5], data: (0..<45).map { Float($0 % 7) - 3 })
        var grown = a
        grown.reserveChannels(5)
        grown.appendChannels(b)
        XCTAssertEqual(grown, Tensor.concatChannels(a, b))

        var leaky = a
        leaky.formLeakyReLU(slope: 0.2)
        XCTAssertEqual(leaky, a.leakyReLU(slope: 0.2))
        XCTAssertEqual(leaky.data.first, -4 * 0.2)

        var sum = a
        sum.formScaledSum(0.2, plus: a)
        XCTAssertEqual(sum, a * 0.2 + a)
    }

    /// TAESD's blocks: ReLU and the residual sum in place, the bit patterns of the allocating ops
    /// (negative zero, subnormals, infinities and NaN included) over more than one core's share.
    func testReLUAndPlainSumInPlaceAreBitForBitTheAllocatingOps() {
        let specials: [Float] = [-0.0, 0, .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .infinity, -.infinity, .nan, -1e-40]
        let n = 3 * (1 << 15) + 5
        let x = Tensor(shape: [n], data: (0..<n).map { $0 < specials.count ? specials[$0] : Float(($0 * 7919) % 2001) * 0.013 - 13 })
        let y = Tensor(shape: [n], data: (0..<n).map { Float(($0 * 104_729) % 1999) * 1e-3 - 1 })
        var relu = x
        relu.formReLU()
        XCTAssertEqual(relu.data.map(\.bitPattern), x.relu().data.map(\.bitPattern))
        var sum = x
        sum.formScaledSum(1, plus: y)
        XCTAssertEqual(sum.data.map(\.bitPattern), (x + y).data.map(\.bitPattern))
    }

    func testGroupNormInPlaceMatchesTheAllocatingOpAndLeavesASharedCopyAlone() {
        // Batch 2, 4 groups of 3 channels, an odd 7×5 plane (a ragged vector tail per channel).
        let x = Tensor(shape: [2, 12, 7, 5], data: (0..<840).map { Float(($0 * 37) % 101) * 0.05 + 9 })
        let w = Tensor(shape: [12], data: (0..<12).map { 0.5 + Float($0) * 0.1 })
        let b = Tensor(shape: [12], data: (0..<12).map { Float($0) * 0.3 - 2 })
        for silu in [false, true] {
            var normalized = x  // shares x's buffer until written
            normalized.formGroupNorm(groups: 4, weight: w, bias: b, eps: 1e-5, fusedSiLU: silu)
            XCTAssertEqual(normalized, x.groupNorm(groups: 4, weight: w, bias: b, eps: 1e-5, fusedSiLU: silu), "silu \(silu)")
            XCTAssertEqual(x.data[0], 9, "the shared original is untouched")
        }
    }
}
