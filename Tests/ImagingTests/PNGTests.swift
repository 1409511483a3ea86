import XCTest

@testable import Imaging

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// A second, independent PNG reader: walks the chunk stream, checks every CRC, and decodes
/// tEXt/iTXt chunks by the PNG specification, without libpng.
struct PNGChunkWalker {
    struct Chunk {
        var type: String
        var data: [UInt8]
    }
    var chunks: [Chunk] = []

    init(_ bytes: [UInt8]) throws {
        let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        guard bytes.starts(with: signature) else { throw ImagingError.readFailed(path: "walker", reason: "signature") }
        var at = 8
        func u32(_ i: Int) -> UInt32 { bytes[i..<i + 4].reduce(0) { $0 << 8 | UInt32($1) } }
        while at + 12 <= bytes.count {
            let length = Int(u32(at))
            let typeAndData = Array(bytes[at + 4..<at + 8 + length])
            guard Self.crc32(typeAndData) == u32(at + 8 + length) else {
                throw ImagingError.readFailed(path: "walker", reason: "bad CRC")
            }
            chunks.append(Chunk(type: String(decoding: typeAndData.prefix(4), as: UTF8.self), data: Array(typeAndData.dropFirst(4))))
            at += 12 + length
        }
        guard at == bytes.count, chunks.last?.type == "IEND" else { throw ImagingError.readFailed(path: "walker", reason: "truncated") }
    }

    /// (chunk type, keyword, text) of every tEXt and uncompressed iTXt chunk.
    var texts: [(type: String, keyword: String, text: String)] {
        chunks.compactMap { chunk in
            let parts = chunk.data.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { return nil }
            let keyword = String(decoding: parts[0], as: UTF8.self)
            switch chunk.type {
            case "tEXt":
                return (chunk.type, keyword, String(parts[1].map { Character(Unicode.Scalar($0)) }))
            case "iTXt":
                let rest = Array(parts[1])
                guard rest.count >= 2, rest[0] == 0 else { return nil }  // uncompressed only
                let fields = rest.dropFirst(2).split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
                guard fields.count == 3 else { return nil }
                return (chunk.type, keyword, String(decoding: fields[2], as: UTF8.self))
            default:
                return nil
            }
        }
    }

    static func crc32(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
        }
        return ~crc
    }
}

