import NN
import XCTest

/// The in-place forms RRDBNet uses give what the allocating ops give.
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
}
