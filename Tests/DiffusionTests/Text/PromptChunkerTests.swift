import Foundation
import XCTest
import TestSupport
@testable import Diffusion
@testable import NN

/// `PromptChunker` against hand-built expectations of A1111's `tokenize_line`
/// (`modules/sd_hijack_clip.py`): 75 tokens per chunk, BOS/EOS around, EOS padding, weights 1 on
/// everything that is not a prompt token.
final class PromptChunkerTests: XCTestCase {
    var tokenizer: CLIPTokenizer!
    var chunker: PromptChunker!
    let bos = 49406, eos = 49407, comma = 267
    var cat = 0, dog = 0, bird = 0

    override func setUpWithError() throws {
        tokenizer = try CLIPTokenizer.bundled()
        chunker = PromptChunker(tokenizer: tokenizer)
        cat = try XCTUnwrap(tokenizer.id(of: "cat</w>"))
        dog = try XCTUnwrap(tokenizer.id(of: "dog</w>"))
        bird = try XCTUnwrap(tokenizer.id(of: "bird</w>"))
    }

    /// BOS + tokens + EOS padding to 77, with weights.
    private func chunk(_ tokens: [Int], _ weights: [Float]? = nil) -> PromptChunk {
        let padding = 75 - tokens.count
        return PromptChunk(tokens: [bos] + tokens + Array(repeating: eos, count: padding + 1),
                           weights: [1] + (weights ?? Array(repeating: 1, count: tokens.count)) + Array(repeating: 1, count: padding + 1),
                           promptTokenCount: tokens.count)
    }

    private func words(_ word: String, _ count: Int) -> String {
        Array(repeating: word, count: count).joined(separator: " ")
    }

    func testEmptyPromptIsOneChunkOfPadding() throws {
        let result = try chunker.chunk("")
        XCTAssertEqual(result.chunks, [chunk([])])
        XCTAssertEqual(result.chunks, [PromptChunk.empty(tokenizer)])
        XCTAssertEqual(result.tokenCount, 0)
        XCTAssertEqual(result.chunks[0].tokens.count, 77)
        XCTAssertEqual(result.chunks[0].weights.count, 77)
    }

    func testExactly75TokensIsOneChunk() throws {
        let result = try chunker.chunk(words("cat", 75))
        XCTAssertEqual(result.chunks, [chunk(Array(repeating: cat, count: 75))])
        XCTAssertEqual(result.tokenCount, 75)
    }

    func test76TokensAreTwoChunks() throws {
        let result = try chunker.chunk(words("cat", 76))
        XCTAssertEqual(result.chunks, [chunk(Array(repeating: cat, count: 75)), chunk([cat])])
        XCTAssertEqual(result.tokenCount, 76)
    }

    func testLongPromptIsNeverTruncated() throws {
        let result = try chunker.chunk(words("cat", 400))
        XCTAssertEqual(result.chunks.count, 6)  // 5 × 75 + 25
        XCTAssertEqual(result.tokenCount, 400)
        XCTAssertEqual(result.chunks.map(\.promptTokenCount), [75, 75, 75, 75, 75, 25])
        XCTAssertEqual(result.chunks.flatMap { $0.tokens }.filter { $0 == cat }.count, 400)
    }

    func testBreakStartsANewChunk() throws {
        XCTAssertEqual(try chunker.chunk("cat BREAK dog").chunks, [chunk([cat]), chunk([dog])])
        // A1111 pads an empty chunk for a leading BREAK and for BREAK BREAK.
        XCTAssertEqual(try chunker.chunk("BREAK cat").chunks, [chunk([]), chunk([cat])])
        XCTAssertEqual(try chunker.chunk("cat BREAK BREAK dog").chunks, [chunk([cat]), chunk([]), chunk([dog])])
        // A trailing BREAK adds nothing.
        XCTAssertEqual(try chunker.chunk("cat BREAK").chunks, [chunk([cat])])
        // BREAK after a full chunk: the chunk is emitted once.
        XCTAssertEqual(try chunker.chunk(words("cat", 75) + " BREAK dog").chunks,
                       [chunk(Array(repeating: cat, count: 75)), chunk([dog])])
        XCTAssertEqual(try chunker.chunk("cat BREAK dog").tokenCount, 2)
    }

