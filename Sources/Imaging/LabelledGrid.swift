import Foundation

/// A contact sheet of images in rows and columns with labels, laid out as A1111's
/// `images.draw_grid_annotations` does: column labels centred above the columns, row labels in a
/// left margin three quarters of a cell wide, black DejaVu Sans on white. Several sub-grids (the
/// Z axis) are placed side by side in one row, each under its own title, as A1111's X/Y/Z plot
/// joins its sub-grids (`image_grid(sub_grids, rows=1)`).
///
/// Sizes: A1111's font size is `(cell width + cell height) / 25`; here it is at least 14 px so that
/// labels stay readable on the small cells a terminal preview shows. Its line spacing is half the
/// font size, the label band above the columns is the tallest label plus two line spacings, and
/// sub-grids are one font size apart.
public struct LabelledGrid {
    /// One sub-grid: rows of cells (nil: a cell that was never made, left white) and its title.
    public struct Page {
        public var title: String?
        public var cells: [[RGBImage?]]
        public init(title: String? = nil, cells: [[RGBImage?]]) {
            self.title = title
            self.cells = cells
        }
    }

    public var columnLabels: [String]
    public var rowLabels: [String]
    public var pages: [Page]
    public let font: Font

    /// The slot every cell is centred in: the largest cell's width and height (cells may differ
    /// when `size` is an axis).
    public let cellWidth: Int
    public let cellHeight: Int
    public let fontSize: Int
    public var lineSpacing: Int { fontSize / 2 }
    /// Blank columns and rows drawn around the cells, in pixels.
    public private(set) var labelBand = 0
    public private(set) var leftMargin = 0
    public private(set) var titleBand = 0

    public init(columnLabels: [String], rowLabels: [String], pages: [Page], font: Font) {
        self.columnLabels = columnLabels
        self.rowLabels = rowLabels
        self.pages = pages
        self.font = font
        let cells = pages.flatMap { $0.cells.flatMap { $0 } }.compactMap { $0 }
        cellWidth = cells.map(\.width).max() ?? 64
        cellHeight = cells.map(\.height).max() ?? 64
        fontSize = max(14, (cellWidth + cellHeight) / 25)
        let lineHeight = font.extent("Ag", pixelSize: fontSize).height
        let columnLines = columnLabels.map { wrapped($0, width: cellWidth).count }.max() ?? 0
        labelBand = columnLabels.allSatisfy(\.isEmpty) ? 0 : columnLines * lineHeight + lineSpacing * 2
        if !rowLabels.allSatisfy(\.isEmpty) {
            // Three quarters of a cell as A1111, widened for a label's longest word.
            let widestWord = rowLabels.flatMap { $0.split(separator: " ") }
                .map { font.extent(String($0), pixelSize: fontSize).width }.max() ?? 0
            leftMargin = max(cellWidth * 3 / 4, widestWord + 2 * lineSpacing)
        }
        titleBand = pages.contains { !($0.title ?? "").isEmpty } ? lineHeight + lineSpacing * 2 : 0
    }

    private var columns: Int { max(columnLabels.count, pages.map { $0.cells.map(\.count).max() ?? 0 }.max() ?? 0, 1) }
    private var rows: Int { max(rowLabels.count, pages.map(\.cells.count).max() ?? 0, 1) }
    private var pageWidth: Int { leftMargin + columns * cellWidth }
    private var pageHeight: Int { titleBand + labelBand + rows * cellHeight }
    private var pageGap: Int { fontSize }

    /// The sheet's size before it is drawn.
    public var size: (width: Int, height: Int) {
        (pages.count * pageWidth + (pages.count - 1) * pageGap, pageHeight)
    }

    /// Draws the sheet.
    public func render() throws -> RGBImage {
        let (width, height) = size
        var sheet = try RGBImage(width: width, height: height, pixels: [UInt8](repeating: 255, count: width * height * 3))
        for (number, page) in pages.enumerated() {
            let left = number * (pageWidth + pageGap)
            if let title = page.title, !title.isEmpty {
                drawCentred([title], in: &sheet, x: left, width: pageWidth, top: 0, height: titleBand)
            }
            let gridTop = titleBand + labelBand
            for (column, label) in columnLabels.enumerated() {
                drawCentred(wrapped(label, width: cellWidth), in: &sheet, x: left + leftMargin + column * cellWidth,
                            width: cellWidth, top: titleBand, height: labelBand)
            }
            for (row, label) in rowLabels.enumerated() {
                drawCentred(wrapped(label, width: leftMargin - 2 * lineSpacing), in: &sheet, x: left, width: leftMargin,
                            top: gridTop + row * cellHeight, height: cellHeight)
            }
            for (row, cells) in page.cells.enumerated() {
                for (column, cell) in cells.enumerated() {
                    guard let cell else { continue }
                    let x = left + leftMargin + column * cellWidth + (cellWidth - cell.width) / 2
                    let y = gridTop + row * cellHeight + (cellHeight - cell.height) / 2
                    sheet.paste(cell, x: x, y: y)
                }
            }
        }
        return sheet
    }

