// libFuzzer harness: arbitrary bytes through `load FILE` / `sdrepl info FILE`'s reader
// (`ImageRecipeReader.read`: PNG or JPEG decoded by libpng/libjpeg through the C shim, the text
// chunks or EXIF UserComment, the infotext). Built by Fuzz/run.sh against the Imaging module
// compiled from Sources/Imaging and Sources/CImagingShim.
//
// libpng and libjpeg are Debian's, not instrumented: the fuzzer is guided by coverage of the shim
// and the Swift code. So that the metadata parsers are reached without first getting a whole image
// past libpng or libjpeg, an input that is neither is read as what those decoders hand on: an EXIF
// APP1 payload when it starts with `Exif\0\0`, otherwise an infotext. And a PNG's chunk CRCs are
// set right before decoding: libpng drops a text chunk whose CRC is wrong, which would hide almost
// every mutation of the text from the code that reads it.
import CZlib
import Imaging

private let exifHeader: [UInt8] = Array("Exif".utf8) + [0, 0]
private let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if bytes.starts(with: pngSignature) { fixChunkCRCs(&bytes) }
    do {
        let stored = try ImageRecipeReader.read(bytes, path: "fuzz-input")
        _ = stored.promptToLoad
        _ = stored.declaresAIOrigin
        checkInfotext(stored.recipe)
    } catch let error as ImagingError {
        _ = error.description
    } catch {
        preconditionFailure("ImageRecipeReader threw \(type(of: error)), not an ImagingError: \(error)")
    }
    if bytes.starts(with: exifHeader) {
        if let comment = EXIF.userComment(inAPP1: bytes) {
            checkInfotext(Infotext.parse(comment))
        }
    } else if !bytes.starts(with: pngSignature), !bytes.starts(with: [0xFF, 0xD8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        checkInfotext(Infotext.parse(text))
        // A1111's quote is JSON's: unquoting what it quoted gives the text back.
        let quoted = Infotext.quote(text)
        precondition(Infotext.unquote(quoted) == text || quoted == text, "quote/unquote changed \(text.debugDescription)")
    }
    return 0
}

/// A parsed recipe renders to an infotext that parses again; its prompts survive the round trip
/// unless they hold what the format cannot carry (checked by the unit tests, not here).
private func checkInfotext(_ recipe: ImageRecipe) {
    let rendered = Infotext.render(recipe)
    _ = Infotext.parse(rendered)
    _ = Infotext.fields(inParametersLine: rendered)
}

/// Rewrites the CRC of every whole chunk (length, type, data, CRC) after the signature.
private func fixChunkCRCs(_ png: inout [UInt8]) {
    var at = pngSignature.count
    while at + 12 <= png.count {
        let length = png[at..<at + 4].reduce(0) { $0 << 8 | Int($1) }
        guard length <= png.count - at - 12 else { return }
        let crc = png.withUnsafeBufferPointer { crc32(0, $0.baseAddress! + at + 4, UInt32(4 + length)) }
        for k in 0..<4 { png[at + 8 + length + k] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * k)) }
        at += 12 + length
    }
}