    func testCommaBacktrackMovesTheLastPhraseToTheNextChunk() throws {
        // 70 cats, a comma at index 70, then dogs. The 5th dog finds the chunk full with the comma
        // 75 - 70 = 5 <= 20 tokens back: the 4 dogs after the comma move to chunk 2.
        let result = try chunker.chunk(words("cat", 70) + ", " + words("dog", 10))
        XCTAssertEqual(result.chunks, [
            chunk(Array(repeating: cat, count: 70) + [comma]),
            chunk(Array(repeating: dog, count: 10)),
        ])
        XCTAssertEqual(result.tokenCount, 81)

        // Comma at index 55: 75 - 55 = 20, still within reach.
        let reach = try chunker.chunk(words("cat", 55) + ", " + words("dog", 25)).chunks
        XCTAssertEqual(reach, [chunk(Array(repeating: cat, count: 55) + [comma]), chunk(Array(repeating: dog, count: 25))])

        // Comma at index 54: 21 back, too far; the chunk is cut at 75.
        let far = try chunker.chunk(words("cat", 54) + ", " + words("dog", 25)).chunks
        XCTAssertEqual(far, [chunk(Array(repeating: cat, count: 54) + [comma] + Array(repeating: dog, count: 20)),
                             chunk(Array(repeating: dog, count: 5))])

        // Disabled (A1111's comma_padding_backtrack = 0).
        let off = try PromptChunker(tokenizer: tokenizer, commaBacktrack: 0).chunk(words("cat", 70) + ", " + words("dog", 10)).chunks
        XCTAssertEqual(off, [chunk(Array(repeating: cat, count: 70) + [comma] + Array(repeating: dog, count: 4)),
                             chunk(Array(repeating: dog, count: 6))])

        // The 76th token being a comma itself: no backtrack, the comma opens chunk 2.
        let commaNext = try chunker.chunk(words("cat", 60) + ", " + words("dog", 14) + ", bird").chunks
        XCTAssertEqual(commaNext, [chunk(Array(repeating: cat, count: 60) + [comma] + Array(repeating: dog, count: 14)),
                                   chunk([comma, bird])])
    }

    func testWeightsFollowTheirTokens() throws {
        let result = try chunker.chunk("(cat:1.5) dog [bird]")
        XCTAssertEqual(result.chunks, [chunk([cat, dog, bird], [1.5, 1, Float(1 / 1.1)])])

        // A weighted phrase across the chunk boundary keeps its weight on both sides.
        let long = try chunker.chunk(words("dog", 73) + " (" + words("cat", 4) + ")")
        XCTAssertEqual(long.chunks, [
            chunk(Array(repeating: dog, count: 73) + [cat, cat], Array(repeating: 1, count: 73) + [1.1, 1.1]),
            chunk([cat, cat], [1.1, 1.1]),
        ])

        // Moved by the comma backtrack, the words keep their weights.
        let moved = try chunker.chunk(words("cat", 70) + ", (" + words("dog", 10) + ":0.5)")
        XCTAssertEqual(moved.chunks, [
            chunk(Array(repeating: cat, count: 70) + [comma]),
            chunk(Array(repeating: dog, count: 10), Array(repeating: 0.5, count: 10)),
        ])
    }

    func testFragmentsAreTokenizedSeparately() throws {
        // "(red)hair" tokenizes "red" and "hair" apart, as A1111 tokenizes each fragment.
        let red = try XCTUnwrap(tokenizer.id(of: "red</w>"))
        let hair = try XCTUnwrap(tokenizer.id(of: "hair</w>"))
        XCTAssertEqual(try chunker.chunk("(red)hair").chunks, [chunk([red, hair], [1.1, 1])])
        XCTAssertEqual(tokenizer.tokenize("redhair").count, 2)
        XCTAssertNotEqual(tokenizer.tokenize("redhair"), [red, hair])
    }

