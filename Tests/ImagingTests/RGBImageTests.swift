import Foundation
import TestSupport
import XCTest

@testable import Imaging

final class RGBImageTests: XCTestCase {
    /// Reference: `(np.float32(x) * 255).round().astype("uint8")` (diffusers `numpy_to_pil`) gives
    /// 0.5 -> 128 (127.5, even), 0.7 -> 178 (178.5 in float32, even), 0.1 -> 26 (25.5),
    /// np.float32(2.5/255) -> 2 (2.5 exactly), np.float32(1.5/255) -> 2, 0.998 -> 254, 1 -> 255.
    func testUnitFloatsRoundHalfToEvenLikeNumpy() throws {
        let values: [Float] = [0.5, 0.7, 0.1, Float(2.5 / 255), Float(1.5 / 255), 0.998, 1.0, 0.25, 0.0]
        let expected: [UInt8] = [128, 178, 26, 2, 2, 254, 255, 64, 0]
        XCTAssertEqual(values.map(RGBImage.unitToByte), expected)
    }

    func testOutOfRangeAndNaNAreClamped() {
        XCTAssertEqual([-0.3, 1.7, .nan, .infinity, -.infinity].map(RGBImage.unitToByte), [0, 255, 0, 255, 0])
    }

    func testPlanarFloatsBecomeInterleavedRows() throws {
        // 2x1 image: R plane [1, 0], G plane [0, 0.5], B plane [0.1, 0.7].
        let image = try RGBImage(planarUnitFloats: [1, 0, 0, 0.5, 0.1, 0.7], width: 2, height: 1)
        XCTAssertEqual(image.pixels, [255, 0, 26, 0, 128, 178])
    }

    func testScaledUpRepeatsEachPixel() throws {
        let image = try RGBImage(width: 2, height: 1, pixels: [1, 2, 3, 4, 5, 6])
        let big = try image.scaledUp(by: 2)
        XCTAssertEqual([big.width, big.height], [4, 2])
        XCTAssertEqual(big.pixels, [1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6, 1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6])
        XCTAssertEqual(try image.scaledUp(by: 1), image)
        XCTAssertThrowsError(try image.scaledUp(by: 0))
    }

    func testSizeMismatchThrows() {
        XCTAssertThrowsError(try RGBImage(planarUnitFloats: [0, 0, 0], width: 2, height: 1))
        XCTAssertThrowsError(try RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 0, count: 11)))
        XCTAssertThrowsError(try RGBImage(width: 0, height: 2, pixels: []))
    }

    /// PIL's `ImageOps.exif_transpose` methods on a 3×2 image whose pixel i has red 3i:
    /// `Image.fromarray(np.arange(18, dtype=np.uint8).reshape(2, 3, 3)).transpose(m)` for
    /// m = FLIP_LEFT_RIGHT, ROTATE_180, FLIP_TOP_BOTTOM, TRANSPOSE, ROTATE_270, TRANSVERSE, ROTATE_90
    /// (orientations 2–8), red channel // 3, row by row.
    func testEXIFOrientationsTurnAsPIL() throws {
        let image = try RGBImage(width: 3, height: 2, pixels: (0..<18).map(UInt8.init))
        let expected: [Int: (size: [Int], order: [UInt8])] = [
            2: ([3, 2], [2, 1, 0, 5, 4, 3]), 3: ([3, 2], [5, 4, 3, 2, 1, 0]), 4: ([3, 2], [3, 4, 5, 0, 1, 2]),
            5: ([2, 3], [0, 3, 1, 4, 2, 5]), 6: ([2, 3], [3, 0, 4, 1, 5, 2]), 7: ([2, 3], [5, 2, 4, 1, 3, 0]),
            8: ([2, 3], [2, 5, 1, 4, 0, 3]),
        ]
        for (orientation, (size, order)) in expected {
            let turned = image.oriented(exif: orientation)
            XCTAssertEqual([turned.width, turned.height], size, "orientation \(orientation)")
            XCTAssertEqual(stride(from: 0, to: turned.pixels.count, by: 3).map { turned.pixels[$0] / 3 }, order, "orientation \(orientation)")
        }
        XCTAssertEqual(image.oriented(exif: 1), image)
        XCTAssertEqual(image.oriented(exif: 9), image, "out of range: as stored")
    }

    /// A portrait photo as phones store it (`exif/orientation6.jpg`, written by PIL with Orientation
    /// 6, `make_exif_fixtures.py`): read turned by its orientation it is upright, 8×16, as A1111
    /// shows it; read as stored (the default, which old transcripts replay) it stays 16×8.
    func testAPhotosOrientationIsAppliedWhenItsPixelsAreRead() throws {
        let url = Fixture.url("exif/orientation6.jpg")
        let decoded = try JPEGFile.decode(try Fixture.bytes("exif/orientation6.jpg"))
        XCTAssertEqual(decoded.orientation, 6)
        XCTAssertEqual([decoded.image.width, decoded.image.height], [16, 8], "stored sideways")
        XCTAssertEqual(try ImageRecipeReader.pixels(url), decoded.image)
        XCTAssertEqual(try ImageRecipeReader.pixelsAndAlpha(url).exifOrientation, 6)
        let read = try ImageRecipeReader.pixels(url, turnedByEXIF: true)
        XCTAssertEqual([read.width, read.height], [8, 16])
        XCTAssertEqual(read, decoded.image.oriented(exif: 6))
        // The top-left block of the upright picture is the stored bottom-left one: (0, 200, 255).
        XCTAssertEqual(Array(read.pixels[0..<3]).map { Int($0) / 8 }, [0, 200 / 8, 255 / 8])
    }
}

/// A deterministic test image with smooth gradients (JPEG-friendly) and a few sharp features.
func makeTestImage(width: Int = 64, height: Int = 48) -> RGBImage {
    var pixels = [UInt8](repeating: 0, count: width * height * 3)
    for y in 0..<height {
        for x in 0..<width {
            let i = 3 * (y * width + x)
            pixels[i] = UInt8(x * 255 / max(width - 1, 1))
            pixels[i + 1] = UInt8(y * 255 / max(height - 1, 1))
            pixels[i + 2] = UInt8((x + y) * 255 / max(width + height - 2, 1))
        }
    }
    // Exact identity of PNG pixels is only meaningful if not all pixels follow one formula.
    pixels[0] = 7
    pixels[pixels.count - 1] = 251
    return RGBImage(uncheckedWidth: width, height: height, pixels: pixels)
}
