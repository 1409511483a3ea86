/// The one EXIF field sdrepl writes and reads: UserComment, which carries the infotext in JPEGs.
///
/// A1111 saves JPEGs with
///
///     piexif.dump({"Exif": {piexif.ExifIFD.UserComment:
///         piexif.helper.UserComment.dump(geninfo, encoding="unicode")}})
///
/// and piexif's `UserComment.dump` with `"unicode"` writes the 8-byte code `UNICODE\0` followed by
/// the text in UTF-16 **big-endian** (`_UNICODE = 'utf_16_be'`). piexif lays the TIFF structure
/// out big-endian (`MM`); so do we, which keeps the UTF-16 byte order and the TIFF byte order in
/// agreement for readers such as exiftool that decode UNICODE comments in the file's byte order.
public enum EXIF {
    static let header: [UInt8] = Array("Exif".utf8) + [0, 0]
    static let unicodeCode: [UInt8] = Array("UNICODE".utf8) + [0]
    static let asciiCode: [UInt8] = Array("ASCII".utf8) + [0, 0, 0]
    static let exifIFDPointerTag: UInt16 = 0x8769
    static let exifVersionTag: UInt16 = 0x9000
    static let userCommentTag: UInt16 = 0x9286

    /// The payload of an EXIF APP1 segment whose Exif IFD holds ExifVersion `0232` and the
    /// UserComment `UNICODE\0` + UTF-16BE(text).
    ///
    /// Layout (offsets from the TIFF header): header `MM 00 2A 00000008`; IFD0 at 8 with one entry
    /// (ExifIFDPointer, LONG) and next-IFD 0; the Exif IFD at 26 with two entries (ExifVersion,
    /// UNDEFINED[4] inline; UserComment, UNDEFINED[n] at offset 56) and next-IFD 0; the comment.
    public static func app1(userComment text: String) -> [UInt8] {
        let comment = unicodeCode + text.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        var tiff: [UInt8] = []
        func u16(_ v: UInt16) { tiff += [UInt8(v >> 8), UInt8(v & 0xFF)] }
        func u32(_ v: UInt32) { tiff += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
        func entry(_ tag: UInt16, type: UInt16, count: UInt32, value: [UInt8]) {
            u16(tag)
            u16(type)
            u32(count)
            tiff += value
        }
        let exifIFDOffset: UInt32 = 8 + 2 + 12 + 4
        let commentOffset: UInt32 = exifIFDOffset + 2 + 2 * 12 + 4
        tiff += Array("MM".utf8)
        u16(42)
        u32(8)
        // IFD0
        u16(1)
        entry(exifIFDPointerTag, type: 4, count: 1, value: bigEndian(exifIFDOffset))
        u32(0)
        // Exif IFD, tags ascending as TIFF requires
        u16(2)
        entry(exifVersionTag, type: 7, count: 4, value: Array("0232".utf8))
        entry(userCommentTag, type: 7, count: UInt32(comment.count), value: bigEndian(commentOffset))
        u32(0)
        return header + tiff + comment
    }

    /// The most UTF-16 units of text a UserComment can hold in one APP1 segment.
    public static let maxCommentUnits = (JPEGSegment.maxPayload - app1(userComment: "").count) / 2

    /// The APP1 segment carrying `text` as UserComment.
    /// - Throws: `ImagingError.metadataTooLarge` when the text needs more than one segment
    ///   (about 32,700 UTF-16 units).
    public static func segment(userComment text: String) throws -> JPEGSegment {
        let data = app1(userComment: text)
        guard data.count <= JPEGSegment.maxPayload else {
            throw ImagingError.metadataTooLarge(what: "EXIF UserComment", bytes: data.count, limit: JPEGSegment.maxPayload)
        }
        return JPEGSegment(marker: JPEGSegment.app1, data: data)
    }

    private static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    /// Reads the UserComment out of an EXIF APP1 payload of either byte order, or nil if there
    /// is none or the structure is malformed (every offset is bounds-checked).
    ///
    /// Decoding follows the 8-byte character code: `UNICODE\0` is UTF-16 in the byte order its BOM
    /// gives, else the one its Latin characters' zero high bytes give, else the TIFF's, `ASCII` and the undefined
    /// code (eight NULs, which A1111 falls back to reading as UTF-8) are UTF-8. Trailing NULs are
    /// dropped.
    public static func userComment(inAPP1 data: [UInt8]) -> String? {
        guard let tiff = TIFFFields(app1: data), let ifd0 = tiff.ifd0,
            let pointer = tiff.find(exifIFDPointerTag, inIFDAt: ifd0), let exifIFD = tiff.u32(pointer.field),
            let entry = tiff.find(userCommentTag, inIFDAt: Int(exifIFD))
        else { return nil }
        let little = tiff.little
        let start: Int
        if entry.count <= 4 {
            start = entry.field
        } else {
            guard let offset = tiff.u32(entry.field) else { return nil }
            start = Int(offset)
        }
        guard entry.count >= 8, start + entry.count <= tiff.bytes.count else { return nil }
        let raw = Array(tiff.bytes[start..<start + entry.count])
        let code = Array(raw.prefix(8))
        var body = Array(raw.dropFirst(8))
        if code == unicodeCode {
            var bigEndianText = !little
            // Writers disagree on the text's byte order (piexif: big-endian in any TIFF; exiftool: the
            // TIFF's). Latin text tells by its zero high bytes: at even offsets it is big-endian.
            let evenZeros = stride(from: 0, to: body.count - 1, by: 2).filter { body[$0] == 0 && body[$0 + 1] != 0 }.count
            let oddZeros = stride(from: 0, to: body.count - 1, by: 2).filter { body[$0 + 1] == 0 && body[$0] != 0 }.count
            if evenZeros != oddZeros { bigEndianText = evenZeros > oddZeros }
            if body.starts(with: [0xFE, 0xFF]) {
                bigEndianText = true
                body.removeFirst(2)
            } else if body.starts(with: [0xFF, 0xFE]) {
                bigEndianText = false
                body.removeFirst(2)
            }
            var units: [UInt16] = []
            units.reserveCapacity(body.count / 2)
            for i in stride(from: 0, to: body.count - 1, by: 2) {
                let a = UInt16(body[i]), b = UInt16(body[i + 1])
                units.append(bigEndianText ? a << 8 | b : b << 8 | a)
            }
            while units.last == 0 { units.removeLast() }
            return String(decoding: units, as: UTF16.self)
        }
        while body.last == 0 { body.removeLast() }
        return String(decoding: body, as: UTF8.self)
    }

    static let orientationTag: UInt16 = 0x0112

    /// The Orientation (1–8) in IFD0 of an EXIF APP1 payload: how a camera or phone says to turn
    /// the stored pixels for display; nil when there is none, it is malformed or out of range.
    public static func orientation(inAPP1 data: [UInt8]) -> Int? {
        guard let tiff = TIFFFields(app1: data), let ifd0 = tiff.ifd0,
            let entry = tiff.find(orientationTag, inIFDAt: ifd0), entry.type == 3, entry.count == 1,
            let value = tiff.u16(entry.field), (1...8).contains(value)
        else { return nil }
        return Int(value)
    }
}

/// Bounds-checked reads of the TIFF structure inside an EXIF APP1 payload, of either byte order.
struct TIFFFields {
    let bytes: [UInt8]
    let little: Bool

