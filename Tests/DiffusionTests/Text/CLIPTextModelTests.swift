import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// The CLIP text encoder against transformers 5.23's `CLIPTextModel` on the tiny fixture model, for
/// the five reference prompts (empty, short, long, punctuation, non-Latin).
///
/// Tolerance: max abs err ≤ 1e-4 × max |reference| for every prompt and clip skip.
final class CLIPTextModelTests: XCTestCase {
    func testMatchesTransformersFromDiffusersFP32() throws { try checkParity(.diffusersFP32) }
    func testMatchesTransformersFromDiffusersFP16() throws { try checkParity(.diffusersFP16) }
    func testMatchesTransformersFromSingleFile() throws { try checkParity(.singleFile) }

    private func checkParity(_ form: TinySD15Fixture.Form) throws {
        let model = try TinySD15Fixture.textEncoder(TinySD15Fixture.checkpoint(form))
        let references = try TinySD15Fixture.references(for: form)
        for prompt in 0..<TinySD15Fixture.promptCount {
            let ids = try references.tensor("text/\(prompt)/ids").data.map { Int($0) }
            XCTAssertEqual(ids.count, 77)
            // A1111 clip skip 1: te(ids, output_hidden_states=True).last_hidden_state
            assertParity(model(tokens: ids, clipSkip: 1), try references.tensor("text/\(prompt)/last_hidden_state"),
                         "text encoder \(form.rawValue) prompt \(prompt) clip skip 1")
            // A1111 clip skip 2: te.final_layer_norm(te(ids, output_hidden_states=True).hidden_states[-2])
            assertParity(model(tokens: ids, clipSkip: 2), try references.tensor("text/\(prompt)/penultimate_final_ln"),
                         "text encoder \(form.rawValue) prompt \(prompt) clip skip 2")
        }
    }

    /// Clip skip 2 is the penultimate layer *with* the final LayerNorm (A1111), not the raw hidden
    /// state (`hidden_states[-2]`): the two differ by far more than the tolerance.
    func testClipSkipAppliesTheFinalLayerNorm() throws {
        let model = try TinySD15Fixture.textEncoder(TinySD15Fixture.checkpoint(.diffusersFP32))
        let references = try TinySD15Fixture.references(for: .diffusersFP32)
        let ids = try references.tensor("text/1/ids").data.map { Int($0) }
        let raw = try references.tensor("text/1/penultimate_raw")
        let output = model(tokens: ids, clipSkip: 2)
        XCTAssertEqual(output.shape, raw.shape)
        XCTAssertGreaterThan(maxAbsDifference(output, raw), 0.1)
    }

    /// Clip skip 3 of a 3-layer encoder stops after the first layer; it must differ from skip 2.
    func testDeeperClipSkipUsesAnEarlierLayer() throws {
        let model = try TinySD15Fixture.textEncoder(TinySD15Fixture.checkpoint(.diffusersFP32))
        let ids = try TinySD15Fixture.references(for: .diffusersFP32).tensor("text/1/ids").data.map { Int($0) }
        XCTAssertEqual(model.config.layerCount, 3)
        XCTAssertNotEqual(model(tokens: ids, clipSkip: 3), model(tokens: ids, clipSkip: 2))
    }
}