    /// A prompt with no weighting syntax that fits 75 tokens is exactly diffusers' input ids:
    /// every such prompt of the fixture corpus gives one chunk equal to transformers'
    /// `tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids`, weights all 1.
    func testPlainPromptsGiveDiffusersIds() throws {
        let corpus = try Fixture.tokenizerCorpus()
        var checked = 0
        for entry in corpus.entries where !entry.truncated {
            guard entry.prompt.rangeOfCharacter(from: CharacterSet(charactersIn: "()[]\\")) == nil,
                  !entry.prompt.contains("BREAK") else { continue }
            let result = try chunker.chunk(entry.prompt)
            XCTAssertEqual(result.chunks.count, 1, entry.prompt)
            XCTAssertEqual(result.chunks.first?.tokens, entry.ids77, entry.prompt)
            XCTAssertEqual(result.chunks.first?.isUnweighted, true, entry.prompt)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 150)
    }

    /// Two long prompts through A1111's `tokenize_line` logic (comma_padding_backtrack = 20, no
    /// embeddings), run in Python with transformers 5.23's CLIPTokenizer and A1111 v1.10's
    /// `parse_prompt_attention`; each chunk is listed as its prompt tokens (before EOS padding) and
    /// its weights as (weight, run length). The first uses BREAK and many weights; the second is a
    /// common negative prompt where the comma backtrack moves the last phrase.
    func testMatchesA1111TokenizeLine() throws {
        let expectations: [(prompt: String, tokenCount: Int, chunks: [([Int], [(Double, Int)])])] = [
        (prompt: "masterpiece, best quality, (detail 0:1.1), [thing 1], plain 2, (detail 3:1.4), [thing 4], plain 5, (detail 6:1.7), [thing 7], plain 8, (detail 9:1.1), [thing 10], plain 11, (detail 12:1.4), [thing 13], plain 14, (detail 15:1.7), [thing 16], plain 17, (detail 18:1.1), [thing 19], plain 20, (detail 21:1.4), [thing 22], plain 23, (detail 24:1.7), [thing 25], plain 26, (detail 27:1.1), [thing 28], plain 29, (detail 30:1.4), [thing 31], plain 32, (detail 33:1.7), [thing 34], plain 35, (detail 36:1.1), [thing 37], plain 38, (detail 39:1.4) BREAK ((tail)), end",
         tokenCount: 228,
         chunks: [
            ([12066, 267, 949, 3027, 267, 7657, 271, 267, 946, 272, 267, 10709, 273, 267, 7657, 274, 267, 946, 275, 267, 10709, 276, 267, 7657, 277, 267, 946, 278, 267, 10709, 279, 267, 7657, 280, 267, 946, 272, 271, 267, 10709, 272, 272, 267, 7657, 272, 273, 267, 946, 272, 274, 267, 10709, 272, 275, 267, 7657, 272, 276, 267, 946, 272, 277, 267, 10709, 272, 278, 267, 7657, 272, 279, 267, 946, 272, 280, 267],
             [(1.0, 5), (1.1, 2), (1.0, 1), (0.9090909090909091, 2), (1.0, 4), (1.4, 2), (1.0, 1), (0.9090909090909091, 2), (1.0, 4), (1.7, 2), (1.0, 1), (0.9090909090909091, 2), (1.0, 4), (1.1, 2), (1.0, 1), (0.9090909090909091, 3), (1.0, 5), (1.4, 3), (1.0, 1), (0.9090909090909091, 3), (1.0, 5), (1.7, 3), (1.0, 1), (0.9090909090909091, 3), (1.0, 5), (1.1, 3), (1.0, 1), (0.9090909090909091, 3), (1.0, 1)]),
            ([10709, 273, 271, 267, 7657, 273, 272, 267, 946, 273, 273, 267, 10709, 273, 274, 267, 7657, 273, 275, 267, 946, 273, 276, 267, 10709, 273, 277, 267, 7657, 273, 278, 267, 946, 273, 279, 267, 10709, 273, 280, 267, 7657, 274, 271, 267, 946, 274, 272, 267, 10709, 274, 273, 267, 7657, 274, 274, 267, 946, 274, 275, 267, 10709, 274, 276, 267, 7657, 274, 277, 267, 946, 274, 278, 267, 10709, 274, 279],
             [(1.0, 4), (1.4, 3), (1.0, 1), (0.9090909090909091, 3), (1.0, 5), (1.7, 3), (1.0, 1), (0.9090909090909091, 3), (1.0, 5), (1.1, 3), (1.0, 1), (0.9090909090909091, 3), (1.0, 5), (1.4, 3), (1.0, 1), (0.9090909090909091, 3), (1.0, 5), (1.7, 3), (1.0, 1), (0.9090909090909091, 3), (1.0, 5), (1.1, 3), (1.0, 1), (0.9090909090909091, 3), (1.0, 4)]),
            ([267, 7657, 274, 280],
             [(1.0, 1), (1.4, 3)]),
            ([4132, 267, 806],
             [(1.2100000000000002, 1), (1.0, 2)]),
         ]),
        (prompt: "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry, artist name, (worst quality:1.4), (low quality:1.4), (monochrome:1.1), nsfw, ugly, duplicate, morbid, mutilated, out of frame, extra fingers, mutated hands, poorly drawn hands, poorly drawn face, mutation, deformed, blurry, bad proportions, extra limbs, cloned face, disfigured, gross proportions, malformed limbs, missing arms, missing legs",
         tokenCount: 122,
         chunks: [
            ([1049, 934, 267, 2103, 15376, 267, 2103, 3500, 267, 4160, 267, 12097, 267, 3423, 9690, 267, 4231, 27472, 267, 19128, 31710, 267, 31139, 267, 5719, 3027, 267, 1042, 3027, 267, 5967, 3027, 267, 73, 11207, 30249, 267, 9189, 267, 2505, 2110, 267, 28162, 267, 21977, 267, 2456, 1981, 267, 5719, 3027, 267, 1042, 3027, 267, 25576, 267, 19847, 267, 8159, 267, 28992, 671, 267, 657, 5553, 267, 39950, 943, 267, 620, 539, 6481, 267],
             [(1.0, 49), (1.4, 2), (1.0, 1), (1.4, 2), (1.0, 1), (1.1, 1), (1.0, 18)]),
            ([4231, 9690, 267, 12598, 943, 3500, 267, 21101, 8893, 3500, 267, 21101, 8893, 1710, 267, 38626, 267, 561, 6528, 267, 21977, 267, 2103, 39391, 267, 4231, 34886, 267, 969, 4698, 1710, 267, 1518, 15630, 267, 11541, 39391, 267, 1662, 6528, 34886, 267, 3423, 5706, 267, 3423, 7072],
             [(1.0, 47)]),
         ]),
        ]
        for expectation in expectations {
            let result = try chunker.chunk(expectation.prompt)
            let expected = expectation.chunks.map { tokens, runs in
                chunk(tokens, runs.flatMap { weight, count in Array(repeating: Float(weight), count: count) })
            }
            XCTAssertEqual(result.chunks, expected, expectation.prompt)
            // A1111 counts every chunk but the last as 75; we count prompt tokens.
            let a1111Count = 75 * (result.chunks.count - 1) + result.chunks[result.chunks.count - 1].promptTokenCount
            XCTAssertEqual(a1111Count, expectation.tokenCount)
        }
    }

