import Diffusion
import Foundation
import Imaging
import TestSupport
import XCTest

/// `upscale 1 PATH` then `save PATH.png` through the real binary on the tiny SD model and the tiny
/// x4 upscaler: the saved file holds the engine's upscale of the generated image and A1111's keys.
final class UpscaleEndToEndTests: XCTestCase {
    private let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path
    private let upscaler = FixturePaths.root.appendingPathComponent("esrgan/tiny-x4.safetensors").path

    private func image(_ path: String) throws -> RGBImage {
        try PNGFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), path: path).image
    }

    func testUpscaleThenSaveWritesTheUpscaledImageWithItsRecipe() throws {
        let sandbox = Sandbox()
        sandbox.write("u.sdscript", """
            model \(model)
            prompt a red fox in the snow
            seed 21
            set size 64x64
            set steps 2
            set autosave off
            gen
            save gen.png
            upscale 1 \(upscaler)
            save out.png

            """)
        let run = try PipeRun(["run", "u.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        let generated = try image(sandbox.path + "/gen.png"), upscaled = try image(sandbox.path + "/out.png")
        XCTAssertEqual([upscaled.width, upscaled.height], [256, 256])
        let expected = try Upscaler.load(URL(fileURLWithPath: upscaler))
            .upscale(PixelImage(width: 64, height: 64, rgb: generated.pixels))
        XCTAssertEqual(upscaled.pixels, expected.rgb)
        let recipe = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/out.png")).recipe
        XCTAssertEqual(recipe.seed, 21)
        XCTAssertEqual(recipe.extra("Postprocess upscale by"), "4")
        XCTAssertEqual(recipe.extra("Postprocess upscaler"), "tiny-x4")
    }
}
