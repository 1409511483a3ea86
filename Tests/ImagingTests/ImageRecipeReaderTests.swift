import Diffusion
import XCTest

@testable import Imaging

final class ImageRecipeReaderTests: XCTestCase {
    func testReadsSdreplPNGWithItsOwnKeys() throws {
        let metadata = sampleMetadata()
        let png = try PNGFile.encode(makeTestImage(), chunks: metadata.pngChunks)
        let stored = try ImageRecipeReader.read(png, path: "fox.png")
        XCTAssertEqual(stored.source, .sdrepl)
        XCTAssertEqual(stored.recipe, metadata.recipe)
        XCTAssertEqual(stored.typedPrompt, "a red fox in snow")
        XCTAssertEqual(stored.style, "enhance")
        XCTAssertEqual(stored.settingsJSON, #"{"cfg":7.5,"seed":1234,"steps":25}"#)
        XCTAssertEqual(stored.timestamp, "2026-11-25T03:15:22Z")
        XCTAssertTrue(stored.declaresAIOrigin)
        XCTAssertEqual(stored.watermark, ImageMetadata.aiWatermark)
        let load = stored.promptToLoad
        XCTAssertEqual([load.prompt, load.negativePrompt, load.style], ["a red fox in snow", "blurry", "enhance"])
    }

    /// A JPEG carries sdrepl's own keys too (the settings that A1111's line lacks: spacing, eta,
    /// VAE tiling), in a comment, so `load` of it restores what `load` of the PNG does.
    func testReadsSdreplJPEGWithItsOwnKeys() throws {
        let metadata = sampleMetadata()
        let jpeg = try JPEGFile.encode(makeTestImage(), segments: metadata.jpegSegments())
        let stored = try ImageRecipeReader.read(jpeg, path: "fox.jpg")
        XCTAssertEqual(stored.source, .sdrepl)
        XCTAssertEqual(stored.recipe, metadata.recipe)
        XCTAssertEqual(samplerID(stored.recipe), "pndm")
        XCTAssertEqual(stored.typedPrompt, "a red fox in snow")
        XCTAssertEqual(stored.settingsJSON, #"{"cfg":7.5,"seed":1234,"steps":25}"#)
        XCTAssertEqual(stored.timestamp, "2026-11-25T03:15:22Z")
        XCTAssertTrue(stored.declaresAIOrigin)
        XCTAssertEqual(stored.watermark, ImageMetadata.aiWatermark)
        let load = stored.promptToLoad
        XCTAssertEqual([load.prompt, load.negativePrompt, load.style], ["a red fox in snow", "blurry", "enhance"])
    }

    /// Without sdrepl's comment (an older sdrepl JPEG, or keys too long for one segment), the
    /// infotext alone: its prompts already carry the style, so they load with style none.
    func testReadsJPEGWithOnlyTheInfotext() throws {
        var metadata = sampleMetadata()
        metadata.typedPrompt = String(repeating: "fox ", count: 20_000)
        XCTAssertNil(metadata.jpegSdreplKeys, "over one segment")
        let jpeg = try JPEGFile.encode(makeTestImage(), segments: sampleMetadata().jpegSegments().dropLast())
        let stored = try ImageRecipeReader.read(jpeg, path: "fox.jpg")
        XCTAssertEqual(stored.source, .infotext)
        XCTAssertEqual(stored.recipe, metadata.recipe)
        XCTAssertNil(stored.settingsJSON)
        XCTAssertEqual(stored.watermark, ImageMetadata.aiWatermark)
        let load = stored.promptToLoad
        XCTAssertEqual([load.prompt, load.negativePrompt, load.style], ["a red fox in snow, highly detailed", "blurry", "none"])
    }

    /// An RGBA PNG with nothing but A1111's `parameters` tEXt chunk, written without libpng.
    func testReadsA1111PNGWithOnlyParameters() throws {
        let infotext = """
            a cozy cabin, snow, (warm light:1.2)
            Negative prompt: lowres
            Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3141592653, Size: 2x1, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1
            """
        let png = craftPNG(
            width: 2, height: 1, colorType: 6, rows: [[9, 8, 7, 255, 6, 5, 4, 255]],
            chunks: [("tEXt", Array("parameters\0".utf8) + latin1Bytes(infotext))])
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("a1111-\(UUID().uuidString).png")
        try Data(png).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }

        let stored = try ImageRecipeReader.read(url)
        XCTAssertEqual(stored.source, .infotext)
        XCTAssertEqual(stored.recipe.prompt, "a cozy cabin, snow, (warm light:1.2)")
        XCTAssertEqual(stored.recipe.negativePrompt, "lowres")
        XCTAssertEqual(stored.recipe.seed, 3_141_592_653)
        XCTAssertEqual(stored.recipe.steps, 20)
        XCTAssertEqual(stored.recipe.cfgScale, 7)
        XCTAssertEqual(samplerID(stored.recipe), "dpmpp-2m-karras")
        XCTAssertEqual(stored.recipe.width, 2)
        XCTAssertFalse(stored.declaresAIOrigin)
        XCTAssertEqual(stored.promptToLoad.style, "none")
    }

    func testParametersAfterIDATAndITXtAreFound() throws {
        let infotext = "雪の小屋\nSteps: 5, Sampler: Euler, CFG scale: 2, Seed: 1, Size: 1x1"
        let png = craftPNG(
            width: 1, height: 1, colorType: 2, rows: [[1, 2, 3]], chunks: [],
            trailingChunks: [("iTXt", Array("parameters\0\0\0\0\0".utf8) + Array(infotext.utf8))])
        let stored = try ImageRecipeReader.read(png, path: "late.png")
        XCTAssertEqual(stored.recipe.prompt, "雪の小屋")
        XCTAssertEqual(samplerID(stored.recipe), "euler")
    }

    func testFilesWithoutRecipeOrUnknownFormat() throws {
        let bare = try PNGFile.encode(makeTestImage(width: 4, height: 4), chunks: [])
        XCTAssertThrowsError(try ImageRecipeReader.read(bare, path: "bare.png")) { error in
            XCTAssertEqual(error as? ImagingError, .noRecipe(path: "bare.png"))
        }
        XCTAssertThrowsError(try ImageRecipeReader.read(Array("GIF89a".utf8), path: "x.gif"))
        XCTAssertThrowsError(try ImageRecipeReader.read(URL(fileURLWithPath: "/nonexistent/file.png"))) { error in
            XCTAssertEqual(error as? ImagingError, .readFailed(path: "/nonexistent/file.png", reason: "no such file or folder"))
            XCTAssertEqual("\(error)", "could not read /nonexistent/file.png: no such file or folder")
        }
        let folder = NSTemporaryDirectory()
        XCTAssertThrowsError(try ImageRecipeReader.read(URL(fileURLWithPath: folder))) { error in
            XCTAssertEqual(error as? ImagingError, .readFailed(path: URL(fileURLWithPath: folder).path, reason: "is a folder, not a file"))
        }
        XCTAssertThrowsError(try StyleLibrary.load(URL(fileURLWithPath: folder))) { error in
            XCTAssertEqual(error as? ImagingError, .readFailed(path: URL(fileURLWithPath: folder).path, reason: "is a folder, not a file"))
        }
    }
}