    init?(app1 data: [UInt8]) {
        guard data.starts(with: EXIF.header) else { return nil }
        bytes = Array(data.dropFirst(EXIF.header.count))
        guard bytes.count >= 8 else { return nil }
        switch (bytes[0], bytes[1]) {
        case (0x49, 0x49): little = true
        case (0x4D, 0x4D): little = false
        default: return nil
        }
    }

    /// Where IFD0 starts, after the magic number 42.
    var ifd0: Int? { u16(2) == 42 ? u32(4).map(Int.init) : nil }

    func u16(_ at: Int) -> UInt16? {
        guard at >= 0, at + 2 <= bytes.count else { return nil }
        let a = UInt16(bytes[at]), b = UInt16(bytes[at + 1])
        return little ? a | b << 8 : a << 8 | b
    }

    func u32(_ at: Int) -> UInt32? {
        guard let hi = u16(at), let lo = u16(at + 2) else { return nil }
        return little ? UInt32(hi) | UInt32(lo) << 16 : UInt32(hi) << 16 | UInt32(lo)
    }

    /// (type, count, value-field offset) of a tag in the IFD at `offset`.
    func find(_ tag: UInt16, inIFDAt offset: Int) -> (type: UInt16, count: Int, field: Int)? {
        guard let n = u16(offset) else { return nil }
        for i in 0..<Int(n) {
            let e = offset + 2 + 12 * i
            guard let t = u16(e), let type = u16(e + 2), let count = u32(e + 4) else { return nil }
            if t == tag { return (type, Int(count), e + 8) }
        }
        return nil
    }
}
