import Diffusion
import Foundation
import Imaging
import TestSupport
import XCTest
@testable import SDScript

/// Every example in examples/ runs without an error, with the real styles and the test-double engine.
final class ExamplesTests: XCTestCase {
    private func run(_ name: String, prepare: (Session) -> Void = { _ in }) throws -> (Session, CountingLoader, ScriptSummary) {
        let path = FixturePaths.repoRoot.appendingPathComponent("examples/\(name)").path
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), path)
        let loader = CountingLoader()
        let components = Components(generatorLoader: loader, models: FixedModelCatalog(),
                                    styles: StyleBook(environment: [:]), saver: RecordingSaver())
        let session = Session(components: components, io: BufferIO(), drawSeed: { 9 })
        // The examples use 512x512; the double's cost is in the pixels, so check the language at 64x64.
        session.settings.request.width = 64
        session.settings.request.height = 64
        prepare(session)
        let summary = session.runScript(at: path)
        return (session, loader, summary)
    }

    func testStyleTour() throws {
        let (session, loader, summary) = try run("style-tour.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(session.images.map(\.request.style),
                       ["none", "cinematic", "photographic", "anime", "watercolor", "oil-painting", "pixel-art", "line-art"])
        XCTAssertEqual(Set(loader.generator.requests.map(\.seed)), [1234])
        let cinematic = try XCTUnwrap(StyleLibrary().style(named: "cinematic"))
        XCTAssertEqual(loader.generator.requests[1].prompt,
                       cinematic.prompt.replacingOccurrences(of: "{prompt}", with: "a lighthouse on a rocky coast at dusk"))
        XCTAssertEqual(session.images[1].request.typedPrompt, "a lighthouse on a rocky coast at dusk")
        XCTAssertEqual(session.settings.request.style, "none")
    }

    func testSeedSweep() throws {
        let (session, loader, summary) = try run("seed-sweep.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(loader.generator.requests.map(\.seed), [100, 101, 102, 103, 100, 101, 102, 103, 102])
        XCTAssertEqual(loader.generator.requests.map(\.sampler), Array(repeating: .pndm, count: 4)
                       + Array(repeating: .eulerAncestral, count: 4) + [.dpmpp2mKarras])
        XCTAssertEqual(session.images.last?.savedPaths.last, "fox-102.png", "outputs are relative to the current directory")
    }

    func testXYZGrid() throws {
        let (session, loader, summary) = try run("xyz-grid.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(session.images.count, 18 + 6)
        let first = loader.generator.requests.prefix(18)
        XCTAssertEqual(first.map(\.seed), Array(repeating: [1, 2, 3], count: 6).flatMap { $0 })
        XCTAssertEqual(first.map(\.guidanceScale), Array(repeating: [4, 4, 4, 7, 7, 7, 10, 10, 10], count: 2).flatMap { $0 })
        XCTAssertEqual(first.map(\.sampler), Array(repeating: .euler, count: 9) + Array(repeating: .dpmpp2m, count: 9))
        XCTAssertEqual(loader.generator.requests.suffix(6).map(\.prompt).prefix(3), [
            "a lighthouse on a rocky coast at dusk, dramatic sky", "a windmill on a rocky coast at dusk, dramatic sky",
            "a castle, in ruins on a rocky coast at dusk, dramatic sky",
        ])
        XCTAssertEqual(Set(loader.generator.requests.suffix(6).map(\.seed)), [7])
        XCTAssertEqual(session.history.sheet?.cells.count, 6)
    }

    func testNegativePrompts() throws {
        let (_, loader, summary) = try run("negative-prompts.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(loader.generator.requests.map(\.negativePrompt), [
            "", "blurry, lowres, deformed hands, extra fingers, watermark, text",
            "blurry, lowres, deformed hands, extra fingers, watermark, text",
        ])
        XCTAssertEqual(loader.generator.requests.map(\.guidanceScale), [7.5, 7.5, 11])
    }

    func testPromptWeighting() throws {
        let (_, loader, summary) = try run("prompt-weighting.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(loader.generator.requests.map(\.prompt), [
            "a cottage in a forest, autumn", "a cottage in a forest, (autumn:1.5)",
            "a cottage in a forest, ((red leaves)), [fog]", "a cottage in a (forest:0.6), autumn, (lanterns:1.3)",
        ])
    }

    func testPromptEditing() throws {
        let (_, loader, summary) = try run("prompt-editing.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(loader.generator.requests.map(\.prompt), [
            "portrait of a [lion:tiger:0.4], golden hour, detailed fur",
            "a cottage in a forest[, heavy snow::0.5], autumn colours",
            "a [cat|fox] sitting on a windowsill, soft light",
            "a stone castle on a hill AND a red dragon in the sky:0.7",
        ])
        XCTAssertEqual(Set(loader.generator.requests.map(\.steps)), [30])
    }

    func testImageToImageAndInpainting() throws {
        let (_, loader, summary) = try run("img2img-inpaint.sdscript")
        XCTAssertEqual(summary.errors, [])
        let requests = loader.generator.requests
        XCTAssertEqual(requests.map { $0.initImage != nil }, [false, true, true])
        XCTAssertEqual(requests.map(\.strength), [0.75, 0.6, 0.9])
        XCTAssertEqual(requests.map { $0.mask != nil }, [false, false, true])
        // masks/sky.png is 512x512, white over its top 201 rows: resized to the session's 64x64.
        let mask = try XCTUnwrap(requests[2].mask)
        XCTAssertEqual([mask.width, mask.height], [64, 64])
        XCTAssertEqual(mask.values[0], 255)
        XCTAssertEqual(mask.values[63 * 64], 0)
    }

    func testHiresFix() throws {
        let (session, loader, summary) = try run("hires-fix.sdscript")
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(loader.generator.requests.map(\.hires), [
            HiresFix(width: 128, height: 128, steps: 10, strength: 0.5, upscaler: .latent),
            HiresFix(width: 128, height: 128, steps: 10, strength: 0.5, upscaler: .lanczos),
        ])
        XCTAssertNil(session.settings.request.hires)
    }

    func testUpscale() throws {
        // The tiny fixture upscaler under the released model's name.
        let folder = TemporaryFolder()
        try FileManager.default.createSymbolicLink(atPath: folder.path + "/RealESRGAN_x4plus.safetensors",
                                                   withDestinationPath: Fixture.url("esrgan/tiny-x4.safetensors").path)
        let (session, _, summary) = try run("upscale.sdscript") { $0.settings.resources.upscalerDir = folder.path }
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(session.images.map { [$0.pixels.width, $0.pixels.height] }, [[64, 64], [256, 256], [128, 128]])
        XCTAssertEqual(session.images.compactMap(\.upscale?.factor), [4, 2])
        XCTAssertEqual(Set(session.images.compactMap(\.upscale?.upscaler)), ["RealESRGAN_x4plus"])
    }
}
