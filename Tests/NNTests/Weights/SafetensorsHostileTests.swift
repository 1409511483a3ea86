import Foundation
import TestSupport
import XCTest
@testable import NN
import Diffusion

/// One test per way a safetensors file can be broken: each builds the file byte by byte and checks
/// the exact typed error (and so that nothing crashed, hung or allocated without bound).
final class SafetensorsHostileTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = try makeWeightsTestDirectory(self)
    }

    /// Opens `bytes` as a file and returns the error, or nil (with a test failure) if it opened.
    private func openError(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> (SafetensorsError?, String) {
        let url = try writeTestFile(bytes, "t.safetensors", in: dir)
        return (safetensorsError({ _ = try SafetensorsFile(url: url) }, file: file, line: line), url.path)
    }

    private func openError(header: String, data: [UInt8] = [], file: StaticString = #filePath, line: UInt = #line) throws -> (SafetensorsError?, String) {
        try openError(safetensorsBytes(header: header, data: data), file: file, line: line)
    }

    private func entry(_ name: String, _ dtype: String = "F32", _ shape: String = "[2]", _ offsets: String = "[0,8]") -> String {
        "\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":\(offsets)}"
    }

    private let eight = [UInt8](repeating: 0, count: 8)

    func testEmptyFile() throws {
        let (e, p) = try openError([])
        XCTAssertEqual(e, .emptyFile(path: p))
    }

    func testFileShorterThanHeaderLength() throws {
        let (e, p) = try openError([1, 0, 0, 0, 0])
        XCTAssertEqual(e, .fileTooShort(path: p, size: 5))
    }

    func testHeaderShorterThanDeclared() throws {
        // A real header cut in the middle, as by an interrupted download.
        let full = safetensorsBytes(header: "{" + entry("w") + "}", data: eight)
        let (e, p) = try openError(Array(full.prefix(30)))
        XCTAssertEqual(e, .headerBeyondFile(path: p, declared: UInt64(full.count - 16), available: 22))
    }

    func testHeaderLengthOverLimit() throws {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(200_000_000).littleEndian) { bytes.append(contentsOf: $0) }
        let (e, p) = try openError(bytes + Array("{}".utf8))
        XCTAssertEqual(e, .headerTooLarge(path: p, declared: 200_000_000, limit: 100_000_000))
        let (e2, _) = try openError([UInt8](repeating: 0xFF, count: 16))
        XCTAssertEqual(e2, .headerTooLarge(path: p, declared: .max, limit: 100_000_000))
    }

    func testInvalidJSON() throws {
        let (e, p) = try openError(header: "{\"w\": {\"dtype\": ")
        XCTAssertEqual(e, .invalidJSON(path: p, offset: 16, reason: "unexpected end of header"))
        let (e2, _) = try openError(header: "{'w': 1}")
        XCTAssertEqual(e2, .invalidJSON(path: p, offset: 1, reason: "expected a string key"))
        let (e3, _) = try openError(header: "{} {}")
        XCTAssertEqual(e3, .invalidJSON(path: p, offset: 3, reason: "unexpected text after the end of the header object"))
    }

    func testNestingIsBounded() throws {
        let (e, p) = try openError(header: String(repeating: "[", count: 100_000))
        XCTAssertEqual(e, .invalidJSON(path: p, offset: JSONParser.maxDepth, reason: "nested more than \(JSONParser.maxDepth) levels deep"))
    }

    /// A long array (the worst case for the parser's memory) is refused when it passes the limit.
    func testOverlongArrayIsRefusedEarly() throws {
        let zeros = Array(repeating: "0", count: 1_000_000).joined(separator: ",")
        let header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[" + zeros + "],\"data_offsets\":[0,0]}}"
        let (e, p) = try openError(header: header)
        let offset = 30 + 2 * JSONParser.maxArrayLength  // just after the first element past the limit
        XCTAssertEqual(e, .invalidJSON(path: p, offset: offset, reason: "an array longer than \(JSONParser.maxArrayLength) elements, which no tensor shape has"))
    }

    func testHeaderNotUTF8() throws {
        let header = Array("{\"w".utf8) + [0xFF, 0xFE] + Array("\":1}".utf8)
        let (e, p) = try openError(safetensorsBytes(header: header))
        XCTAssertEqual(e, .headerNotUTF8(path: p, offset: 3))
        // An overlong encoding of '/' (C0 AF) is not UTF-8 either.
        let (e2, _) = try openError(safetensorsBytes(header: Array("{\"".utf8) + [0xC0, 0xAF] + Array("\":1}".utf8)))
        XCTAssertEqual(e2, .headerNotUTF8(path: p, offset: 2))
    }

    func testHeaderNotAnObject() throws {
        let (e, p) = try openError(header: "[1, 2]")
        XCTAssertEqual(e, .headerNotObject(path: p, found: "an array"))
        let (e2, _) = try openError(header: "\"weights\"")
        XCTAssertEqual(e2, .headerNotObject(path: p, found: "a string"))
    }

    func testEntryNotAnObject() throws {
        let (e, p) = try openError(header: #"{"w": [0, 8]}"#, data: eight)
        XCTAssertEqual(e, .invalidEntry(path: p, tensor: "w", reason: "it is an array, not an object"))
    }

    func testEntryFieldsOfWrongType() throws {
        let (e1, p) = try openError(header: #"{"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, data: eight)
        XCTAssertEqual(e1, .invalidEntry(path: p, tensor: "w", reason: "'dtype' is not a string"))
        let (e2, _) = try openError(header: #"{"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}"#, data: eight)
        XCTAssertEqual(e2, .invalidEntry(path: p, tensor: "w", reason: "'shape' is not an array"))
        let (e3, _) = try openError(header: #"{"w":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}}"#, data: eight)
        XCTAssertEqual(e3, .invalidEntry(path: p, tensor: "w", reason: "'shape' holds an array, not a number"))
        let (e4, _) = try openError(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, data: eight)
        XCTAssertEqual(e4, .invalidEntry(path: p, tensor: "w", reason: "'data_offsets' has 1 elements instead of 2"))
        let (e5, _) = try openError(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}}"#, data: eight)
        XCTAssertEqual(e5, .invalidEntry(path: p, tensor: "w", reason: "'data_offsets' holds a string, not a number"))
        let (e6, _) = try openError(header: #"{"w":{"dtype":"F32","shape":[2]}}"#, data: eight)
        XCTAssertEqual(e6, .invalidEntry(path: p, tensor: "w", reason: "it has no 'data_offsets' field"))
        let (e7, _) = try openError(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}}"#, data: eight)
        XCTAssertEqual(e7, .invalidEntry(path: p, tensor: "w",
                                         reason: "'data_offsets' holds -1, which is not a non-negative integer that fits in 64 bits"))
    }

    func testMetadataNotStrings() throws {
        let (e, p) = try openError(header: "{\"__metadata__\":{\"steps\":20}," + entry("w") + "}", data: eight)
        XCTAssertEqual(e, .invalidMetadata(path: p, reason: "the value of 'steps' is a number, not a string"))
    }

    func testUnknownDtype() throws {
        let (e, p) = try openError(header: "{" + entry("w", "F17") + "}", data: eight)
        XCTAssertEqual(e, .unknownDtype(path: p, tensor: "w", dtype: "F17"))
        // dtype names are case-sensitive in the format
        let (e2, _) = try openError(header: "{" + entry("w", "f32") + "}", data: eight)
        XCTAssertEqual(e2, .unknownDtype(path: p, tensor: "w", dtype: "f32"))
    }

    func testShapeTimesDtypeSizeDiffersFromByteRange() throws {
        let (e, p) = try openError(header: "{" + entry("w", "F16", "[2,3]", "[0,8]") + "}", data: eight)
        XCTAssertEqual(e, .sizeMismatch(path: p, tensor: "w", dtype: "F16", shape: [2, 3], expectedBytes: 12, actualBytes: 8))
    }

    func testOffsetsBeyondData() throws {
        let (e, p) = try openError(header: "{" + entry("w", "F32", "[4]", "[0,16]") + "}", data: eight)
        XCTAssertEqual(e, .offsetsOutOfRange(path: p, tensor: "w", end: 16, dataLength: 8))
        let (e2, _) = try openError(header: "{" + entry("w", "F32", "[2]", "[0,18446744073709551615]") + "}", data: eight)
        XCTAssertEqual(e2, .offsetsOutOfRange(path: p, tensor: "w", end: .max, dataLength: 8))
    }

    func testReversedOffsets() throws {
        let (e, p) = try openError(header: "{" + entry("w", "F32", "[2]", "[8,0]") + "}", data: eight)
        XCTAssertEqual(e, .reversedOffsets(path: p, tensor: "w", begin: 8, end: 0))
    }

    func testOverlappingTensors() throws {
        let (e, p) = try openError(header: "{" + entry("a", "F32", "[2]", "[0,8]") + "," + entry("b", "F32", "[2]", "[4,12]") + "}",
                                   data: [UInt8](repeating: 0, count: 12))
        XCTAssertEqual(e, .overlappingTensors(path: p, first: "a", second: "b"))
    }

    func testGapInData() throws {
        let (e, p) = try openError(header: "{" + entry("a", "F32", "[1]", "[0,4]") + "," + entry("b", "F32", "[1]", "[8,12]") + "}",
                                   data: [UInt8](repeating: 0, count: 12))
        XCTAssertEqual(e, .gapInData(path: p, offset: 4, before: "b"))
    }

    func testUnindexedTrailingData() throws {
        let (e, p) = try openError(header: "{" + entry("a", "F32", "[1]", "[0,4]") + "}", data: eight)
        XCTAssertEqual(e, .unindexedTrailingData(path: p, indexedEnd: 4, dataLength: 8))
    }

    func testNegativeAndNonIntegerDimensions() throws {
        let (e, p) = try openError(header: "{" + entry("w", "F32", "[-2]", "[0,8]") + "}", data: eight)
        XCTAssertEqual(e, .invalidDimension(path: p, tensor: "w", dimension: "-2"))
        let (e2, _) = try openError(header: "{" + entry("w", "F32", "[2.0]", "[0,8]") + "}", data: eight)
        XCTAssertEqual(e2, .invalidDimension(path: p, tensor: "w", dimension: "2.0"))
        let (e3, _) = try openError(header: "{" + entry("w", "F32", "[92233720368547758070]", "[0,8]") + "}", data: eight)
        XCTAssertEqual(e3, .invalidDimension(path: p, tensor: "w", dimension: "92233720368547758070"))
    }

    func testDimensionProductOverflow() throws {
        // 2^32 · 2^32 overflows Int64 in the element count.
        let (e, p) = try openError(header: "{" + entry("w", "F32", "[4294967296,4294967296]", "[0,8]") + "}", data: eight)
        XCTAssertEqual(e, .sizeOverflow(path: p, tensor: "w", shape: [4_294_967_296, 4_294_967_296]))
        // 2^61 elements fit, but 2^61 · 32 bits do not.
        let (e2, _) = try openError(header: "{" + entry("w", "F32", "[2305843009213693952]", "[0,8]") + "}", data: eight)
        XCTAssertEqual(e2, .sizeOverflow(path: p, tensor: "w", shape: [2_305_843_009_213_693_952]))
        // A zero dimension makes the element count 0, but the other dimensions must still multiply
        // without overflow (a stride computed from them would not).
        let (e3, _) = try openError(header: "{" + entry("w", "F32", "[0,9223372036854775807]", "[0,8]") + "}", data: eight)
        XCTAssertEqual(e3, .sizeMismatch(path: p, tensor: "w", dtype: "F32", shape: [0, .max], expectedBytes: 0, actualBytes: 8))
        let (e4, _) = try openError(header: "{" + entry("w", "F32", "[0,4294967296,4294967296]", "[0,8]") + "}", data: eight)
        XCTAssertEqual(e4, .sizeOverflow(path: p, tensor: "w", shape: [0, 4_294_967_296, 4_294_967_296]))
    }

    func testDuplicateNames() throws {
        let (e, p) = try openError(header: "{" + entry("w", "F32", "[1]", "[0,4]") + "," + entry("w", "F32", "[1]", "[4,8]") + "}", data: eight)
        XCTAssertEqual(e, .duplicateName(path: p, name: "w"))
        // The same name spelled with an escape is still the same name.
        let (e2, _) = try openError(header: "{" + entry("w", "F32", "[1]", "[0,4]") + "," + entry("\\u0077", "F32", "[1]", "[4,8]") + "}", data: eight)
        XCTAssertEqual(e2, .duplicateName(path: p, name: "w"))
    }

    func testNotARegularFileOrMissing() throws {
        XCTAssertEqual(safetensorsError { _ = try SafetensorsFile(url: dir) }, .notARegularFile(path: dir.path))
        let fifo = dir.appendingPathComponent("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertEqual(safetensorsError { _ = try SafetensorsFile(url: URL(fileURLWithPath: fifo)) }, .notARegularFile(path: fifo))
        let missing = dir.appendingPathComponent("missing.safetensors").path
        XCTAssertEqual(safetensorsError { _ = try SafetensorsFile(url: URL(fileURLWithPath: missing)) },
                       .cannotOpen(path: missing, reason: "no such file or folder"))
    }

    /// Every message names the file and, where there is one, the tensor, and says what to do.
    func testDescriptionsNameTheProblemAndTheTensor() throws {
        let (e, _) = try openError(header: "{" + entry("model.diffusion_model.out.2.weight", "F16", "[2,3]", "[0,8]") + "}", data: eight)
        let text = try XCTUnwrap(e).description
        XCTAssertTrue(text.contains("'model.diffusion_model.out.2.weight'"), text)
        XCTAssertTrue(text.contains("12 bytes"), text)
        XCTAssertTrue(text.contains("download or convert it again"), text)
    }
}
