import Foundation
import XCTest
import TestSupport
@testable import Diffusion
@testable import NN

final class TokenizerTests: XCTestCase {
    // MARK: - The bundled vocabulary

    func testBundledVocabularyIsCLIPs() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        // len(open_clip.SimpleTokenizer().encoder) == 49408; specials last.
        XCTAssertEqual(tokenizer.vocabularySize, 49408)
        XCTAssertEqual(tokenizer.startToken, 49406)
        XCTAssertEqual(tokenizer.endToken, 49407)
        XCTAssertEqual(tokenizer.padToken, 49407)
        XCTAssertEqual(tokenizer.commaToken, 267)
        // Byte symbols in bytes_to_unicode order: '!' first, then the same with </w> from 256.
        XCTAssertEqual(tokenizer.token(0), "!")
        XCTAssertEqual(tokenizer.token(256), "!</w>")
        XCTAssertEqual(tokenizer.token(320), "a</w>")
        XCTAssertEqual(tokenizer.token(512), "in")  // the first merge: "i n"
        XCTAssertEqual(tokenizer.token(49405), "jeky ll</w>".replacingOccurrences(of: " ", with: ""))
        XCTAssertNil(tokenizer.token(49408))
        XCTAssertEqual(tokenizer.id(of: "cat</w>"), 2368)
    }

    func testKnownPromptIds() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        // CLIPTokenizer.from_pretrained("runwayml/stable-diffusion-v1-5", subfolder="tokenizer")("a photo of a cat").input_ids
        XCTAssertEqual(tokenizer.encode("a photo of a cat"), [49406, 320, 1125, 539, 320, 2368, 49407])
        XCTAssertEqual(tokenizer.encode(""), [49406, 49407])
        XCTAssertEqual(tokenizer.tokenize("   \n\t "), [])
    }

    func testPaddingTo77WithEndToken() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let padded = try tokenizer.encode("a photo of a cat", paddedTo: 77)
        XCTAssertEqual(padded.count, 77)
        XCTAssertEqual(Array(padded.prefix(7)), [49406, 320, 1125, 539, 320, 2368, 49407])
        XCTAssertEqual(Array(padded.dropFirst(7)), Array(repeating: 49407, count: 70))
    }

    func testNoSilentTruncation() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let long = Array(repeating: "cat", count: 76).joined(separator: " ")
        XCTAssertEqual(tokenizer.tokenize(long).count, 76)
        XCTAssertThrowsError(try tokenizer.encode(long, paddedTo: 77)) { error in
            XCTAssertEqual(error as? TokenizerError, .tooLong(tokens: 76, limit: 75))
        }
        // Asked for explicitly: BOS + the first 75 + EOS, as transformers' truncation=True.
        let truncated = try tokenizer.encode(long, paddedTo: 77, truncating: true)
        XCTAssertEqual(truncated, [49406] + Array(repeating: 2368, count: 75) + [49407])
        // Exactly 75 fits.
        let exact = Array(repeating: "cat", count: 75).joined(separator: " ")
        XCTAssertEqual(try tokenizer.encode(exact, paddedTo: 77), [49406] + Array(repeating: 2368, count: 75) + [49407])
    }

    func testWordPatternSplitsAsCLIPDoes() {
        func words(_ text: String) -> [String] {
            CLIPTokenizer.words(Array(text.unicodeScalars)).map { slice in
                var s = String()
                s.unicodeScalars.append(contentsOf: slice)
                return s
            }
        }
        // regex.findall(CLIPTokenizer pattern, text) on the already lower-cased text.
        XCTAssertEqual(words("it's the sun's 'sunset'"), ["it", "'s", "the", "sun", "'s", "'s", "unset", "'"])
        XCTAssertEqual(words("8k,trending!!"), ["8", "k", ",", "trending", "!!"])
        // The special spellings match first but are re-split by the ByteLevel pre-tokenizer's
        // GPT-2 pattern: backend_tokenizer.pre_tokenizer.pre_tokenize_str("<|endoftext|>a")
        XCTAssertEqual(words("x<|endoftext|>!y!<|endoftext|>"), ["x", "<|", "endoftext", "|>", "!", "y", "!<|", "endoftext", "|>"])
        XCTAssertEqual(words("we'll they're i'm 'd'x"), ["we", "'ll", "they", "'re", "i", "'m", "'d", "'", "x"])
        XCTAssertEqual(words("猫と犬 ½ⅻ"), ["猫と犬", "½", "ⅻ"])
    }

    func testUnicodeAgainstReference() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        // tok = CLIPTokenizer.from_pretrained("Tests/Fixtures/models/tiny-sd15-diffusers/tokenizer")
        // (transformers 5.23); tok(text).input_ids[1:-1]
        XCTAssertEqual(tokenizer.tokenize("A (Majestic) Lion, 8k, trending on ArtStation!!"),
                       [320, 263, 15335, 264, 5567, 267, 279, 330, 267, 6087, 525, 1486, 2631, 748])
        XCTAssertEqual(tokenizer.tokenize("猫と犬 café naïve Ωmega ΟΔΟΣ"),
                       [163, 234, 104, 34671, 163, 232, 361, 15304, 1097, 35689, 563, 139, 231, 9068, 138, 123, 138, 112, 138, 123, 139, 481])
        XCTAssertEqual(tokenizer.tokenize("emoji 🐱👍🏽 test"), [16327, 35710, 43722, 1628])
        XCTAssertEqual(tokenizer.tokenize("１２３ ⅻ ½"), [171, 120, 495, 171, 120, 496, 171, 120, 497, 158, 227, 375, 33613])
        // Per-character lower case: İ -> i + U+0307, final Σ -> σ (no final-sigma rule); ǅ -> ǆ.
        XCTAssertEqual(tokenizer.tokenize("İstanbul ΟΔΟΣ ǅ"), [328, 16384, 11231, 138, 123, 138, 112, 138, 123, 139, 481, 131, 484])
        // U+001C is not white space for \s; NEL and LINE SEPARATOR are.
        XCTAssertEqual(tokenizer.tokenize("x\u{1C}y\u{85}z\u{2028}w"), [343, 472, 344, 345, 342])
        // NFC composes Hangul jamo and reorders combining marks.
        XCTAssertEqual(tokenizer.tokenize("\u{1100}\u{1161}\u{11A8} e\u{301}\u{323}"), [21122, 479, 157, 118, 373, 136, 479])
        XCTAssertEqual(tokenizer.tokenize("ﬀ Ⅻ ℌ"), [171, 105, 478, 158, 227, 375, 8604, 490])
        XCTAssertEqual(tokenizer.tokenize("😀\u{FE0F} a\u{0}b \u{FFFD}"), [668, 5511, 320, 444, 321, 39802])
        XCTAssertEqual(tokenizer.tokenize("'S 'LL"), [568, 1342])
        // Decomposed "e + combining acute" is composed (NFC) before BPE: same ids as "café".
        XCTAssertEqual(tokenizer.tokenize("cafe\u{301}"), tokenizer.tokenize("café"))
    }

    func testSpecialTokensOnlyWhenSpelledExactly() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        // The exact spelling is the special token; upper case is lower-cased and BPE'd as text.
        // tok("<|ENDOFTEXT|>a<|endoftext|>b<|startoftext|>").input_ids[1:-1] (transformers 5.23)
        XCTAssertEqual(tokenizer.tokenize("<|ENDOFTEXT|>a<|endoftext|>b<|startoftext|>"),
                       [27, 347, 40786, 4160, 91, 285, 320, 49407, 321, 49406])
        XCTAssertEqual(tokenizer.tokenize("<|Endoftext|>!"), [27, 347, 40786, 4160, 91, 285, 256])
        XCTAssertEqual(tokenizer.tokenize("!<|endoftext|>"), [256, 49407])
    }

    func testDecode() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        XCTAssertEqual(tokenizer.decode(tokenizer.encode("A photo of a CAT, café 🐱")), "a photo of a cat , café 🐱")
        XCTAssertEqual(tokenizer.decode([49406, 320, 49407], skippingSpecialTokens: false), "<|startoftext|>a <|endoftext|>")
    }

    // MARK: - Diffusers tokenizer folder

    func testDiffusersFolderGivesSameIds() throws {
        // The fixture folder is SD1.5's tokenizer/ (vocab.json, merges.txt) as diffusers ships it.
        let fromFolder = try CLIPTokenizer(directory: Fixture.tinySD15Tokenizer)
        let bundled = try CLIPTokenizer.bundled()
        XCTAssertEqual(fromFolder.vocabularySize, 49408)
        XCTAssertEqual(fromFolder.startToken, 49406)
        XCTAssertEqual(fromFolder.endToken, 49407)
        for prompt in ["a photo of a cat", "masterpiece, (best quality:1.2), 1girl, 猫, café, it's", "🐱👍🏽", "jekyll"] {
            XCTAssertEqual(fromFolder.encode(prompt), bundled.encode(prompt), prompt)
        }
    }

    func testMergesWithWindowsLineEndsGiveTheSameIds() throws {
        // transformers reads merges.txt with split("\n") and merge.split(), so "\r\n" files tokenise
        // alike: CLIPTokenizer.from_pretrained gives [49406, 320, 736, 3240, 49407] for "a red fox" from both.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdrepl-tokenizer-crlf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for name in ["vocab.json", "merges.txt"] {
            var data = try Data(contentsOf: Fixture.tinySD15Tokenizer.appendingPathComponent(name))
            if name == "merges.txt" { data = Data(String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\n", with: "\r\n").utf8) }
            try data.write(to: folder.appendingPathComponent(name))
        }
        let crlf = try CLIPTokenizer(directory: folder), bundled = try CLIPTokenizer.bundled()
        XCTAssertEqual(crlf.encode("a red fox").prefix(5), [49406, 320, 736, 3240, 49407])
        for prompt in ["a photo of a cat", "masterpiece, (best quality:1.2), 1girl, 猫, café, it's"] {
            XCTAssertEqual(crlf.encode(prompt), bundled.encode(prompt), prompt)
        }
    }

    func testDiffusersFolderErrors() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdrepl-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }

        XCTAssertThrowsError(try CLIPTokenizer(directory: folder)) { error in
            XCTAssertEqual(error as? TokenizerError, .noTokenizerFiles(folder: folder.path, missing: ["vocab.json", "merges.txt", "tokenizer.json"]))
        }
        try "#version: 0.2\na b\n".write(to: folder.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        // Damaged files are described in words, without Foundation's or Swift's own sentences.
        for (text, words) in [(#"{"a": "x"}"#, #"(the value at "a" has the wrong type)"#), ("{{{", "not valid JSON")] {
            try text.write(to: folder.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try CLIPTokenizer(directory: folder)) { error in
                XCTAssertTrue("\(error)".contains(words), "\(error)")
                XCTAssertFalse("\(error)".contains("Expected to decode") || "\(error)".contains("The given data"), "\(error)")
            }
        }
        try #"{"a": 0}"#.write(to: folder.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer(directory: folder)) { error in
            XCTAssertEqual(error as? TokenizerError, .missingSpecialToken(path: folder.appendingPathComponent("vocab.json").path, token: "<|startoftext|>"))
        }
        try #"{"a": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}"#.write(
            to: folder.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer(directory: folder)) { error in
            guard case .missingSpecialToken(_, let token) = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertTrue(token.hasPrefix("byte symbol"), token)
        }
        // Ids that do not number the tokens 0..<n.
        try #"{"a": 0, "<|startoftext|>": 1, "<|endoftext|>": 999999999}"#.write(
            to: folder.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer(directory: folder)) { error in
            guard case .unreadable(_, let reason) = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("999999999"), reason)
        }
        // A merge naming a symbol the vocabulary lacks, reported with its line.
        try FileManager.default.removeItem(at: folder.appendingPathComponent("vocab.json"))
        try FileManager.default.copyItem(at: Fixture.tinySD15Tokenizer.appendingPathComponent("vocab.json"), to: folder.appendingPathComponent("vocab.json"))
        try "#version: 0.2\ni n\nq zz\n".write(to: folder.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer(directory: folder)) { error in
            XCTAssertEqual(error as? TokenizerError, .badMerge(path: folder.appendingPathComponent("merges.txt").path, line: 3, text: "q zz"))
        }
    }

    // MARK: - Gzip

    func testGzipStoredFixedAndDynamicBlocks() throws {
        // python3: gzip.GzipFile(fileobj=b, mode='wb', compresslevel=L, mtime=0, filename='').write(data)
        func bytes(_ hex: String) -> [UInt8] {
            var out: [UInt8] = []
            var index = hex.startIndex
            while index < hex.endIndex {
                let next = hex.index(index, offsetBy: 2)
                out.append(UInt8(hex[index..<next], radix: 16)!)
                index = next
            }
            return out
        }
        let stored = bytes("1f8b08000000000000ff011300ecff68656c6c6f2c2073746f72656420776f726c6495414e7e13000000")
        XCTAssertEqual(try Gzip.decompress(stored), Array("hello, stored world".utf8))
        let fixed = bytes("1f8b08000000000002ff4b4c4a4e44420a19a93939f9101200deaed6fb1b000000")
        XCTAssertEqual(try Gzip.decompress(fixed), Array("abcabcabcabcabc hello hello".utf8))
        let dynamic = bytes("1f8b08000000000002ff2bc94855282ccd4cce56482aca2fcf5348cbaf50c82acd2d2856c82f4b2d5228014ae72456552aa4e4a75b8379a38a47158f2aa6aa6206462666165636760e4e2e6e1e5e3e7e0141216111513171094929691959397905452565155535750d4d2d6d1d5d3d7d03432363135333730b4b2b6b1b5b3b7b07472767175737770f4f2f6f1f5f3fff80c0a0e090d0b0f088c8a8e898d8b8f884c4a4e494d4b4f48cccacec9cdcbcfc82c2a2e292d2b2f28acaaaea9adabafa86c6a6e696d6b6f68eceaeee9edebefe0913274d9e3275daf4193367cd9e3377defc050b172d5eb274d9f2152b57ad5eb376ddfa0d1b376ddeb275dbf61d3b77eddeb377dffe03070f1d3e72f4d8f113274f9d3e73f6dcf90b172f5dbe72f5daf51b376fddbe73f7defd070f1f3d7ef2f4d9f3172f5fbd7ef3f6ddfb0f1f3f7dfef2f5dbf71f3f7ffdfef3f7df7f00148d8a6d84040000")
        XCTAssertEqual(try Gzip.decompress(dynamic),
                       Array(String(repeating: "the quick brown fox jumps over the lazy dog; ", count: 20).utf8) + (0..<256).map { UInt8($0) })

        // A flipped byte in the data or a cut-off file is an error, never wrong output.
        var damaged = dynamic
        damaged[40] ^= 0x10
        XCTAssertThrowsError(try Gzip.decompress(damaged))
        XCTAssertThrowsError(try Gzip.decompress(Array(dynamic.prefix(dynamic.count - 12))))
        XCTAssertThrowsError(try Gzip.decompress(Array("not gzip at all, clearly".utf8)))
    }

    // MARK: - Reference corpus

    /// `Tests/Fixtures/tokenizer/corpus.json`: transformers 5.23 `CLIPTokenizer` ids for 214 prompts,
    /// `tok(prompt).input_ids` and `tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids`.
    func testCorpusMatchesTransformers() throws {
        let corpus = try Fixture.tokenizerCorpus()
        XCTAssertGreaterThanOrEqual(corpus.entries.count, 200)
        let tokenizer = try CLIPTokenizer.bundled()
        var mismatches: [String] = []
        for entry in corpus.entries {
            let ids = tokenizer.encode(entry.prompt)
            if ids != entry.ids {
                mismatches.append("\(entry.prompt.debugDescription): got \(ids), transformers gives \(entry.ids)")
            }
            let padded = try tokenizer.encode(entry.prompt, paddedTo: 77, truncating: true)
            if padded != entry.ids77 {
                mismatches.append("\(entry.prompt.debugDescription) padded: got \(padded), transformers gives \(entry.ids77)")
            }
            // Without truncation, a prompt transformers had to cut is an error, never cut silently.
            XCTAssertEqual((try? tokenizer.encode(entry.prompt, paddedTo: 77)) == nil, entry.truncated, entry.prompt)
        }
        XCTAssertTrue(mismatches.isEmpty, mismatches.joined(separator: "\n"))
    }
}
