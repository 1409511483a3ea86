import XCTest
@testable import Diffusion
@testable import NN

/// `PromptComposition` against A1111's `get_multicond_prompt_list`: each expected value is what
/// `[(m.group(1), float(m.group(2) or 1.0)) for m in map(re_weight.search, re_AND.split(prompt))]`
/// gives under python3 with A1111's two regular expressions.
final class PromptCompositionTests: XCTestCase {
    private func parts(_ prompt: String) -> [[String]] {
        PromptComposition.parts(of: prompt).map { [$0.text, "\($0.weight)"] }
    }

    func testSplitsAtANDAndReadsTrailingWeights() {
        let cases: [(String, [[String]])] = [
            ("a red fox", [["a red fox", "1.0"]]),
            ("a castle AND a dragon:0.7", [["a castle", "1.0"], [" a dragon", "0.7"]]),
            ("a cat:1.5", [["a cat", "1.5"]]),
            ("a cat : 1.5 ", [["a cat", "1.5"]]),
            ("a cat AND", [["a cat", "1.0"], ["", "1.0"]]),
            ("ANDROID AND_x", [["ANDROID AND_x", "1.0"]]),
            ("cats AND dogs AND birds", [["cats", "1.0"], [" dogs", "1.0"], [" birds", "1.0"]]),
            ("x:-0.5", [["x", "-0.5"]]),
            ("x:+2", [["x", "2.0"]]),
            ("x:5.", [["x", "5.0"]]),
            ("x:.5", [["x", "0.5"]]),
            ("x:.", [["x:.", "1.0"]]),
            ("x:1.5.5", [["x:1.5.5", "1.0"]]),
            ("x: 1: 2", [["x: 1", "2.0"]]),
            ("(red:1.2) fox", [["(red:1.2) fox", "1.0"]]),
            ("[cat:dog:0.5] AND bird:2", [["[cat:dog:0.5]", "1.0"], [" bird", "2.0"]]),
            ("a dog:", [["a dog:", "1.0"]]),
            ("AND", [["", "1.0"], ["", "1.0"]]),
            ("é AND日本", [["é AND日本", "1.0"]]),
            ("a\tcat\n:\t2\n", [["a\tcat", "2.0"]]),
            ("BANDAND AND", [["BANDAND", "1.0"], ["", "1.0"]]),
        ]
        for (prompt, expected) in cases {
            XCTAssertEqual(parts(prompt), expected, prompt.debugDescription)
        }
    }

    func testOnlyOnePartOfWeightOneIsPlain() {
        XCTAssertTrue(PromptComposition.isPlain(PromptComposition.parts(of: "a (red:1.3) fox, [snow|rain]")))
        XCTAssertTrue(PromptComposition.isPlain(PromptComposition.parts(of: "a fox:1")))
        XCTAssertFalse(PromptComposition.isPlain(PromptComposition.parts(of: "a fox:1.2")))
        XCTAssertFalse(PromptComposition.isPlain(PromptComposition.parts(of: "a fox AND a hen")))
    }
}
