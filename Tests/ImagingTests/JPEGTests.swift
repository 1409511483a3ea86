import TestSupport
import XCTest

@testable import Imaging

final class JPEGTests: XCTestCase {
    /// `piexif.helper.UserComment.dump("Steps: 1", encoding="unicode")`
    /// == b"UNICODE\x00" + "Steps: 1".encode("utf_16_be").
    func testUserCommentIsUnicodeCodeThenUTF16BigEndianLikePiexif() throws {
        let app1 = EXIF.app1(userComment: "Steps: 1")
        let expectedComment = Array("UNICODE\0".utf8) + "Steps: 1".utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        XCTAssertEqual(Array(app1.suffix(expectedComment.count)), expectedComment)
        XCTAssertEqual(Array(app1.prefix(14)), Array("Exif\0\0MM".utf8) + [0, 42, 0, 0, 0, 8])
        XCTAssertEqual(EXIF.userComment(inAPP1: app1), "Steps: 1")
    }

    func testUserCommentReadsLittleEndianTIFFToo() {
        // A hand-made II (little-endian) EXIF with UserComment at offset 26 (IFD0 -> Exif IFD at 8+18).
        var tiff: [UInt8] = Array("II".utf8) + [42, 0, 8, 0, 0, 0]
        tiff += [1, 0] + [0x69, 0x87, 4, 0, 1, 0, 0, 0, 26, 0, 0, 0] + [0, 0, 0, 0]
        let comment: [UInt8] = Array("ASCII\0\0\0".utf8) + Array("hello".utf8)
        tiff += [1, 0] + [0x86, 0x92, 7, 0, UInt8(comment.count), 0, 0, 0, 44, 0, 0, 0] + [0, 0, 0, 0]
        tiff += comment
        XCTAssertEqual(EXIF.userComment(inAPP1: Array("Exif\0\0".utf8) + tiff), "hello")
        // Truncated structures are rejected, not read out of bounds.
        XCTAssertNil(EXIF.userComment(inAPP1: Array("Exif\0\0".utf8) + tiff.prefix(30)))
    }

