import CImagingShim
import Foundation

/// One PNG text chunk as stored: `tEXt` (Latin-1), `zTXt` (compressed Latin-1) or `iTXt` (UTF-8).
public struct PNGTextChunk: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case tEXt, zTXt, iTXt
    }
    public var kind: Kind
    public var keyword: String
    public var text: String
    /// iTXt only: language tag and translated keyword (empty for ours).
    public var languageTag: String
    public var translatedKeyword: String

    public init(kind: Kind, keyword: String, text: String, languageTag: String = "", translatedKeyword: String = "") {
        self.kind = kind
        self.keyword = keyword
        self.text = text
        self.languageTag = languageTag
        self.translatedKeyword = translatedKeyword
    }

    /// The chunk Pillow's `PngInfo.add_text(key, value)` makes, which is what A1111 writes:
    /// `tEXt` when the text is Latin-1 encodable, otherwise `iTXt` holding UTF-8, so a
    /// non-Latin-1 prompt is never mangled.
    public static func text(_ keyword: String, _ text: String) -> PNGTextChunk {
        let latin1 = text.unicodeScalars.allSatisfy { $0.value <= 0xFF }
        return PNGTextChunk(kind: latin1 ? .tEXt : .iTXt, keyword: keyword, text: text)
    }
}

/// A decoded PNG: its pixels as RGB8, its alpha when it has any, and all of its text chunks in file order.
public struct DecodedPNG: Sendable {
    public var image: RGBImage
    public var chunks: [PNGTextChunk]
    /// One byte a pixel, row-major; nil when the PNG has no alpha channel and no tRNS chunk.
    public var alpha: [UInt8]? = nil

    /// The text of the first chunk with this keyword.
    public func text(_ keyword: String) -> String? {
        chunks.first { $0.keyword == keyword }?.text
    }
}

/// PNG encoding and decoding through libpng (via the C shim that owns libpng's setjmp).
public enum PNGFile {
    /// Encodes an image as 8-bit RGB PNG with the given text chunks, all placed before the image
    /// data so readers that stop at IDAT still see them.
    ///
    /// NUL characters cannot be stored in a PNG text chunk and are dropped.
    /// - Throws: `ImagingError.encodeFailed` for an invalid keyword (checked here because libpng
    ///   would silently truncate or rewrite it) or if libpng fails.
    public static func encode(_ image: RGBImage, chunks: [PNGTextChunk]) throws -> [UInt8] {
        for chunk in chunks {
            if let problem = keywordProblem(chunk.keyword) {
                throw ImagingError.encodeFailed(format: "PNG", message: "text keyword \"\(chunk.keyword)\" \(problem)")
            }
        }
        // The C structs point at NUL-terminated copies that must outlive the call.
        var allocations: [UnsafeMutablePointer<CChar>] = []
        defer { allocations.forEach { $0.deallocate() } }
        func cString(_ bytes: [UInt8]) -> UnsafePointer<CChar> {
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            for (i, b) in bytes.enumerated() { copy[i] = CChar(bitPattern: b) }
            copy[bytes.count] = 0
            allocations.append(copy)
            return UnsafePointer(copy)
        }
        let texts: [sdr_png_text] = chunks.map { chunk in
            let textBytes: [UInt8]
            let compression: Int32
            switch chunk.kind {
            case .tEXt, .zTXt:
                textBytes = latin1Bytes(chunk.text)
                compression = chunk.kind == .tEXt ? -1 : 0
            case .iTXt:
                textBytes = Array(chunk.text.utf8)
                compression = 1
            }
            return sdr_png_text(
                key: cString(latin1Bytes(chunk.keyword)),
                text: cString(textBytes.filter { $0 != 0 }),
                compression: compression,
                lang: cString(Array(chunk.languageTag.utf8)),
                translated_key: cString(Array(chunk.translatedKeyword.utf8).filter { $0 != 0 }))
        }
        return try shimEncoded(format: "PNG") { out, length, message, capacity in
            image.pixels.withUnsafeBufferPointer { pixels in
                sdr_png_encode(pixels.baseAddress, UInt32(image.width), UInt32(image.height), texts, Int32(texts.count),
                               &out, &length, message, capacity)
            }
        }
    }

    /// Decodes a PNG of any colour type to RGB8 (alpha dropped) and returns its text chunks.
    /// - Parameter path: used only in error messages.
    /// - Throws: `ImagingError.readFailed` with libpng's message for a corrupt or non-PNG file.
    public static func decode(_ data: [UInt8], path: String = "PNG data") throws -> DecodedPNG {
        var decoded = sdr_png_image()
        if let failure = shimFailure({ message, capacity in
            data.withUnsafeBufferPointer { sdr_png_decode($0.baseAddress, $0.count, &decoded, message, capacity) }
        }) {
            throw ImagingError.readFailed(path: path, reason: failure)
        }
        defer { sdr_png_image_free(&decoded) }
        let count = Int(decoded.width) * Int(decoded.height) * 3
        let pixels = Array(UnsafeBufferPointer(start: decoded.pixels, count: count))
        let alpha = decoded.alpha.map { Array(UnsafeBufferPointer(start: $0, count: count / 3)) }
        let image = try RGBImage(width: Int(decoded.width), height: Int(decoded.height), pixels: pixels)
        var chunks: [PNGTextChunk] = []
        for i in 0..<Int(decoded.text_count) {
            let t = decoded.texts[i]
            let textBytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(t.text).assumingMemoryBound(to: UInt8.self), count: t.text_length))
            let kind: PNGTextChunk.Kind
            let text: String
            switch t.compression {
            case 1, 2:
                kind = .iTXt
                text = String(decoding: textBytes, as: UTF8.self)
            case 0:
                kind = .zTXt
                text = latin1String(textBytes)
            default:
                kind = .tEXt
                text = latin1String(textBytes)
            }
            chunks.append(PNGTextChunk(
                kind: kind, keyword: latin1String(bytes(t.key)), text: text,
                languageTag: String(cString: t.lang), translatedKeyword: String(cString: t.translated_key)))
        }
        return DecodedPNG(image: image, chunks: chunks, alpha: alpha)
    }

    /// Why a keyword is invalid (PNG spec 11.3.4.2: 1-79 printable Latin-1 characters, no
    /// leading, trailing or consecutive spaces), or nil if it is valid.
    static func keywordProblem(_ keyword: String) -> String? {
        let scalars = Array(keyword.unicodeScalars)
        guard (1...79).contains(scalars.count) else { return "must be 1 to 79 characters long" }
        guard scalars.allSatisfy({ (32...126).contains($0.value) || (161...255).contains($0.value) }) else {
            return "may only contain printable Latin-1 characters"
        }
        guard scalars.first != " ", scalars.last != " ", !keyword.contains("  ") else {
            return "may not start or end with a space or contain two in a row"
        }
        return nil
    }

    private static func bytes(_ p: UnsafeMutablePointer<CChar>) -> [UInt8] {
        Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: strlen(p)))
    }
}

/// Latin-1 bytes of a string; characters above U+00FF become `?` (callers choose iTXt for those).
func latin1Bytes(_ s: String) -> [UInt8] {
    s.unicodeScalars.map { $0.value <= 0xFF ? UInt8($0.value) : UInt8(ascii: "?") }
}

func latin1String(_ bytes: [UInt8]) -> String {
    var s = String.UnicodeScalarView()
    for b in bytes { s.append(Unicode.Scalar(b)) }
    return String(s)
}
