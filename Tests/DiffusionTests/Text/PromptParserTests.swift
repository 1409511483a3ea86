import XCTest
@testable import Diffusion
@testable import NN

/// `PromptParser` against AUTOMATIC1111's `parse_prompt_attention`. Weights are compared exactly:
/// the parser does A1111's double multiplications in A1111's order.
final class PromptParserTests: XCTestCase {
    private func parse(_ prompt: String, file: StaticString = #filePath, line: UInt = #line) -> [PromptFragment] {
        do {
            return try PromptParser.parse(prompt)
        } catch {
            XCTFail("\(prompt.debugDescription): \(error)", file: file, line: line)
            return []
        }
    }

    private func t(_ text: String, _ weight: Double) -> PromptFragment { .text(text, weight: weight) }

    /// Every example of the docstring of `parse_prompt_attention` in
    /// AUTOMATIC1111/stable-diffusion-webui `modules/prompt_parser.py` (v1.10), verbatim.
    func testA1111DocstringExamples() {
        // >>> parse_prompt_attention('normal text')
        XCTAssertEqual(parse("normal text"), [t("normal text", 1.0)])
        // >>> parse_prompt_attention('an (important) word')
        XCTAssertEqual(parse("an (important) word"), [t("an ", 1.0), t("important", 1.1), t(" word", 1.0)])
        // >>> parse_prompt_attention('(unbalanced')
        XCTAssertEqual(parse("(unbalanced"), [t("unbalanced", 1.1)])
        // >>> parse_prompt_attention('\(literal\]')
        XCTAssertEqual(parse(#"\(literal\]"#), [t("(literal]", 1.0)])
        // >>> parse_prompt_attention('(unnecessary)(parens)')
        XCTAssertEqual(parse("(unnecessary)(parens)"), [t("unnecessaryparens", 1.1)])
        // >>> parse_prompt_attention('a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).')
        XCTAssertEqual(parse("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."), [
            t("a ", 1.0),
            t("house", 1.5730000000000004),
            t(" ", 1.1),
            t("on", 1.0),
            t(" a ", 1.1),
            t("hill", 0.55),
            t(", sun, ", 1.1),
            t("sky", 1.4641000000000006),
            t(".", 1.1),
        ])
    }

    /// More cases, with the output of A1111's `parse_prompt_attention` (v1.10 code run under
    /// python3) in the comment form `prompt -> result`.
    func testBracketsAndWeights() {
        // "[[a]]" -> [["a", 0.8264462809917354]]
        XCTAssertEqual(parse("[[a]]"), [t("a", 0.8264462809917354)])
        // "[a" -> [["a", 0.9090909090909091]]
        XCTAssertEqual(parse("[a"), [t("a", 0.9090909090909091)])
        // "((a)" -> [["a", 1.2100000000000002]]
        XCTAssertEqual(parse("((a)"), [t("a", 1.2100000000000002)])
        // "(a[b)c]" -> [["a", 1.1], ["b", 1.0], ["c", 0.9090909090909091]]
        XCTAssertEqual(parse("(a[b)c]"), [t("a", 1.1), t("b", 1.0), t("c", 0.9090909090909091)])
        // "(a (nested:1.1) prompt:1.2)" -> [["a ", 1.2], ["nested", 1.32], [" prompt", 1.2]]
        XCTAssertEqual(parse("(a (nested:1.1) prompt:1.2)"), [t("a ", 1.2), t("nested", 1.32), t(" prompt", 1.2)])
        // "(a:1.1)(b)" -> [["ab", 1.1]]
        XCTAssertEqual(parse("(a:1.1)(b)"), [t("ab", 1.1)])
        // "(a: 1.5 )" -> [["a", 1.5]];  "(a:\t2\n)" -> [["a", 2.0]]
        XCTAssertEqual(parse("(a: 1.5 )"), [t("a", 1.5)])
        XCTAssertEqual(parse("(a:\t2\n)"), [t("a", 2.0)])
        // "(a:+.5)" -> 0.5, "(a:-1)" -> -1.0, "(a:0)" -> 0.0
        XCTAssertEqual(parse("(a:+.5)"), [t("a", 0.5)])
        XCTAssertEqual(parse("(a:-1)"), [t("a", -1.0)])
        XCTAssertEqual(parse("(a:0)"), [t("a", 0.0)])
        // "(a:١.٥)" (Arabic-Indic digits, which Python's \d and float() accept) -> [["a", 1.5]]
        XCTAssertEqual(parse("(a:١.٥)"), [t("a", 1.5)])
        // Closing brackets with nothing open, and colons, are text:
        // "a) b] c" -> [["a) b] c", 1.0]];  ":1.3) x" -> [[":1.3) x", 1.0]];  "x:y" -> [["x:y", 1.0]]
        XCTAssertEqual(parse("a) b] c"), [t("a) b] c", 1.0)])
        XCTAssertEqual(parse(":1.3) x"), [t(":1.3) x", 1.0)])
        XCTAssertEqual(parse("x:y"), [t("x:y", 1.0)])
        XCTAssertEqual(parse("cat:1.2.3)"), [t("cat:1.2.3)", 1.0)])
        // Prompt editing is not supported; its brackets are emphasis, as A1111's attention parser
        // alone reads them: "[a:b:0.5]" -> [["a:b:0.5", 0.9090909090909091]]
        XCTAssertEqual(parse("[a:b:0.5]"), [t("a:b:0.5", 0.9090909090909091)])
    }

    func testEmptyPrompts() {
        // "" -> [["", 1.0]];  "()" -> [["", 1.0]]
        XCTAssertEqual(parse(""), [t("", 1.0)])
        XCTAssertEqual(parse("()"), [t("", 1.0)])
    }

    func testEscapes() {
        // "a\b" -> [["ab", 1.0]]  (a lone backslash is dropped)
        XCTAssertEqual(parse(#"a\b"#), [t("ab", 1.0)])
        // "back\\slash\\" -> [["back\slash\", 1.0]]
        XCTAssertEqual(parse(#"back\\slash\\"#), [t(#"back\slash\"#, 1.0)])
        XCTAssertEqual(parse(#"\(\)\[\]"#), [t("()[]", 1.0)])
        // An escaped bracket inside emphasis keeps the emphasis: "(\(x\))" -> [["(x)", 1.1]]
        XCTAssertEqual(parse(#"(\(x\))"#), [t("(x)", 1.1)])
    }

    func testBreak() {
        // "cat BREAK dog" -> [["cat", 1.0], ["BREAK", -1], ["dog", 1.0]]
        XCTAssertEqual(parse("cat BREAK dog"), [t("cat", 1.0), .chunkBreak, t("dog", 1.0)])
        // "cat, BREAK, dog" -> [["cat,", 1.0], ["BREAK", -1], [", dog", 1.0]]
        XCTAssertEqual(parse("cat, BREAK, dog"), [t("cat,", 1.0), .chunkBreak, t(", dog", 1.0)])
        // "BREAK cat" -> [["", 1.0], ["BREAK", -1], ["cat", 1.0]]
        XCTAssertEqual(parse("BREAK cat"), [t("", 1.0), .chunkBreak, t("cat", 1.0)])
        // "a BREAK BREAK b" -> [["a", 1.0], ["BREAK", -1], ["", 1.0], ["BREAK", -1], ["b", 1.0]]
        XCTAssertEqual(parse("a BREAK BREAK b"), [t("a", 1.0), .chunkBreak, t("", 1.0), .chunkBreak, t("b", 1.0)])
        // "a\nBREAK\tb", "a\u3000BREAK\u00a0b" -> [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
        XCTAssertEqual(parse("a\nBREAK\tb"), [t("a", 1.0), .chunkBreak, t("b", 1.0)])
        XCTAssertEqual(parse("a\u{3000}BREAK\u{A0}b"), [t("a", 1.0), .chunkBreak, t("b", 1.0)])
        // "é BREAK" -> [["é", 1.0], ["BREAK", -1], ["", 1.0]]
        XCTAssertEqual(parse("é BREAK"), [t("é", 1.0), .chunkBreak, t("", 1.0)])
        // Not a word of its own, or not capitals: text.
        // "aBREAK b", "a BREAKb", "x_BREAK", "a break b" -> unchanged, weight 1.0
        for text in ["aBREAK b", "a BREAKb", "x_BREAK", "a break b"] {
            XCTAssertEqual(parse(text), [t(text, 1.0)], text)
        }
    }

    func testBreakInsideBracketsStillBreaks() {
        // A1111 gives [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]] and then encodes the word "break"
        // with weight -1.1; we break (documented difference).
        XCTAssertEqual(parse("(a BREAK b)"), [t("a", 1.1), .chunkBreak, t("b", 1.1)])
    }

    func testMalformedWeightIsAnError() {
        // A1111 raises ValueError: could not convert string to float: '1.2.3'
        XCTAssertThrowsError(try PromptParser.parse("(cat:1.2.3)")) { error in
            XCTAssertEqual(error as? PromptError, .invalidWeight("1.2.3", offset: 4))
        }
        XCTAssertThrowsError(try PromptParser.parse("a (cat: .)")) { error in
            XCTAssertEqual(error as? PromptError, .invalidWeight(".", offset: 6))
        }
    }
}