    func testPadToSameLength() throws {
        let prompt = try chunker.chunk(words("cat", 160))
        let negative = try chunker.chunk("blurry")
        let (a, b) = chunker.padToSameLength(prompt, negative)
        XCTAssertEqual(a, prompt)
        XCTAssertEqual(b.chunks.count, 3)
        XCTAssertEqual(b.chunks[0], negative.chunks[0])
        XCTAssertEqual(Array(b.chunks[1...]), [PromptChunk.empty(tokenizer), PromptChunk.empty(tokenizer)])
        XCTAssertEqual(b.tokenCount, negative.tokenCount)
        let (c, d) = chunker.padToSameLength(negative, prompt)
        XCTAssertEqual(c, b)
        XCTAssertEqual(d, prompt)
    }

    func testChunkText() throws {
        let result = try chunker.chunk("a photo of a (cat:1.5), [dog] BREAK bird")
        XCTAssertEqual(result.chunks.map { chunker.text(of: $0) }, ["a photo of a (cat:1.5) , (dog:0.909)", "bird"])
        XCTAssertEqual(chunker.text(of: PromptChunk.empty(tokenizer)), "")
    }

    func testMalformedWeightIsReported() {
        XCTAssertThrowsError(try chunker.chunk("(cat:1..2)")) { error in
            XCTAssertEqual(error as? PromptError, .invalidWeight("1..2", offset: 4))
        }
    }
}
