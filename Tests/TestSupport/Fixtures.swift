import Diffusion
import Foundation
import XCTest

/// The committed reference fixtures in `Tests/Fixtures`, written by `Tests/Fixtures/make_fixtures.py`
/// (what each file holds and the Python that produced it: `Tests/Fixtures/README.md`).
///
/// Every parity test opens its references through here, so they are all read the same way:
/// tensors with `Diffusion.SafetensorsFile` (the reader the engine itself uses), metadata with
/// `JSONDecoder`, and paths relative to `Tests/Fixtures`.
public enum Fixture {
    /// `Tests/Fixtures`, found from this source file's location so tests run from any directory.
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The repository's top directory.
    public static let repoRoot: URL = root.deletingLastPathComponent().deletingLastPathComponent()

    /// `Tests/Fixtures/<path>`.
    public static func url(_ path: String) -> URL {
        root.appendingPathComponent(path)
    }

    /// Opens the safetensors file at `path` (relative to `Tests/Fixtures`; `.safetensors` is added
    /// when `path` has no extension), e.g. `Fixture.tensors("reference/components_fp32")`.
    /// - Returns: the memory-mapped file; `tensor(name)` reads one reference as Float32.
    /// - Throws: `SafetensorsError` naming the file (and, from `tensor(_:)`, the missing tensor).
    public static func tensors(_ path: String) throws -> SafetensorsFile {
        let file = url(path)
        return try SafetensorsFile(url: file.pathExtension.isEmpty ? file.appendingPathExtension("safetensors") : file)
    }

    /// Decodes the JSON file at `path` (relative to `Tests/Fixtures`) as `T`,
    /// e.g. `Fixture.json(Manifest.self, "pipeline/manifest.json")`.
    /// - Throws: the read error, or a `DecodingError` saying which key of the file did not fit `T`.
    public static func json<T: Decodable>(_ type: T.Type, _ path: String, decoder: JSONDecoder = JSONDecoder()) throws -> T {
        try decoder.decode(T.self, from: Data(contentsOf: url(path)))
    }

    /// The bytes of the file at `path` (relative to `Tests/Fixtures`), for data in a format of its
    /// own, e.g. `Gzip.decompress(Fixture.bytes("reference/sd15_shapes.txt.gz"))`.
    /// - Throws: the read error, naming the file.
    public static func bytes(_ path: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: url(path)))
    }

    // MARK: The tiny SD1.5-topology model (README "4. Tiny models")

    /// Format (a): the diffusers folder (fp32 files and `.fp16.` variants).
    public static let tinySD15Folder = url("models/tiny-sd15-diffusers")
    /// Format (b): the single fp16 file in the original LDM layout.
    public static let tinySD15SingleFile = url("models/tiny-sd15.safetensors")
    /// The folder's `tokenizer/` (SD1.5's vocab.json and merges.txt).
    public static let tinySD15Tokenizer = tinySD15Folder.appendingPathComponent("tokenizer")

    // MARK: The tokenizer corpus (README "1. Tokenizer")

    /// `tokenizer/corpus.json`: transformers' `CLIPTokenizer` ids for every prompt of the corpus.
    public struct TokenizerCorpus: Decodable {
        public struct Entry: Decodable {
            public let prompt: String
            /// `tok(prompt).input_ids`: BOS, the prompt's tokens, EOS; never truncated.
            public let ids: [Int]
            /// `tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids`.
            public let ids77: [Int]
            /// Whether `ids77` had to cut the prompt.
            public let truncated: Bool
            enum CodingKeys: String, CodingKey {
                case prompt, ids, truncated
                case ids77 = "ids_77"
            }
        }
        public let entries: [Entry]
    }

    /// Reads `tokenizer/corpus.json`.
    public static func tokenizerCorpus() throws -> TokenizerCorpus {
        try json(TokenizerCorpus.self, "tokenizer/corpus.json")
    }
}

/// The old name of `Fixture`'s paths, kept for the tests that use it.
public typealias FixturePaths = Fixture

// MARK: - Comparing with references

/// The largest `|actual[i] − expected[i]|`; infinity when the counts differ or a difference is NaN,
/// so that a comparison against it can only pass on equal-sized, finite data.
public func maxAbsDifference(_ actual: [Float], _ expected: [Float]) -> Float {
    guard actual.count == expected.count else { return .infinity }
    var worst: Float = 0
    for (a, e) in zip(actual, expected) {
        let difference = abs(a - e)
        if difference.isNaN { return .infinity }
        worst = max(worst, difference)
    }
    return worst
}

/// As `maxAbsDifference(_:_:)` on the data; infinity when the shapes differ.
public func maxAbsDifference(_ actual: Tensor, _ expected: Tensor) -> Float {
    actual.shape == expected.shape ? maxAbsDifference(actual.data, expected.data) : .infinity
}

/// Fails unless `actual` has as many elements as `expected` and `max |actual − expected| ≤ tolerance`.
/// The message names `what`, the measured error and the tolerance.
/// - Returns: the measured maximum absolute difference.
@discardableResult
public func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Float, _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) -> Float {
    XCTAssertEqual(actual.count, expected.count, "\(what): element count", file: file, line: line)
    let worst = maxAbsDifference(actual, expected)
    XCTAssertLessThanOrEqual(worst, tolerance, "\(what): max abs error \(worst) > tolerance \(tolerance)", file: file, line: line)
    return worst
}

/// As `assertClose(_:_:tolerance:_:)` for tensors, which must also have the same shape.
@discardableResult
public func assertClose(_ actual: Tensor, _ expected: Tensor, tolerance: Float, _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) -> Float {
    XCTAssertEqual(actual.shape, expected.shape, "\(what): shape", file: file, line: line)
    guard actual.shape == expected.shape else { return .infinity }
    return assertClose(actual.data, expected.data, tolerance: tolerance, what, file: file, line: line)
}

/// Fails unless `actual` has `expected`'s shape and `max |actual − expected| ≤ relativeTolerance ·
/// max |expected|` (the tolerance relative to the output's scale, as the model parity tests state
/// it); a reference of all zeros fails too, since the test could not fail against it.
/// - Returns: the measured ratio, also printed so that the test log records the margins.
@discardableResult
public func assertParity(_ actual: Tensor, _ expected: Tensor, relativeTolerance: Float = 1e-4, _ what: String,
                         file: StaticString = #filePath, line: UInt = #line) -> Float {
    XCTAssertEqual(actual.shape, expected.shape, what, file: file, line: line)
    guard actual.shape == expected.shape else { return .infinity }
    let scale = expected.data.reduce(0) { max($0, abs($1)) }
    let worst = maxAbsDifference(actual, expected)
    let relative = worst / max(scale, .leastNormalMagnitude)
    print(String(format: "parity %@: max abs err %.3g, scale %.3g, relative %.3g", what, worst, scale, relative))
    XCTAssertGreaterThan(scale, 0, "\(what): the reference is all zeros, so the test could not fail", file: file, line: line)
    XCTAssertLessThanOrEqual(relative, relativeTolerance, "\(what): max abs err \(worst) for scale \(scale)", file: file, line: line)
    return relative
}
