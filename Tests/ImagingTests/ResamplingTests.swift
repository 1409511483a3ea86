import Diffusion
import Foundation
import TestSupport
import XCTest
@testable import Imaging

/// Lanczos resizing against Pillow's `Image.resize(size, Image.LANCZOS)`, byte for byte
/// (`esrgan/lanczos.safetensors`; `esrgan/reference.json` holds the Python).
final class ResamplingTests: XCTestCase {
    func testLanczosMatchesPillowExactly() throws {
        let file = try Fixture.tensors("esrgan/lanczos")
        let source = try file.tensor("source")  // [17, 23, 3], byte values
        let image = try RGBImage(width: 23, height: 17, pixels: source.data.map { UInt8($0) })
        for (width, height) in [(40, 31), (11, 9), (23, 40), (5, 17)] {
            // np.asarray(Image.fromarray(source, 'RGB').resize((w, h), Image.LANCZOS))
            let expected = try file.tensor("\(width)x\(height)").data.map { UInt8($0) }
            let resized = image.resizedLanczos(width: width, height: height)
            XCTAssertEqual([resized.width, resized.height], [width, height])
            let differing = zip(resized.pixels, expected).filter { $0 != $1 }.count
            XCTAssertEqual(differing, 0, "\(width)x\(height): \(differing) bytes differ from Pillow's")
        }
    }

    func testTheSameSizeIsTheSameImage() throws {
        let image = try RGBImage(width: 2, height: 1, pixels: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(image.resizedLanczos(width: 2, height: 1), image)
    }
}
