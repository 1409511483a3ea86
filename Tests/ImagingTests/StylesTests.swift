import XCTest

@testable import Imaging

final class StylesTests: XCTestCase {
    func testBuiltInsCoverTheRequiredPresets() {
        let names = StyleLibrary().names
        for required in [
            "none", "enhance", "cinematic", "photographic", "anime", "digital-art", "oil-painting", "watercolor",
            "pixel-art", "3d-render", "fantasy", "line-art", "comic",
        ] {
            XCTAssertTrue(names.contains(required), required)
        }
        for style in StyleLibrary.builtIn where !style.isNone {
            XCTAssertTrue(style.prompt.contains("{prompt}"), style.name)
            XCTAssertFalse(style.negativePrompt.isEmpty, style.name)
        }
    }

    func testNoneLeavesPromptsExactlyAsTyped() throws {
        let none = try XCTUnwrap(StyleLibrary().style(named: "none"))
        let applied = none.apply(prompt: "  spaced prompt ", negativePrompt: " neg ")
        XCTAssertEqual(applied.prompt, "  spaced prompt ")
        XCTAssertEqual(applied.negativePrompt, " neg ")
    }

    /// A1111 `merge_prompts`: `style.replace("{prompt}", prompt)` if present, else
    /// `", ".join(filter(None, (prompt.strip(), style.strip())))`.
    func testMergeFollowsA1111() throws {
        XCTAssertEqual(PromptStyle.merge(style: "oil painting of {prompt}, {prompt}", into: "a fox"), "oil painting of a fox, a fox")
        XCTAssertEqual(PromptStyle.merge(style: " masterpiece ", into: " a fox "), "a fox, masterpiece")
        XCTAssertEqual(PromptStyle.merge(style: "masterpiece", into: ""), "masterpiece")
        XCTAssertEqual(PromptStyle.merge(style: "", into: " a fox "), "a fox")

        let enhance = try XCTUnwrap(StyleLibrary().style(named: "Enhance"))
        let applied = enhance.apply(prompt: "a red fox", negativePrompt: "")
        XCTAssertTrue(applied.prompt.hasPrefix("a red fox, highly detailed, cinematic lighting"))
        XCTAssertEqual(applied.negativePrompt, enhance.negativePrompt, "an empty negative takes the addition alone")
        XCTAssertEqual(enhance.apply(prompt: "x", negativePrompt: "cats").negativePrompt, "cats, " + enhance.negativePrompt)
    }

    func testParsesA1111StylesCSVWithQuotingAndNewlines() throws {
        let csv = "\u{FEFF}name,prompt,negative_prompt\r\n"
            + "Moody, \"{prompt}, dark, \"\"noir\"\" lighting\",\"bright,\ncheerful\"\r\n"
            + "\r\n"
            + "Append only,\"masterpiece, best quality\",\n"
            + "cinematic,my own cinematic {prompt},\n"
            + "NoNegative,just this\n"
        let styles = try StyleLibrary.parse(csv: csv, path: "styles.csv")
        XCTAssertEqual(styles.map(\.name), ["Moody", "Append only", "cinematic", "NoNegative"])
        XCTAssertEqual(styles[0].prompt, "{prompt}, dark, \"noir\" lighting")
        XCTAssertEqual(styles[0].negativePrompt, "bright,\ncheerful")
        XCTAssertEqual(styles[0].origin, "styles.csv:2")
        XCTAssertEqual(styles[1].origin, "styles.csv:5", "line numbers count the newline inside the quoted field")
        XCTAssertEqual(styles[3].negativePrompt, "")

        var library = StyleLibrary()
        library.add(styles)
        XCTAssertEqual(library.style(named: "cinematic")?.prompt, "my own cinematic {prompt}", "user styles replace built-ins")
        XCTAssertEqual(library.styles.filter { $0.name == "cinematic" }.count, 1)
        XCTAssertEqual(library.style(named: "append only")?.apply(prompt: "a fox", negativePrompt: "").prompt, "a fox, masterpiece, best quality")
    }

    func testLegacyTextColumnIsAccepted() throws {
        let styles = try StyleLibrary.parse(csv: "name,text\nold,vintage photo\n", path: "old.csv")
        XCTAssertEqual(styles, [PromptStyle(name: "old", prompt: "vintage photo", negativePrompt: "", origin: "old.csv:2")])
    }

    func testErrorsNameFileAndLine() throws {
        XCTAssertThrowsError(try StyleLibrary.parse(csv: "title,body\nx,y\n", path: "bad.csv")) { error in
            XCTAssertEqual("\(error)".prefix(10), "bad.csv:1:")
        }
        XCTAssertThrowsError(try StyleLibrary.parse(csv: "name,prompt\nok,fine\nbroken,\"never closed\nmore\n", path: "s.csv")) { error in
            guard case ImagingError.stylesFile(path: "s.csv", line: 3, _) = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try StyleLibrary.parse(csv: "name,prompt\n,no name here\n", path: "s.csv")) { error in
            guard case ImagingError.stylesFile(path: "s.csv", line: 2, _) = error else { return XCTFail("\(error)") }
        }
    }

    func testLoadsFromFile() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("styles-\(UUID().uuidString).csv")
        try Data("name,prompt,negative_prompt\nteal,\"{prompt}, teal and orange\",grey\n".utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let library = try StyleLibrary(userStylesFile: url)
        let applied = try XCTUnwrap(library.style(named: "teal")).apply(prompt: "city", negativePrompt: "fog")
        XCTAssertEqual(applied.prompt, "city, teal and orange")
        XCTAssertEqual(applied.negativePrompt, "fog, grey")
        XCTAssertThrowsError(try StyleLibrary(userStylesFile: URL(fileURLWithPath: "/nonexistent/styles.csv")))
    }
}
