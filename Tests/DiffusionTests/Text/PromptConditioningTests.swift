import XCTest
@testable import Diffusion
@testable import NN

/// `PromptConditioning` with fake encoders whose outputs can be worked out by hand.
final class PromptConditioningTests: XCTestCase {
    /// A fake text encoder `[1, T, 3]`: token `t` at position `i` gives `[t % 5 + 1, i, −0.5 · c]`-ish
    /// values that differ per token, position and channel.
    private func fakeEncoder(_ tokens: [Int]) -> Tensor {
        var data: [Float] = []
        for (i, t) in tokens.enumerated() {
            data += [Float(t % 5 + 1), Float(i) * 0.25, Float(t % 3) - 0.5]
        }
        return Tensor(shape: [1, tokens.count, 3], data: data)
    }

    func testOriginalEmphasisByHand() {
        // z = [[1, 2], [3, 4]], weights [1, 2]:
        // original mean 10/4; weighted [[1, 2], [6, 8]], mean 17/4; factor (10/4)/(17/4) = 10/17.
        let z = Tensor(shape: [1, 2, 2], data: [1, 2, 3, 4])
        let out = PromptConditioning.emphasized(z, weights: [1, 2])
        let expected: [Float] = [1, 2, 6, 8].map { $0 * 10 / 17 }
        XCTAssertEqual(out.shape, [1, 2, 2])
        for (a, b) in zip(out.data, expected) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        // The mean over the chunk is restored.
        XCTAssertEqual(out.data.reduce(0, +) / 4, 2.5, accuracy: 1e-6)
    }

    func testNegativeAndZeroWeights() {
        // weights [0, -1]: weighted [[0, 0], [-3, -4]], mean -7/4; factor (10/4)/(-7/4) = -10/7.
        let z = Tensor(shape: [1, 2, 2], data: [1, 2, 3, 4])
        let out = PromptConditioning.emphasized(z, weights: [0, -1])
        let expected: [Float] = [0, 0, -3, -4].map { $0 * -10 / 7 }
        for (a, b) in zip(out.data, expected) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        // A weighted mean of exactly 0 skips the rescale instead of dividing by zero.
        let zero = PromptConditioning.emphasized(Tensor(shape: [1, 2, 1], data: [1, 1]), weights: [1, -1])
        XCTAssertEqual(zero.data, [1, -1])
    }

    func testUnweightedChunkIsTheEncoderOutputBitForBit() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let prompt = try PromptChunker(tokenizer: tokenizer).chunk("a photo of an astronaut riding a horse on mars")
        let ids = try tokenizer.encode("a photo of an astronaut riding a horse on mars", paddedTo: 77)
        let z = PromptConditioning.encode(prompt) { fakeEncoder($0) }
        XCTAssertEqual(z, fakeEncoder(ids))  // Tensor's == compares every Float exactly
    }

    func testWeightedChunksAreEmphasizedSeparatelyAndJoined() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let chunker = PromptChunker(tokenizer: tokenizer)
        let prompt = try chunker.chunk("a (cat:1.5) BREAK [dog]")
        XCTAssertEqual(prompt.chunks.count, 2)
        var calls: [[Int]] = []
        let z = PromptConditioning.encode(prompt) { tokens in
            calls.append(tokens)
            return fakeEncoder(tokens)
        }
        XCTAssertEqual(calls, prompt.chunks.map(\.tokens))
        XCTAssertEqual(z.shape, [1, 154, 3])

        for (index, chunk) in prompt.chunks.enumerated() {
            // By hand: scale each token row by its weight, then by mean(z) / mean(weighted z).
            let raw = fakeEncoder(chunk.tokens).data
            var weighted = raw
            for t in 0..<77 { for c in 0..<3 { weighted[t * 3 + c] *= chunk.weights[t] } }
            let factor = (raw.map(Double.init).reduce(0, +) / 231) / (weighted.map(Double.init).reduce(0, +) / 231)
            let expected = weighted.map { Float(Double($0) * factor) }
            let got = Array(z.data[(index * 231)..<((index + 1) * 231)])
            for (a, b) in zip(got, expected) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        }
        // The weighted token rows really changed: cat's row is not the raw row.
        let catRow = Array(z.data[(2 * 3)..<(3 * 3)])
        XCTAssertNotEqual(catRow, Array(fakeEncoder(prompt.chunks[0].tokens).data[(2 * 3)..<(3 * 3)]))
    }

    func testEncoderErrorsPropagate() throws {
        struct Failure: Error {}
        let tokenizer = try CLIPTokenizer.bundled()
        let prompt = try PromptChunker(tokenizer: tokenizer).chunk("cat")
        XCTAssertThrowsError(try PromptConditioning.encode(prompt, using: { (_: [Int]) -> Tensor in throw Failure() })) { error in
            XCTAssertTrue(error is Failure)
        }
    }
}
