import Diffusion
import XCTest

@testable import Imaging

/// Expected values come from A1111's own parser (`modules/infotext_utils.py`
/// `parse_generation_parameters`, with `re_param`, `unquote` and `re_imagesize` verbatim, minus
/// the UI-option defaults it adds afterwards), run on the same strings:
/// `python3 -c "print(parse_generation_parameters(s))"`.
final class InfotextTests: XCTestCase {
    func testParsesTypicalA1111Text() {
        let text = """
            masterpiece, 1girl, (red hair:1.2), looking at viewer
            Negative prompt: lowres, bad anatomy, (worst quality:1.4)
            Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3923843017, Size: 512x768, Model hash: 7f96a1a9ca, Model: anything-v5, Clip skip: 2, ENSD: 31337, Version: v1.6.0
            """
        let r = Infotext.parse(text)
        XCTAssertEqual(r.prompt, "masterpiece, 1girl, (red hair:1.2), looking at viewer")
        XCTAssertEqual(r.negativePrompt, "lowres, bad anatomy, (worst quality:1.4)")
        XCTAssertEqual(r.steps, 28)
        XCTAssertEqual(r.sampler, "DPM++ 2M Karras")
        XCTAssertEqual(samplerID(r), "dpmpp-2m-karras")
        XCTAssertEqual(r.cfgScale, 7)
        XCTAssertEqual(r.seed, 3_923_843_017)
        XCTAssertEqual(r.width, 512)
        XCTAssertEqual(r.height, 768)
        XCTAssertEqual(r.modelHash, "7f96a1a9ca")
        XCTAssertEqual(r.modelName, "anything-v5")
        XCTAssertEqual(r.clipSkip, 2)
        XCTAssertEqual(r.version, "v1.6.0")
        XCTAssertEqual(r.extra, [.init("ENSD", "31337")])
    }

    func testMultiLinePromptsAndQuotedValuesWithCommasAndColons() {
        let text = """
            a castle on a hill
            at sunset, golden hour
            Negative prompt: blurry,
            ugly, watermark
            Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "add_detail: 7c6bad76eb54, epi_noise: 1a2b3c4d5e6f", TI hashes: "easynegative: c74b4e810b03", Version: v1.9.4
            """
        let r = Infotext.parse(text)
        XCTAssertEqual(r.prompt, "a castle on a hill\nat sunset, golden hour")
        XCTAssertEqual(r.negativePrompt, "blurry,\nugly, watermark")
        XCTAssertEqual(r.sampler, "Euler a")
        XCTAssertEqual(samplerID(r), "euler-a")
        XCTAssertEqual(r.cfgScale, 7.5)
        XCTAssertEqual(r.extra, [
            .init("Lora hashes", "add_detail: 7c6bad76eb54, epi_noise: 1a2b3c4d5e6f"),
            .init("TI hashes", "easynegative: c74b4e810b03"),
        ])
    }

    func testMissingNegativeUnknownKeysAndScheduleType() {
        let text = """
            portrait photo of an old man
            Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 1, Size: 640x480, Model hash: 0123456789, Model: realisticVision, Denoising strength: 0.4, Hires upscale: 2, Hires upscaler: Latent, Unknown Key: some value, Version: v1.10.1
            """
        let r = Infotext.parse(text)
        XCTAssertEqual(r.prompt, "portrait photo of an old man")
        XCTAssertEqual(r.negativePrompt, "")
        XCTAssertEqual(r.sampler, "DPM++ 2M")
        XCTAssertEqual(samplerID(r), "dpmpp-2m-karras", "A1111 1.9+ splits the scheduler into its own field")
        XCTAssertEqual(r.clipSkip, 1, "absent Clip skip means 1, as in A1111")
        XCTAssertEqual(r.extra.map(\.key), [
            "Schedule type", "Denoising strength", "Hires upscale", "Hires upscaler", "Unknown Key",
        ])
        XCTAssertEqual(r.extra("Unknown Key"), "some value")
    }

    func testTextWithoutParametersIsAllPrompt() {
        let r = Infotext.parse("just a prompt with no parameters at all")
        XCTAssertEqual(r, ImageRecipe(prompt: "just a prompt with no parameters at all"))
        XCTAssertEqual(Infotext.parse(""), ImageRecipe(prompt: ""))
        XCTAssertEqual(Infotext.parse(" \n \t"), ImageRecipe(prompt: ""))
        // Fewer than three pairs on the last line: it belongs to the prompt.
        XCTAssertEqual(Infotext.parse("a: b, c: d").prompt, "a: b, c: d")
    }

