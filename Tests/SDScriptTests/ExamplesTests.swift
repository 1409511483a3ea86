import Foundation
import TestSupport
import XCTest
@testable import SDScript

/// TEST DOUBLE: the preset names of issue 7, each appending its name to the prompt.
final class PresetNamesStyleBook: StyleBook {
    let names = ["none", "enhance", "cinematic", "photographic", "anime", "digital-art", "oil-painting", "watercolor",
                 "pixel-art", "3d-render", "fantasy", "line-art", "comic"]
    func listing() -> [String] { names }
    func apply(_ style: String, prompt: String, negative: String) -> (prompt: String, negative: String)? {
        guard names.contains(style) else { return nil }
        return style == "none" ? (prompt, negative) : ("\(prompt), \(style) style", negative)
    }
    func load(csv path: String) throws {}
}

/// Every example in examples/ runs without an error once the engine and styles are there.
final class ExamplesTests: XCTestCase {
    private func run(_ name: String) throws -> (Session, CountingLoader, ScriptSummary) {
        let path = FixturePaths.repoRoot.appendingPathComponent("examples/\(name)").path
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), path)
        let loader = CountingLoader()
        let components = Components(generatorLoader: loader, models: FixedModelCatalog(),
                                    styles: PresetNamesStyleBook(), saver: RecordingSaver())
        let session = Session(components: components, io: BufferIO(), drawSeed: { 9 })
        // The examples use 512x512; the double's cost is in the pixels, so check the language at 64x64.
        session.settings.width = 64
        session.settings.height = 64
        let summary = session.runScript(at: path)
        return (session, loader, summary)
    }

    func testStyleTour() throws {
        let (session, loader, summary) = try run("style-tour.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(loader.generator.requests.map(\.style),
                       ["none", "cinematic", "photographic", "anime", "watercolor", "oil-painting", "pixel-art", "line-art"])
        XCTAssertEqual(Set(loader.generator.requests.map(\.seed)), [1234])
        XCTAssertEqual(loader.generator.requests[1].prompt, "a lighthouse on a rocky coast at dusk, cinematic style")
        XCTAssertEqual(session.settings.style, "none")
    }

    func testSeedSweep() throws {
        let (session, loader, summary) = try run("seed-sweep.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(loader.generator.requests.map(\.seed), [100, 101, 102, 103, 100, 101, 102, 103, 102])
        XCTAssertEqual(loader.generator.requests.map(\.sampler), Array(repeating: "pndm", count: 4)
                       + Array(repeating: "euler-a", count: 4) + ["dpmpp-2m-karras"])
        XCTAssertEqual(session.images.last?.savedPaths.last, "fox-102.png", "outputs are relative to the current directory")
    }

    func testNegativePrompts() throws {
        let (_, loader, summary) = try run("negative-prompts.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(loader.generator.requests.map(\.negative), [
            "", "blurry, lowres, deformed hands, extra fingers, watermark, text",
            "blurry, lowres, deformed hands, extra fingers, watermark, text",
        ])
        XCTAssertEqual(loader.generator.requests.map(\.cfg), [7.5, 7.5, 11])
    }

    func testPromptWeighting() throws {
        let (_, loader, summary) = try run("prompt-weighting.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(loader.generator.requests.map(\.prompt), [
            "a cottage in a forest, autumn", "a cottage in a forest, (autumn:1.5)",
            "a cottage in a forest, ((red leaves)), [fog]", "a cottage in a (forest:0.6), autumn, (lanterns:1.3)",
        ])
    }
}
