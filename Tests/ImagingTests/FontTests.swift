import Foundation
import Imaging
import XCTest

/// FreeType text against Pillow's `ImageFont` on the same font (DejaVu Sans, Debian's
/// fonts-dejavu-core), which A1111 draws its grid labels with, in Pillow's default layout (Raqm:
/// HarfBuzz's kerning). The numbers come from (Pillow 13.0 with its own FreeType 2.14; the
/// system's is 2.12, hence the tolerances):
///
///     f = ImageFont.truetype("DejaVuSans.ttf", 20)
///     im = Image.new("L", (200, 40), 255); ImageDraw.Draw(im).text((10, 27), t, font=f, fill=0, anchor="ls")
///     a = 255 - numpy.array(im).astype(int); ys, xs = numpy.nonzero(a)
///     f.getlength(t), f.getmetrics(), (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), a.sum()
final class FontTests: XCTestCase {
    private struct Reference {
        let text: String
        let length: Double
        let bbox: (left: Int, top: Int, right: Int, bottom: Int)
        let ink: Int
    }

    private let references = [
        Reference(text: "Seed: 1", length: 75.84375, bbox: (11, 12, 84, 27), ink: 80161),
        Reference(text: "CFG Scale: 7", length: 126.96875, bbox: (11, 12, 136, 27), ink: 128041),
        // Kerned pairs (AV, Wa): 66 px without kerning.
        Reference(text: "AV Wa", length: 63.203125, bbox: (10, 12, 72, 27), ink: 75447),
    ]

    private func font() throws -> Font {
        try Font(path: Font.dejaVuSans)
    }

    func testMetricsMatchPillow() throws {
        let font = try font()
        for reference in references {
            let extent = font.extent(reference.text, pixelSize: 20)
            // getmetrics() == (19, 5): the ascender and descender rounded up, exactly.
            XCTAssertEqual(extent.ascent, 19, reference.text)
            XCTAssertEqual(extent.descent, 5, reference.text)
        }
        // Without kerning pairs, the sum of FreeType's hinted advances, exactly as Pillow's basic layout:
        // ImageFont.truetype("DejaVuSans.ttf", 20, layout_engine=ImageFont.Layout.BASIC).getlength(t) -> 76.0, 128.0
        XCTAssertEqual(font.extent("Seed: 1", pixelSize: 20).width, 76)
        XCTAssertEqual(font.extent("CFG Scale: 7", pixelSize: 20).width, 128)
        // Kerned (AV, Wa: 66 px without kerning): Raqm's fractional positions within a pixel. (Pillow's
        // basic layout adds the kerning in the wrong unit, 65.97, so Raqm is the reference here.)
        XCTAssertEqual(Double(font.extent("AV Wa", pixelSize: 20).width), 63.203125, accuracy: 1.0)
    }

    func testDrawnInkFillsPillowsBoxAndMatchesItsAmount() throws {
        let font = try font()
        for reference in references {
            let (width, height) = (200, 40)
            var image = try RGBImage(width: width, height: height, pixels: [UInt8](repeating: 255, count: width * height * 3))
            font.draw(reference.text, pixelSize: 20, into: &image, x: 10, baseline: 27)
            var ink = 0
            var box = (left: Int.max, top: Int.max, right: Int.min, bottom: Int.min)
            for py in 0..<height {
                for px in 0..<width {
                    let darkness = 255 - Int(image.pixels[3 * (py * width + px)])
                    guard darkness > 0 else { continue }
                    ink += darkness
                    box = (min(box.left, px), min(box.top, py), max(box.right, px + 1), max(box.bottom, py + 1))
                }
            }
            XCTAssertEqual(box.left, reference.bbox.left, accuracy: 1, reference.text)
            XCTAssertEqual(box.right, reference.bbox.right, accuracy: 1, reference.text)
            XCTAssertEqual(box.top, reference.bbox.top, accuracy: 1, reference.text)
            XCTAssertEqual(box.bottom, reference.bbox.bottom, accuracy: 1, reference.text)
            // The same glyph outlines antialiased by two FreeType versions: within 5 % of the ink.
            XCTAssertEqual(Double(ink), Double(reference.ink), accuracy: Double(reference.ink) * 0.05, reference.text)
        }
    }

    func testDrawingIsClippedToTheImage() throws {
        let font = try font()
        var image = try RGBImage(width: 20, height: 10, pixels: [UInt8](repeating: 255, count: 20 * 10 * 3))
        font.draw("Clipped text", pixelSize: 20, into: &image, x: -5, baseline: 15)
        XCTAssertTrue(image.pixels.contains { $0 < 128 }, "the part inside the image is drawn")
    }

    func testWrapBreaksAtSpacesWithinTheWidth() throws {
        let font = try font()
        let lines = font.wrap("a red fox in the snow", width: 60, pixelSize: 20)
        XCTAssertGreaterThan(lines.count, 1)
        XCTAssertEqual(lines.joined(separator: " "), "a red fox in the snow")
        for line in lines where line.contains(" ") {
            XCTAssertLessThanOrEqual(font.extent(line, pixelSize: 20).width, 60, line)
        }
        XCTAssertEqual(font.wrap("unbreakable", width: 10, pixelSize: 20), ["unbreakable"])
    }

    func testAMissingFontIsAClearError() {
        XCTAssertThrowsError(try Font(path: "/nonexistent/font.ttf")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/font.ttf: no such file"), "\(error)")
            XCTAssertTrue("\(error)".contains("fonts-dejavu-core"), "\(error)")
        }
    }
}
