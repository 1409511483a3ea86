import CFreeType
import Foundation

/// A font could not be opened or a text could not be drawn with it.
public enum FontError: Error, Equatable, CustomStringConvertible {
    case unavailable(path: String, reason: String)

    public var description: String {
        switch self {
        case .unavailable(let path, let reason):
            return "cannot open the font \(path): \(reason); install Debian's fonts-dejavu-core (make deps), "
                + "or name another TrueType font with SDREPL_FONT"
        }
    }
}

/// How much room a line of text takes at one pixel size, as Pillow's `ImageFont` reports it
/// (`getlength`, `getmetrics`): the pen's advance, and the font's ascent and descent rounded up.
public struct TextExtent: Equatable, Sendable {
    public var width: Int
    public var ascent: Int
    public var descent: Int
    public var height: Int { ascent + descent }
}

/// A TrueType face rendered with FreeType, for the labels of grid and contact sheets: antialiased
/// glyphs, the font's own advances and kerning, one line at a time.
///
/// FreeType's objects are not safe to share between threads, so every call takes the lock.
public final class Font: @unchecked Sendable {
    /// DejaVu Sans, the font A1111 labels its grids with, from Debian's `fonts-dejavu-core`.
    public static let dejaVuSans = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

    /// `SDREPL_FONT` when set, else DejaVu Sans.
    public static var defaultPath: String {
        ProcessInfo.processInfo.environment["SDREPL_FONT"].flatMap { $0.isEmpty ? nil : $0 } ?? dejaVuSans
    }

    public let path: String
    private var library: FT_Library?
    private var face: FT_Face?
    private let lock = NSLock()

    /// Opens the face at `path` (its first face).
    /// - Throws: `FontError.unavailable` when the file is missing or FreeType cannot read it.
    public init(path: String = Font.defaultPath) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else { throw FontError.unavailable(path: path, reason: "no such file") }
        guard FT_Init_FreeType(&library) == 0, let library else {
            throw FontError.unavailable(path: path, reason: "FreeType did not start")
        }
        let status = FT_New_Face(library, path, 0, &face)
        guard status == 0, face != nil else {
            FT_Done_FreeType(library)
            self.library = nil
            throw FontError.unavailable(path: path, reason: "not a font FreeType can read (error \(status))")
        }
    }

    deinit {
        if let face { FT_Done_Face(face) }
        if let library { FT_Done_FreeType(library) }
    }

    /// The advance width and the font's ascent and descent of `text` at `pixelSize` pixels per em.
    public func extent(_ text: String, pixelSize: Int) -> TextExtent {
        lock.lock()
        defer { lock.unlock() }
        guard let face = sized(pixelSize) else { return TextExtent(width: 0, ascent: 0, descent: 0) }
        var pen = 0
        layOut(text, face: face, render: false) { _, advance in pen = advance }
        let metrics = face.pointee.size.pointee.metrics
        // Pillow's PIXEL(): 26.6 fixed point rounded up to whole pixels.
        return TextExtent(width: (pen + 63) >> 6, ascent: (Int(metrics.ascender) + 63) >> 6,
                          descent: (-Int(metrics.descender) + 63) >> 6)
    }

    /// Draws `text` in `color` with its baseline at `baseline` and its pen starting at `x`,
    /// blending each glyph's coverage over the pixels; whatever falls outside `image` is clipped.
    public func draw(_ text: String, pixelSize: Int, into image: inout RGBImage, x: Int, baseline: Int,
                     color: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        lock.lock()
        defer { lock.unlock() }
        guard let face = sized(pixelSize) else { return }
        let ink = [Int(color.0), Int(color.1), Int(color.2)]
        let (width, height) = (image.width, image.height)
        image.pixels.withUnsafeMutableBufferPointer { pixels in
            layOut(text, face: face, render: true) { pen, _ in
                let glyph = face.pointee.glyph.pointee
                let bitmap = glyph.bitmap
                guard let buffer = bitmap.buffer, bitmap.pixel_mode == UInt8(FT_PIXEL_MODE_GRAY.rawValue) else { return }
                let left = x + (pen >> 6) + Int(glyph.bitmap_left)
                let top = baseline - Int(glyph.bitmap_top)
                for row in 0..<Int(bitmap.rows) {
                    let y = top + row
                    guard y >= 0 && y < height else { continue }
                    for column in 0..<Int(bitmap.width) {
                        let px = left + column
                        guard px >= 0 && px < width else { continue }
                        let coverage = Int(buffer[row * Int(bitmap.pitch) + column])
                        guard coverage > 0 else { continue }
                        let i = 3 * (y * width + px)
                        for c in 0..<3 {
                            pixels[i + c] = UInt8((Int(pixels[i + c]) * (255 - coverage) + ink[c] * coverage + 127) / 255)
                        }
                    }
                }
            }
        }
    }

    /// `text` broken at spaces into lines no wider than `width` pixels; a word wider than that
    /// stays whole on its own line.
    public func wrap(_ text: String, width: Int, pixelSize: Int) -> [String] {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: true).map(String.init) {
            let candidate = current.isEmpty ? word : current + " " + word
            if current.isEmpty || extent(candidate, pixelSize: pixelSize).width <= width {
                current = candidate
            } else {
                lines.append(current)
                current = word
            }
        }
        if !current.isEmpty || lines.isEmpty { lines.append(current) }
        return lines
    }

    // freetype.h's FT_LOAD_DEFAULT, FT_LOAD_RENDER (1L << 2) and FT_FACE_FLAG_KERNING (1L << 6): shift
    // macros, which Swift does not import.
    private static let loadDefault: FT_Int32 = 0
    private static let loadRender: FT_Int32 = 1 << 2
    private static let faceFlagKerning: FT_Long = 1 << 6

    /// The face set to `pixelSize`, or nil for a size FreeType refuses.
    private func sized(_ pixelSize: Int) -> FT_Face? {
        guard let face, pixelSize > 0, FT_Set_Pixel_Sizes(face, 0, FT_UInt(pixelSize)) == 0 else { return nil }
        return face
    }

    /// Loads each character's glyph in turn (rendered when `render`), calling `glyph` with the pen
    /// position before it and the advance after it, both in 26.6 fixed point, kerning included.
    private func layOut(_ text: String, face: FT_Face, render: Bool, glyph: (_ pen: Int, _ advance: Int) -> Void) {
        let hasKerning = face.pointee.face_flags & Self.faceFlagKerning != 0
        var pen = 0
        var previous: FT_UInt = 0
        for scalar in text.unicodeScalars {
            let index = FT_Get_Char_Index(face, FT_ULong(scalar.value))
            if hasKerning && previous != 0 && index != 0 {
                var delta = FT_Vector()
                if FT_Get_Kerning(face, previous, index, FT_KERNING_DEFAULT.rawValue, &delta) == 0 { pen += Int(delta.x) }
            }
            let flags: FT_Int32 = render ? Self.loadRender : Self.loadDefault
            guard FT_Load_Glyph(face, index, flags) == 0 else { continue }
            let advance = Int(face.pointee.glyph.pointee.advance.x)
            glyph(pen, pen + advance)
            pen += advance
            previous = index
        }
    }
}