    private func wrapped(_ label: String, width: Int) -> [String] {
        label.isEmpty ? [] : font.wrap(label, width: width, pixelSize: fontSize)
    }

    /// Draws `lines` centred in the box, one under the other.
    private func drawCentred(_ lines: [String], in sheet: inout RGBImage, x: Int, width: Int, top: Int, height: Int) {
        guard !lines.isEmpty else { return }
        let lineHeight = font.extent("Ag", pixelSize: fontSize).height
        var baseline = top + (height - lines.count * lineHeight) / 2 + font.extent("Ag", pixelSize: fontSize).ascent
        for line in lines {
            let lineWidth = font.extent(line, pixelSize: fontSize).width
            font.draw(line, pixelSize: fontSize, into: &sheet, x: x + (width - lineWidth) / 2, baseline: baseline)
            baseline += lineHeight
        }
    }
}

/// Thumbnails of numbered images in rows, each number centred under its picture (`history sheet`).
public struct ThumbnailSheet {
    /// The largest side of a thumbnail, in pixels.
    public var thumbnail = 128
    public var perRow = 8
    public var gap = 8
    public let font: Font

    public init(font: Font, thumbnail: Int = 128, perRow: Int = 8) {
        self.font = font
        self.thumbnail = thumbnail
        self.perRow = perRow
    }

    private var fontSize: Int { max(12, thumbnail / 8) }
    private var labelHeight: Int { font.extent("0", pixelSize: fontSize).height + gap / 2 }

    /// The sheet's size for `count` images.
    public func size(count: Int) -> (width: Int, height: Int) {
        let columns = min(max(count, 1), perRow), rows = max((count + perRow - 1) / perRow, 1)
        return (gap + columns * (thumbnail + gap), gap + rows * (thumbnail + labelHeight + gap))
    }

    /// Draws `images` (number, picture) scaled to fit `thumbnail` (never enlarged), in order.
    public func render(_ images: [(number: Int, image: RGBImage)]) throws -> RGBImage {
        let (width, height) = size(count: images.count)
        var sheet = try RGBImage(width: width, height: height, pixels: [UInt8](repeating: 255, count: width * height * 3))
        for (position, item) in images.enumerated() {
            let left = gap + (position % perRow) * (thumbnail + gap)
            let top = gap + (position / perRow) * (thumbnail + labelHeight + gap)
            let fitted = Sixel.fittedSize(width: item.image.width, height: item.image.height,
                                          boxWidth: thumbnail, boxHeight: thumbnail)
            let small = fitted == (item.image.width, item.image.height) ? item.image
                : Sixel.resize(item.image, width: fitted.width, height: fitted.height)
            sheet.paste(small, x: left + (thumbnail - small.width) / 2, y: top + (thumbnail - small.height) / 2)
            let label = String(item.number)
            let extent = font.extent(label, pixelSize: fontSize)
            font.draw(label, pixelSize: fontSize, into: &sheet, x: left + (thumbnail - extent.width) / 2,
                      baseline: top + thumbnail + gap / 2 + extent.ascent)
        }
        return sheet
    }
}

extension RGBImage {
    /// Copies `image` over this one with its top-left corner at (`x`, `y`), clipped to this image.
    public mutating func paste(_ image: RGBImage, x: Int, y: Int) {
        for row in 0..<image.height {
            let ty = y + row
            guard ty >= 0 && ty < height else { continue }
            let first = max(0, -x), last = min(image.width, width - x)
            guard first < last else { return }
            let source = 3 * (row * image.width + first)
            let target = 3 * (ty * width + x + first)
            pixels.replaceSubrange(target..<target + 3 * (last - first),
                                   with: image.pixels[source..<source + 3 * (last - first)])
        }
    }
}
