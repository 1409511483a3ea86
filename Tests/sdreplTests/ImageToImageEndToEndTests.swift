import Diffusion
import Foundation
import Imaging
import TestSupport
import XCTest

/// Image-to-image, timestep spacing and TAESD through the real binary on the tiny model, against
/// diffusers' pixels (`img2img/manifest.json` and `spacing/manifest.json` hold the Python).
final class ImageToImageEndToEndTests: XCTestCase {
    private let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path

    private func pixels(_ path: String) throws -> [Float] {
        try PNGFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), path: path).image.pixels.map { Float($0) / 255 }
    }

    func testInitAndStrengthGiveDiffusersImg2ImgPixels() throws {
        let sandbox = Sandbox()
        let initPNG = FixturePaths.root.appendingPathComponent("img2img/init.png").path
        sandbox.write("i.sdscript", """
            model \(model)
            prompt a red fox in the snow
            negative blurry
            seed 21
            set size 64x64
            set steps 10
            set cfg 4
            set sampler euler
            set autosave off
            init \(initPNG)
            set strength 0.6
            gen
            save out.png

            """)
        let run = try PipeRun(["run", "i.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        let expected = try Fixture.tensors("img2img/euler").tensor("image")
        assertClose(try pixels(sandbox.path + "/out.png"), expected.data, tolerance: 2.0 / 255, "img2img through the REPL")
        let recipe = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/out.png")).recipe
        XCTAssertEqual(recipe.extra("Denoising strength"), "0.6")
        // A size that does not fit the init image is refused with what to do.
        sandbox.write("bad.sdscript", "model \(model)\nprompt x\nset size 96x96\ninit \(initPNG)\ngen\n")
        let bad = try PipeRun(["run", "bad.sdscript"], in: sandbox)
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("bad.sdscript:5: gen: the init image is 64x64 but size is 96x96; 'set size 64x64'"), bad.stderr)
    }

    func testSpacingAndTAESDThroughTheREPL() throws {
        let sandbox = Sandbox()
        let taesd = FixturePaths.root.appendingPathComponent("taesd/taesd_decoder.safetensors").path
        sandbox.write("s.sdscript", """
            model \(model)
            prompt a red fox in the snow
            negative blurry
            seed 33
            set size 64x64
            set steps 6
            set cfg 4
            set sampler ddim
            set spacing trailing
            set autosave off
            gen
            save trailing.png
            set vae \(taesd)
            gen
            save taesd.png
            set vae none
            set vae \(FixturePaths.root.appendingPathComponent("lora/tiny-lora.safetensors").path)

            """)
        let run = try PipeRun(["run", "--keep-going", "s.sdscript"], in: sandbox)
        let expected = try Fixture.tensors("spacing/images").tensor("ddim/trailing")
        assertClose(try pixels(sandbox.path + "/trailing.png"), expected.data, tolerance: 1.0 / 255 + 1e-6, "ddim, trailing spacing")
        XCTAssertNotEqual(try pixels(sandbox.path + "/taesd.png"), try pixels(sandbox.path + "/trailing.png"))
        XCTAssertTrue(run.stderr.contains("s.sdscript:17: set vae: "), run.stderr)
        XCTAssertTrue(run.stderr.contains("nor a TAESD decoder"), run.stderr)
    }
}
