import XCTest

@testable import Imaging

final class SixelTests: XCTestCase {
    func testFittedSizeKeepsAspect() {
        XCTAssertTrue(Sixel.fittedSize(width: 512, height: 512, boxWidth: 300, boxHeight: 200) == (200, 200))
        XCTAssertTrue(Sixel.fittedSize(width: 768, height: 512, boxWidth: 300, boxHeight: 300) == (300, 200))
        XCTAssertTrue(Sixel.fittedSize(width: 64, height: 48, boxWidth: 1000, boxHeight: 1000) == (64, 48))
        XCTAssertTrue(Sixel.fittedSize(width: 64, height: 48, boxWidth: 1000, boxHeight: 1000, allowUpscale: true) == (1000, 750))
        XCTAssertTrue(Sixel.fittedSize(width: 1000, height: 10, boxWidth: 50, boxHeight: 50) == (50, 1))
    }

    func testAreaResizeAveragesCoveredPixels() throws {
        // 4x2 -> 2x1: each output pixel is the mean of a 2x2 block.
        let image = try RGBImage(width: 4, height: 2, pixels: [
            0, 0, 0, 100, 100, 100, 10, 20, 30, 10, 20, 30,
            100, 100, 100, 200, 200, 200, 10, 20, 30, 50, 60, 70,
        ])
        XCTAssertEqual(Sixel.resize(image, width: 2, height: 1).pixels, [100, 100, 100, 20, 30, 40])
        // 3 -> 2 columns: output 0 covers source 0 fully and half of 1 (weights 2/3, 1/3).
        let row = try RGBImage(width: 3, height: 1, pixels: [0, 0, 0, 90, 90, 90, 180, 180, 180])
        XCTAssertEqual(Sixel.resize(row, width: 2, height: 1).pixels, [30, 30, 30, 150, 150, 150])
    }

    func testEncodesDCSSequenceThatDecodesToTheScaledImage() throws {
        let image = makeTestImage(width: 64, height: 48)
        let sixel = try Sixel.encode(image, boxWidth: 50, boxHeight: 50)
        // ESC P <params> q ... ESC \
        XCTAssertEqual(Array(sixel.prefix(2)), [0x1B, 0x50])
        let q = try XCTUnwrap(sixel.firstIndex(of: UInt8(ascii: "q")))
        XCTAssertTrue(sixel[2..<q].allSatisfy { (0x30...0x3B).contains($0) }, "only parameter bytes between ESC P and q")
        XCTAssertEqual(Array(sixel.suffix(2)), [0x1B, 0x5C])

        let decoded = try Sixel.decode(sixel)
        XCTAssertEqual(decoded.width, 50)
        XCTAssertEqual(decoded.height, 38)
        let expected = Sixel.resize(image, width: 50, height: 38)
        // A 256-colour palette with dithering: each pixel is close, the mean error small.
        let diffs = zip(decoded.pixels, expected.pixels).map { abs(Int($0) - Int($1)) }
        XCTAssertLessThan(Double(diffs.reduce(0, +)) / Double(diffs.count), 6)
        XCTAssertLessThan(diffs.max() ?? 0, 64)
    }

    func testFlatColourRoundTripsExactly() throws {
        // 13 rows: two full sixel bands and a partial one. (libsixel 1.10 starts a single-band
        // image, under 6 rows, with a needless graphics newline; previews are never that small.)
        let flat = try RGBImage(width: 7, height: 13, pixels: (0..<7 * 13 * 3).map { [200, 40, 120][$0 % 3] })
        let decoded = try Sixel.decode(try Sixel.encode(flat, colors: 16))
        XCTAssertEqual(decoded.width, 7)
        XCTAssertEqual(decoded.height, 13)
        // Sixel palettes are in percent (0...100), so a channel may move by up to 255/200.
        XCTAssertTrue(zip(decoded.pixels, flat.pixels).allSatisfy { abs(Int($0) - Int($1)) <= 2 })
    }
}