    func testEmptyValuesAreDroppedAndEscapedQuotesUnquoted() {
        let text = #"""
            cat, dog
            Negative prompt: 
            Steps: 10, Sampler: DDIM, CFG scale: 3, Seed: 7, Size: 256x256, Empty:, Note: "say \"hi\", ok"
            """#
        let r = Infotext.parse(text)
        XCTAssertEqual(r.prompt, "cat, dog")
        XCTAssertEqual(r.negativePrompt, "")
        XCTAssertEqual(samplerID(r), "ddim")
        XCTAssertEqual(r.extra, [.init("Note", #"say "hi", ok"#)])
    }

    /// `json.dumps('a, b: "c"\n\\d\x01\té', ensure_ascii=False)` == `"a, b: \"c\"\n\\d\u0001\té"`.
    func testQuoteMatchesPythonJSONDumps() {
        XCTAssertEqual(Infotext.quote("a, b: \"c\"\n\\d\u{01}\té"), #""a, b: \"c\"\n\\d\u0001\té""#)
        XCTAssertEqual(Infotext.quote("plain value"), "plain value")
        XCTAssertEqual(Infotext.quote("日本語"), "日本語")
        XCTAssertEqual(Infotext.quote("x:y"), #""x:y""#)
    }

    func testUnquoteMatchesPythonJSONLoads() {
        XCTAssertEqual(Infotext.unquote(#""a, b: \"c\"\n\\d\u0001\té""#), "a, b: \"c\"\n\\d\u{01}\té")
        XCTAssertEqual(Infotext.unquote(#""\ud83e\udd8a fox""#), "🦊 fox")
        // Not one valid JSON string: returned unchanged, as A1111's unquote does.
        XCTAssertEqual(Infotext.unquote(#""a" "b""#), #""a" "b""#)
        XCTAssertEqual(Infotext.unquote(#""bad \x escape""#), #""bad \x escape""#)
    }

    func testRendersA1111Layout() {
        let recipe = ImageRecipe(
            prompt: "a red fox in snow", negativePrompt: "blurry", steps: 25, sampler: "PLMS", cfgScale: 7.5,
            seed: 1234, width: 512, height: 512, modelHash: "abcdef0123", modelName: "v1-5-pruned-emaonly",
            version: "sdrepl 0.1.0")
        XCTAssertEqual(Infotext.render(recipe), """
            a red fox in snow
            Negative prompt: blurry
            Steps: 25, Sampler: PLMS, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model hash: abcdef0123, Model: v1-5-pruned-emaonly, Version: sdrepl 0.1.0
            """)
    }

    func testRenderOmitsEmptyNegativeAndClipSkipOneAndQuotesValues() {
        var recipe = ImageRecipe(prompt: "fox", steps: 4, sampler: "LCM", cfgScale: 1, seed: 9, width: 768, height: 512)
        recipe.modelName = "my model, v2: final"
        XCTAssertEqual(Infotext.render(recipe), """
            fox
            Steps: 4, Sampler: LCM, CFG scale: 1, Seed: 9, Size: 768x512, Model: "my model, v2: final"
            """)
        recipe.clipSkip = 2
        recipe.style = "cinematic"
        recipe.extra = [.init("Note", "line one\nline two")]
        XCTAssertTrue(Infotext.render(recipe).hasSuffix(#"Clip skip: 2, Style: cinematic, Note: "line one\nline two""#))
    }

    func testRoundTripsThroughRenderAndParse() {
        let recipe = ImageRecipe(
            prompt: "line one, with comma\nline two: colon \"quoted\"", negativePrompt: "bad\nworse, worst",
            steps: 30, sampler: "DPM++ 2M Karras", cfgScale: 6.25, seed: 18_446_744_073_709_551_615, width: 512,
            height: 640, modelHash: "0123456789", modelName: "name, with: punctuation", clipSkip: 2,
            style: "oil-painting", version: "sdrepl 0.1.0",
            extra: [.init("Eta", "0.5"), .init("Weird", "a\\b \"c\", d: e\nf")])
        XCTAssertEqual(Infotext.parse(Infotext.render(recipe)), recipe)
        let unicode = ImageRecipe(prompt: "狐狸在雪中 🦊, étoile", negativePrompt: "ぼやけた", steps: 20, sampler: "Euler", cfgScale: 7, seed: 1, width: 512, height: 512)
        XCTAssertEqual(Infotext.parse(Infotext.render(unicode)), unicode)
    }

    func testSamplerNameTable() {
        XCTAssertEqual(
            ["pndm", "ddim", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras", "lcm"].compactMap { (try? Sampler(name: $0))?.a1111Name },
            ["PLMS", "DDIM", "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "LCM"])
        XCTAssertEqual(Sampler(a1111Name: "DPM++ 2M", scheduleType: "Automatic")?.rawValue, "dpmpp-2m")
        XCTAssertEqual(Sampler(a1111Name: "DPM++ 2M Karras", scheduleType: "Karras")?.rawValue, "dpmpp-2m-karras")
        XCTAssertEqual(Sampler(a1111Name: "pndm")?.rawValue, "pndm")
        XCTAssertNil(Sampler(a1111Name: "DPM++ SDE")?.rawValue)
    }
}

/// The sampler an infotext names, read through the engine's one table of sampler names (with
/// A1111 1.9+'s separate `Schedule type`).
func samplerID(_ recipe: ImageRecipe) -> String? {
    recipe.sampler.flatMap { Sampler(a1111Name: $0, scheduleType: recipe.extra("Schedule type"))?.rawValue }
}