func sampleMetadata(prompt: String = "a red fox in snow", negative: String = "blurry") -> ImageMetadata {
    let recipe = ImageRecipe(
        prompt: prompt + ", highly detailed", negativePrompt: negative, steps: 25, sampler: "PLMS", cfgScale: 7.5,
        seed: 1234, width: 64, height: 48, modelHash: "abcdef0123", modelName: "v1-5-pruned-emaonly",
        style: "enhance", version: "sdrepl 0.1.0")
    return ImageMetadata(
        recipe: recipe, typedPrompt: prompt, typedNegativePrompt: negative, style: "enhance",
        timestamp: Date(timeIntervalSince1970: 1_795_576_522), settingsJSON: #"{"cfg":7.5,"seed":1234,"steps":25}"#)
}

final class PNGTests: XCTestCase {
    func testWriteThenReadGivesIdenticalPixelsAndEveryChunk() throws {
        let image = makeTestImage()
        let metadata = sampleMetadata()
        let bytes = try PNGFile.encode(image, chunks: metadata.pngChunks)

        let decoded = try PNGFile.decode(bytes)
        XCTAssertEqual(decoded.image, image)
        XCTAssertEqual(decoded.chunks, metadata.pngChunks)
        XCTAssertEqual(decoded.text("parameters"), metadata.infotext)
        XCTAssertEqual(decoded.text("Timestamp"), "2026-11-25T03:15:22Z")
        XCTAssertEqual(decoded.text("AI_Watermark"), "Generated using Stable Diffusion v1.5 (AI Origin Watermark)")

        // Independently of libpng: CRCs valid, text chunks before IDAT, keys and types as specified.
        let walker = try PNGChunkWalker(bytes)
        XCTAssertEqual(walker.chunks.first?.type, "IHDR")
        XCTAssertEqual(walker.chunks[1].data.isEmpty, false)
        let firstIDAT = try XCTUnwrap(walker.chunks.firstIndex { $0.type == "IDAT" })
        let lastText = try XCTUnwrap(walker.chunks.lastIndex { $0.type == "tEXt" || $0.type == "iTXt" })
        XCTAssertLessThan(lastText, firstIDAT)
        let texts = walker.texts
        XCTAssertEqual(texts.map(\.keyword), [
            "parameters", "Prompt", "NegativePrompt", "Style", "Timestamp", "Parameters", "AI_Watermark", "XML:com.adobe.xmp",
        ])
        XCTAssertEqual(texts.map(\.type), ["tEXt", "tEXt", "tEXt", "tEXt", "tEXt", "tEXt", "tEXt", "iTXt"])
        XCTAssertEqual(texts[0].text, """
            a red fox in snow, highly detailed
            Negative prompt: blurry
            Steps: 25, Sampler: PLMS, CFG scale: 7.5, Seed: 1234, Size: 64x48, Model hash: abcdef0123, Model: v1-5-pruned-emaonly, Style: enhance, Version: sdrepl 0.1.0
            """)
        XCTAssertEqual(texts[5].text, #"{"cfg":7.5,"seed":1234,"steps":25}"#)
        let xmp = texts[7].text
        XCTAssertTrue(xmp.hasPrefix("<?xpacket begin=\"\u{FEFF}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>"))
        XCTAssertTrue(xmp.hasSuffix("<?xpacket end=\"w\"?>"))
        XCTAssertTrue(xmp.contains(#"Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia""#))
        XCTAssertTrue(xmp.contains(#"xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/""#))
    }

    func testXMPPacketIsWellFormedXML() throws {
        let packet = sampleMetadata().xmpPacket
        // XMLDocument is not on every platform; XMLParser is.
        let parser = XMLParser(data: Data(packet.utf8))
        XCTAssertTrue(parser.parse(), "XMP packet is not well-formed: \(String(describing: parser.parserError))")
    }

    func testNonLatin1TextGoesToITXtAsUTF8AndLatin1StaysTEXt() throws {
        let prompt = "狐狸在雪中 🦊, Füchse"
        let metadata = sampleMetadata(prompt: prompt, negative: "flou, très")
        let bytes = try PNGFile.encode(makeTestImage(width: 8, height: 8), chunks: metadata.pngChunks)
        let texts = try PNGChunkWalker(bytes).texts
        let byKey = Dictionary(texts.map { ($0.keyword, $0) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(byKey["parameters"]?.type, "iTXt")
        XCTAssertEqual(byKey["Prompt"]?.type, "iTXt")
        XCTAssertEqual(byKey["Prompt"]?.text, prompt)
        XCTAssertEqual(byKey["NegativePrompt"]?.type, "tEXt", "Latin-1 text stays tEXt, as Pillow writes it")
        XCTAssertEqual(byKey["NegativePrompt"]?.text, "flou, très")
        // The tEXt chunk holds Latin-1 bytes: "è" is the single byte 0xE8.
        let negativeChunk = try XCTUnwrap(PNGChunkWalker(bytes).chunks.first { $0.data.starts(with: Array("NegativePrompt\0".utf8)) })
        XCTAssertEqual(negativeChunk.data, Array("NegativePrompt\0flou, tr".utf8) + [0xE8, 0x73])
        XCTAssertEqual(try PNGFile.decode(bytes).text("parameters"), metadata.infotext)
    }

    func testReadsZTXtChunks() throws {
        let image = try RGBImage(width: 2, height: 1, pixels: [10, 10, 10, 200, 200, 200])
        let bytes = try PNGFile.encode(image, chunks: [PNGTextChunk(kind: .zTXt, keyword: "Comment", text: "zipped: café")])
        let decoded = try PNGFile.decode(bytes)
        XCTAssertEqual(decoded.chunks, [PNGTextChunk(kind: .zTXt, keyword: "Comment", text: "zipped: café")])
        XCTAssertEqual(decoded.image, image)
    }

    func testReadsRGBAGreyAndPaletteImagesMadeByAnotherWriter() throws {
        // RGBA, 8-bit: alpha is dropped.
        let rgba = craftPNG(width: 2, height: 1, colorType: 6, rows: [[1, 2, 3, 255, 4, 5, 6, 0]], chunks: [])
        XCTAssertEqual(try PNGFile.decode(rgba).image.pixels, [1, 2, 3, 4, 5, 6])
        // Grey, 8-bit: widened to RGB.
        let grey = craftPNG(width: 3, height: 1, colorType: 0, rows: [[0, 128, 255]], chunks: [])
        XCTAssertEqual(try PNGFile.decode(grey).image.pixels, [0, 0, 0, 128, 128, 128, 255, 255, 255])
        // Palette, 8-bit: expanded.
        let palette = craftPNG(
            width: 2, height: 1, colorType: 3, rows: [[1, 0]],
            chunks: [("PLTE", [10, 20, 30, 40, 50, 60])])
        XCTAssertEqual(try PNGFile.decode(palette).image.pixels, [40, 50, 60, 10, 20, 30])
        // 16-bit RGB: reduced to 8 bits.
        let deep = craftPNG(width: 1, height: 1, colorType: 2, bitDepth: 16, rows: [[0xAB, 0xCD, 0x12, 0x34, 0xFF, 0xFF]], chunks: [])
        XCTAssertEqual(try PNGFile.decode(deep).image.pixels, [0xAB, 0x12, 0xFF])
    }

    func testCorruptDataThrowsInsteadOfCrashing() throws {
        var bytes = try PNGFile.encode(makeTestImage(), chunks: [])
        XCTAssertThrowsError(try PNGFile.decode(Array(bytes.prefix(60)))) { error in
            guard case ImagingError.readFailed = error else { return XCTFail("\(error)") }
        }
        bytes[bytes.count / 2] ^= 0xFF  // inside IDAT: a CRC or zlib error from libpng
        XCTAssertThrowsError(try PNGFile.decode(bytes))
        XCTAssertThrowsError(try PNGFile.decode(Array("not a png".utf8)))
    }

    /// A chunk that declares more bytes than the file has left is refused before libpng reads it:
    /// libpng allocates and zeroes the declared length first, so this 100-byte file, whose tEXt chunk
    /// declares 2 GB, took 2 GB of memory and seconds (found by Fuzz/run.sh image).
    func testChunkLongerThanTheFileIsRefusedBeforeLibpngAllocatesIt() throws {
        let whole = craftPNG(width: 1, height: 1, colorType: 2, rows: [[1, 2, 3]], chunks: [("tEXt", Array("parameters\0a fox".utf8))])
        // Signature and IHDR take 33 bytes; the tEXt chunk's length field follows.
        let bytes = Array(whole.prefix(33)) + [0x7F, 0xFF, 0xFF, 0xFF] + Array(whole.dropFirst(37))
        let peakBefore = peakResidentBytes()
        XCTAssertThrowsError(try PNGFile.decode(bytes)) { error in
            let left = bytes.count - 33 - 12  // after the tEXt chunk's length, type and CRC
            XCTAssertEqual(error as? ImagingError, .readFailed(
                path: "PNG data",
                reason: "the PNG chunk 'tEXt' at byte 33 declares 2147483647 bytes of data, but the file has only \(left) more (truncated or damaged)"))
        }
        XCTAssertLessThan(peakResidentBytes() - peakBefore, 256 << 20, "decoding a 100-byte file raised the peak memory")
        // Bytes after IEND are not chunks and are not checked, as libpng never reads them.
        XCTAssertEqual(try PNGFile.decode(whole + [0xFF, 0xFF, 0xFF, 0xFF, 0, 0]).image.pixels, [1, 2, 3])
    }

    func testInvalidKeywordIsAnEncodeErrorNotACrash() {
        // PNG keywords are 1...79 printable Latin-1 characters; libpng would truncate silently.
        for key in [String(repeating: "k", count: 80), "", " lead", "two  spaces", "tab\tkey", "ключ"] {
            XCTAssertThrowsError(try PNGFile.encode(makeTestImage(width: 4, height: 4), chunks: [.text(key, "v")])) { error in
                guard case ImagingError.encodeFailed(format: "PNG", let message) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains("keyword"), message)
            }
        }
        XCTAssertNoThrow(try PNGFile.encode(makeTestImage(width: 4, height: 4), chunks: [.text(String(repeating: "k", count: 79), "v")]))
    }
}

/// Builds a PNG without libpng (filter 0 rows, zlib "stored" blocks), for files that look as if
/// another program made them. `chunks` go between IHDR and IDAT.
func craftPNG(
    width: Int, height: Int, colorType: UInt8, bitDepth: UInt8 = 8, rows: [[UInt8]], chunks: [(String, [UInt8])],
    trailingChunks: [(String, [UInt8])] = []
) -> [UInt8] {
    func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typeAndData = Array(type.utf8) + data
        return be32(UInt32(data.count)) + typeAndData + be32(PNGChunkWalker.crc32(typeAndData))
    }
    let raw: [UInt8] = rows.flatMap { row -> [UInt8] in [0] + row }
    // zlib header (deflate, 32K window, no preset dictionary, check bits), one final stored block.
    var a: UInt32 = 1, b: UInt32 = 0
    for byte in raw {
        a = (a + UInt32(byte)) % 65521
        b = (b + a) % 65521
    }
    let length = UInt16(raw.count)
    let storedHeader: [UInt8] = [0x78, 0x01, 0x01, UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8(~length >> 8)]
    let zlib: [UInt8] = storedHeader + raw + be32(b << 16 | a)
    var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    png += chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [bitDepth, colorType, 0, 0, 0])
    for (type, data) in chunks { png += chunk(type, data) }
    png += chunk("IDAT", zlib)
    for (type, data) in trailingChunks { png += chunk(type, data) }
    png += chunk("IEND", [])
    return png
}

/// The process's peak resident set so far, in bytes (`ru_maxrss` is in kilobytes on Linux).
func peakResidentBytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}