    /// A UNICODE comment in either byte order in either TIFF: Latin text decodes right by its zero
    /// high bytes (`"Steps: 1".encode("utf_16_le")` in a big-endian TIFF, as some Windows tools
    /// write); text without them (CJK) follows the TIFF; a BOM decides over both.
    func testAUnicodeCommentOfEitherByteOrderReadsInEitherTIFF() {
        func tiff(little: Bool, comment: [UInt8]) -> [UInt8] {
            func u16(_ v: Int) -> [UInt8] { little ? [UInt8(v & 0xFF), UInt8(v >> 8)] : [UInt8(v >> 8), UInt8(v & 0xFF)] }
            func u32(_ v: Int) -> [UInt8] { little ? u16(v & 0xFFFF) + u16(v >> 16) : u16(v >> 16) + u16(v & 0xFFFF) }
            var t: [UInt8] = Array((little ? "II" : "MM").utf8) + u16(42) + u32(8)
            t += u16(1) + u16(0x8769) + u16(4) + u32(1) + u32(26) + u32(0)
            t += u16(1) + u16(0x9286) + u16(7) + u32(comment.count) + u32(44) + u32(0)
            return Array("Exif\0\0".utf8) + t + comment
        }
        func utf16(_ text: String, little: Bool) -> [UInt8] {
            text.utf16.flatMap { little ? [UInt8($0 & 0xFF), UInt8($0 >> 8)] : [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        }
        let code = Array("UNICODE\0".utf8)
        for tiffLittle in [false, true] {
            for textLittle in [false, true] {
                let text = "Steps: 20, Sampler: Euler a, Seed: 5 – ünïcode"
                XCTAssertEqual(EXIF.userComment(inAPP1: tiff(little: tiffLittle, comment: code + utf16(text, little: textLittle))), text,
                               "TIFF little \(tiffLittle), text little \(textLittle)")
            }
            let cjk = "山の上の城"
            XCTAssertEqual(EXIF.userComment(inAPP1: tiff(little: tiffLittle, comment: code + utf16(cjk, little: tiffLittle))), cjk)
            XCTAssertEqual(EXIF.userComment(inAPP1: tiff(little: tiffLittle, comment: code + [0xFF, 0xFE] + utf16(cjk, little: true))), cjk)
        }
    }

    func testWriteThenReadCarriesInfotextXMPAndWatermark() throws {
        let image = makeTestImage()
        let metadata = sampleMetadata(prompt: "狐狸 in snow, ünïcödé 🦊")
        let bytes = try JPEGFile.encode(image, quality: 95, segments: metadata.jpegSegments())
        let decoded = try JPEGFile.decode(bytes)

        XCTAssertEqual(decoded.userComment, metadata.infotext)
        XCTAssertEqual(decoded.xmpPacket, metadata.xmpPacket)
        XCTAssertEqual(decoded.comments.first, "Generated using Stable Diffusion v1.5 (AI Origin Watermark)")
        XCTAssertEqual(decoded.comments.count, 2)
        XCTAssertTrue(decoded.comments[1].hasPrefix("sdrepl-keys {") && decoded.comments[1].contains("狐狸 in snow, ünïcödé 🦊"), decoded.comments[1])
        XCTAssertEqual(decoded.segments.map(\.marker), [0xE0, 0xE1, 0xE1, 0xFE, 0xFE], "JFIF, EXIF, XMP, COM, COM")
        // Lossy, so close rather than equal: at quality 95 a smooth gradient stays within a few levels.
        XCTAssertEqual(decoded.image.width, image.width)
        XCTAssertEqual(decoded.image.height, image.height)
        let diffs = zip(decoded.image.pixels, image.pixels).map { abs(Int($0) - Int($1)) }
        XCTAssertLessThan(Double(diffs.reduce(0, +)) / Double(diffs.count), 3.0)
    }

    func testQualityChangesSize() throws {
        let image = makeTestImage(width: 128, height: 128)
        let small = try JPEGFile.encode(image, quality: 20, segments: [])
        let large = try JPEGFile.encode(image, quality: 98, segments: [])
        XCTAssertLessThan(small.count, large.count)
    }

    /// One segment cannot hold a comment that long (a clear error), so the metadata's segments cut
    /// the prompt to what fits: the segment is full to within a character.
    func testOversizedInfotextIsCutToFitOneSegment() throws {
        let metadata = sampleMetadata(prompt: String(repeating: "very long prompt ", count: 3000))
        XCTAssertThrowsError(try EXIF.segment(userComment: metadata.infotext)) { error in
            guard case ImagingError.metadataTooLarge(what: "EXIF UserComment", _, 65533) = error else { return XCTFail("\(error)") }
        }
        let segment = try XCTUnwrap(try metadata.jpegSegments().first)
        XCTAssertLessThanOrEqual(segment.data.count, JPEGSegment.maxPayload)
        XCTAssertGreaterThan(segment.data.count, JPEGSegment.maxPayload - 4)
        XCTAssertEqual(EXIF.userComment(inAPP1: segment.data), metadata.jpegUserComment)
        XCTAssertTrue(metadata.jpegUserComment.contains("…\nNegative prompt: blurry\nSteps: 25, "), metadata.jpegUserComment.suffix(200).description)
    }

    func testCorruptJPEGThrowsInsteadOfExiting() throws {
        let bytes = try JPEGFile.encode(makeTestImage(), segments: [])
        // libjpeg's default error handler would exit() the process here.
        XCTAssertThrowsError(try JPEGFile.decode(Array(bytes.prefix(100))))
        XCTAssertThrowsError(try JPEGFile.decode([0xFF, 0xD8, 0xFF, 0xD9]))
        XCTAssertThrowsError(try JPEGFile.decode(Array("nope".utf8)))
    }

    /// A print-ready CMYK JPEG (`jpeg/cmyk.jpg`, written by PIL) reads as the RGB pixels A1111
    /// starts from: `Image.open("jpeg/cmyk.jpg").convert("RGB")`, saved as `jpeg/cmyk_as_rgb.png`
    /// (make_jpeg_colour_fixtures.py). Exact: both sides are libjpeg's integer IDCT and PIL's
    /// integer formula. libjpeg alone refuses the conversion ("Unsupported color conversion request").
    func testCMYKJPEGReadsAsPillowConvertsIt() throws {
        let decoded = try JPEGFile.decode([UInt8](Data(contentsOf: Fixture.url("jpeg/cmyk.jpg"))))
        let expected = try PNGFile.decode([UInt8](Data(contentsOf: Fixture.url("jpeg/cmyk_as_rgb.png"))))
        XCTAssertEqual(decoded.image.width, 48)
        XCTAssertEqual(decoded.image.height, 32)
        let differing = zip(decoded.image.pixels, expected.image.pixels).filter { $0 != $1 }.count
        XCTAssertEqual(differing, 0, "of \(expected.image.pixels.count) channel values")
    }

    /// A JPEG cut short inside its image data is refused, as Pillow refuses it ("image file is
    /// truncated"), rather than read with its missing rows grey.
    func testJPEGCutShortIsRefused() throws {
        let whole = [UInt8](try Data(contentsOf: Fixture.url("jpeg/cmyk.jpg")))
        XCTAssertNoThrow(try JPEGFile.decode(whole))
        for bytes in [whole.prefix(whole.count * 2 / 3), try JPEGFile.encode(makeTestImage(width: 64, height: 64), segments: []).prefix(700)] {
            XCTAssertThrowsError(try JPEGFile.decode(Array(bytes), path: "cut.jpg")) { error in
                XCTAssertEqual("\(error)", "could not read cut.jpg: the JPEG file is cut short (its data ends before the image does); "
                               + "copy it again from where it came from")
            }
        }
    }

    /// An image over the size limit is refused from its header, before libjpeg allocates anything
    /// for it: a progressive JPEG's coefficient buffers for the whole image are allocated and zeroed
    /// when decompression starts, which for a 4 KB file declaring 65500x65500 took 12 GB and 49 s.
    /// Here an 8x8 baseline JPEG becomes progressive (SOF2, a DC-only first scan) of 16400x16400.
    func testOversizedProgressiveJPEGIsRefusedBeforeLibjpegAllocatesIt() throws {
        var bytes = try JPEGFile.encode(makeTestImage(width: 8, height: 8), segments: [])
        var at = 2
        while at + 4 <= bytes.count, bytes[at] == 0xFF {
            let marker = bytes[at + 1], length = Int(bytes[at + 2]) << 8 | Int(bytes[at + 3])
            if marker == 0xC0 {  // SOF0 -> SOF2; height and width follow the sample precision
                bytes[at + 1] = 0xC2
                bytes.replaceSubrange(at + 5..<at + 9, with: [0x40, 0x10, 0x40, 0x10])
            }
            if marker == 0xDA {  // SOS: Ss, Se, Ah/Al follow the component list; DC only is Ss = Se = 0
                let components = Int(bytes[at + 4])
                bytes.replaceSubrange(at + 5 + 2 * components..<at + 8 + 2 * components, with: [0, 0, 0])
                break
            }
            at += 2 + length
        }
        let peakBefore = peakResidentBytes()
        XCTAssertThrowsError(try JPEGFile.decode(bytes)) { error in
            XCTAssertEqual(error as? ImagingError, .readFailed(
                path: "JPEG data", reason: "the JPEG is 16400x16400 pixels; sdrepl reads images of up to 268435456 pixels (16384x16384)"))
        }
        XCTAssertLessThan(peakResidentBytes() - peakBefore, 256 << 20, "refusing the image raised the peak memory")
    }
}
