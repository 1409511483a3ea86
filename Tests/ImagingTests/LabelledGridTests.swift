import Foundation
import Imaging
import XCTest

/// The grid sheet's layout (A1111's `draw_grid_annotations` sizes, with a 14 px floor on the font)
/// and the history's thumbnail sheet.
final class LabelledGridTests: XCTestCase {
    private func solid(_ width: Int, _ height: Int, _ value: UInt8) throws -> RGBImage {
        try RGBImage(width: width, height: height, pixels: [UInt8](repeating: value, count: width * height * 3))
    }

    private func pixel(_ image: RGBImage, _ x: Int, _ y: Int) -> UInt8 { image.pixels[3 * (y * image.width + x)] }

    private func darkPixels(_ image: RGBImage, x: Range<Int>, y: Range<Int>) -> Int {
        y.reduce(0) { sum, py in sum + x.filter { pixel(image, $0, py) < 128 }.count }
    }

    func testTwoByTwoSheetSizesAndPlacement() throws {
        let font = try Font(path: Font.dejaVuSans)
        let cells = [[try solid(64, 64, 10), try solid(64, 64, 20)], [try solid(64, 64, 30), try solid(64, 64, 40)]]
        let grid = LabelledGrid(columnLabels: ["Seed: 1", "Seed: 2"], rowLabels: ["CFG Scale: 3", "CFG Scale: 7"],
                                pages: [.init(cells: cells)], font: font)
        // (64 + 64) / 25 = 5 px in A1111; 14 here.
        XCTAssertEqual(grid.fontSize, 14)
        let line = font.extent("Ag", pixelSize: 14).height
        XCTAssertEqual(line, 17, "DejaVu Sans at 14 px: ascent 14, descent 4 rounded up")
        // "Seed: 1" fits a 64 px column on one line: one line plus two line spacings (7 px).
        XCTAssertEqual(grid.labelBand, line + 14)
        // Three quarters of a cell (48) is narrower than "Scale:" plus margins.
        let scale = font.extent("Scale:", pixelSize: 14).width
        XCTAssertEqual(grid.leftMargin, max(48, scale + 14))
        XCTAssertEqual(grid.titleBand, 0)
        let sheet = try grid.render()
        XCTAssertEqual(sheet.width, grid.leftMargin + 128)
        XCTAssertEqual(sheet.height, grid.labelBand + 128)
        XCTAssertEqual(sheet.width, grid.size.width)
        // Each cell in its slot, row-major.
        for (row, values) in [[10, 20], [30, 40]].enumerated() {
            for (column, value) in values.enumerated() {
                let x = grid.leftMargin + column * 64, y = grid.labelBand + row * 64
                XCTAssertEqual(pixel(sheet, x + 1, y + 1), UInt8(value))
                XCTAssertEqual(pixel(sheet, x + 62, y + 62), UInt8(value))
            }
        }
        // Ink above each column and left of each row; the corner stays white.
        for column in 0..<2 {
            let left = grid.leftMargin + column * 64
            XCTAssertGreaterThan(darkPixels(sheet, x: left..<left + 64, y: 0..<grid.labelBand), 20, "column \(column) label")
        }
        for row in 0..<2 {
            let top = grid.labelBand + row * 64
            XCTAssertGreaterThan(darkPixels(sheet, x: 0..<grid.leftMargin, y: top..<top + 64), 20, "row \(row) label")
        }
        XCTAssertEqual(darkPixels(sheet, x: 0..<grid.leftMargin, y: 0..<grid.labelBand), 0)
    }

    func testZPagesSideBySideWithTitlesAndMissingCellsWhite() throws {
        let font = try Font(path: Font.dejaVuSans)
        let cell = try solid(32, 48, 0)
        let pages = [LabelledGrid.Page(title: "Steps: 10", cells: [[cell, nil]]), LabelledGrid.Page(title: "Steps: 20", cells: [[nil, nil]])]
        let grid = LabelledGrid(columnLabels: ["a", "b"], rowLabels: [], pages: pages, font: font)
        XCTAssertEqual(grid.leftMargin, 0)
        XCTAssertEqual(grid.titleBand, font.extent("Ag", pixelSize: 14).height + 14)
        let sheet = try grid.render()
        let page = 2 * 32
        XCTAssertEqual(sheet.width, 2 * page + grid.fontSize, "two pages one font size apart")
        XCTAssertEqual(sheet.height, grid.titleBand + grid.labelBand + 48)
        let top = grid.titleBand + grid.labelBand
        XCTAssertEqual(pixel(sheet, 5, top + 5), 0, "the cell made")
        XCTAssertEqual(pixel(sheet, 32 + 5, top + 5), 255, "a cell not made is white")
        XCTAssertGreaterThan(darkPixels(sheet, x: page + grid.fontSize..<sheet.width, y: 0..<grid.titleBand), 20, "the second title")
    }

    func testCellsOfDifferentSizesAreCentredInTheLargestSlot() throws {
        let font = try Font(path: Font.dejaVuSans)
        let grid = LabelledGrid(columnLabels: ["", ""], rowLabels: [], pages: [.init(cells: [[try solid(64, 64, 0), try solid(32, 32, 0)]])], font: font)
        let sheet = try grid.render()
        XCTAssertEqual(sheet.width, 128)
        XCTAssertEqual(sheet.height, 64, "no label band when no column has a label")
        XCTAssertEqual(pixel(sheet, 64 + 2, 2), 255)
        XCTAssertEqual(pixel(sheet, 64 + 16, 16), 0)
    }

    func testThumbnailSheetSizeAndNumbers() throws {
        let font = try Font(path: Font.dejaVuSans)
        let sheet = ThumbnailSheet(font: font, thumbnail: 64, perRow: 3)
        let images = try (1...4).map { (number: $0, image: try solid(128, 64, 0)) }
        let size = sheet.size(count: 4)
        let label = font.extent("0", pixelSize: 12).height + 4
        XCTAssertEqual(size.width, 8 + 3 * (64 + 8))
        XCTAssertEqual(size.height, 8 + 2 * (64 + label + 8))
        let drawn = try sheet.render(images)
        XCTAssertEqual(drawn.width, size.width)
        XCTAssertEqual(drawn.height, size.height)
        // 128x64 fits 64x32, centred vertically in its 64 px box.
        XCTAssertEqual(pixel(drawn, 8 + 32, 8 + 32), 0)
        XCTAssertEqual(pixel(drawn, 8 + 32, 8 + 4), 255)
        // A number under the first thumbnail.
        XCTAssertGreaterThan(darkPixels(drawn, x: 8..<72, y: 72..<72 + label), 5)
    }
}
