import Diffusion
import Foundation
import Imaging
import TestSupport
import XCTest

/// Image-to-image, inpainting, timestep spacing and TAESD through the real binary on the tiny
/// models, against diffusers' pixels (`img2img/`, `inpaint/` and `spacing/manifest.json` hold the Python).
final class ImageToImageEndToEndTests: XCTestCase {
    private let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path

    /// The fixture scripts' request (`make_*_fixtures.py`: this prompt, seed 21, cfg 4, euler) at
    /// `size` and `steps`, autosave off: nine lines, so the lines after it keep their numbers.
    private func header(size: String, steps: Int) -> String {
        """
        model \(model)
        prompt a red fox in the snow
        negative blurry
        seed 21
        set size \(size)
        set steps \(steps)
        set cfg 4
        set sampler euler
        set autosave off
        """
    }

    private func pixels(_ path: String) throws -> [Float] {
        try PNGFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), path: path).image.pixels.map { Float($0) / 255 }
    }

    func testInitAndStrengthGiveDiffusersImg2ImgPixels() throws {
        let sandbox = Sandbox()
        let initPNG = FixturePaths.root.appendingPathComponent("img2img/init.png").path
        sandbox.write("i.sdscript", """
            \(header(size: "64x64", steps: 10))
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
        // An init image of another size is resized to the request's, with a note.
        sandbox.write("resize.sdscript", "model \(model)\nprompt x\nset size 96x80\nset steps 2\ninit \(initPNG)\ngen\n")
        let resized = try PipeRun(["run", "resize.sdscript"], in: sandbox)
        XCTAssertEqual(resized.status, 0, resized.stderr)
        XCTAssertTrue(resized.stdout.contains("init: \(initPNG) is 64x64; resized to 96x80 (Lanczos, as diffusers)"), resized.stdout)
    }

    /// A VAE file chosen with `set vae` encodes the init image as well as decoding, as A1111 (which
    /// loads the file into the model's VAE) and a diffusers pipeline given `vae=` do: the same pixels
    /// as a model whose vae/ is that VAE. Here the VAE is the tiny model's with its encoder's first
    /// convolution scaled, so only the encoding differs.
    func testASetVAEEncodesTheInitImageToo() throws {
        let sandbox = Sandbox()
        let fm = FileManager.default
        let own = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers")
        let vae = URL(fileURLWithPath: sandbox.path + "/other-vae")
        try fm.createDirectory(at: vae, withIntermediateDirectories: true)
        try fm.copyItem(at: own.appendingPathComponent("vae/config.json"), to: vae.appendingPathComponent("config.json"))
        let file = try SafetensorsFile(url: own.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"))
        let writer = try SafetensorsWriter(url: vae.appendingPathComponent("diffusion_pytorch_model.safetensors"),
                                           tensors: file.tensors.map { .init(name: $0.name, dtype: .f32, shape: $0.shape) })
        for info in file.tensors {
            let values = try file.tensor(info.name).data
            try writer.append(info.name == "encoder.conv_in.weight" ? values.map { $0 * 1.5 } : values)
        }
        try writer.finish()
        // The same model with that VAE as its own.
        let model2 = URL(fileURLWithPath: sandbox.path + "/model2")
        try fm.createDirectory(at: model2, withIntermediateDirectories: true)
        for part in try fm.contentsOfDirectory(atPath: own.path) {
            try fm.createSymbolicLink(at: model2.appendingPathComponent(part),
                                      withDestinationURL: part == "vae" ? vae : own.appendingPathComponent(part))
        }
        let initPNG = FixturePaths.root.appendingPathComponent("img2img/init.png").path
        func img2img(_ lines: String, _ out: String) throws {
            sandbox.write("\(out).sdscript", header(size: "64x64", steps: 6) + "\n" + lines + "\ninit \(initPNG)\nset strength 0.6\ngen\nsave \(out).png\n")
            let run = try PipeRun(["run", "\(out).sdscript"], in: sandbox)
            XCTAssertEqual(run.status, 0, run.stderr)
        }
        try img2img("set vae \(vae.path)", "chosen")
        try img2img("model \(model2.path)", "own")
        try img2img("", "original")
        XCTAssertEqual(try pixels(sandbox.path + "/chosen.png"), try pixels(sandbox.path + "/own.png"))
        XCTAssertNotEqual(try pixels(sandbox.path + "/chosen.png"), try pixels(sandbox.path + "/original.png"))
    }

    func testMaskGivesDiffusersInpaintPixelsAndLoadRestoresIt() throws {
        let sandbox = Sandbox()
        let initPNG = FixturePaths.root.appendingPathComponent("img2img/init.png").path
        let maskPNG = FixturePaths.root.appendingPathComponent("inpaint/mask.png").path
        let alphaPNG = FixturePaths.root.appendingPathComponent("inpaint/mask_alpha.png").path
        let nine = FixturePaths.root.appendingPathComponent("models/tiny-sd15-inpainting").path
        sandbox.write("m.sdscript", """
            model \(nine)
            prompt a red fox in the snow
            negative blurry
            seed 21
            set size 64x64
            set steps 10
            set cfg 4
            set sampler euler
            set autosave off
            init \(initPNG)
            set strength 0.75
            mask \(maskPNG)
            set mask-blur 0
            set inpaint-paste off
            gen
            save nine.png
            mask \(alphaPNG)
            gen
            save alpha.png
            model \(model)
            mask \(maskPNG)
            gen
            save four.png
            set mask-blur 4
            set inpaint-paste on
            gen
            save pasted.png
            load pasted.png
            gen
            save reloaded.png

            """)
        let run = try PipeRun(["run", "m.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        // With no blur and no paste, the pixels are diffusers' (inpaint/manifest.json has the Python).
        assertClose(try pixels(sandbox.path + "/nine.png"), try Fixture.tensors("inpaint/nine_euler_0.75.safetensors").tensor("image").data,
                    tolerance: 2.0 / 255, "9-channel inpainting through the REPL")
        assertClose(try pixels(sandbox.path + "/four.png"), try Fixture.tensors("inpaint/four_euler_0.75.safetensors").tensor("image").data,
                    tolerance: 2.0 / 255, "4-channel inpainting through the REPL")
        // A PNG's alpha is a mask too (opaque repaints), whatever its colours.
        XCTAssertEqual(try pixels(sandbox.path + "/alpha.png"), try pixels(sandbox.path + "/nine.png"))
        let recipe = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/pasted.png"))
        XCTAssertEqual(recipe.recipe.extra("Mask blur"), "4")
        XCTAssertEqual(recipe.recipe.extra("Denoising strength"), "0.75")
        let own = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(XCTUnwrap(recipe.settingsJSON).utf8)) as? [String: Any])
        XCTAssertEqual(own["mask"] as? String, maskPNG)
        XCTAssertEqual(own["init"] as? String, initPNG)
        XCTAssertEqual(own["inpaint_paste"] as? Bool, true)
        XCTAssertEqual((own["mask_sha256"] as? String)?.count, 64)
        // `load` restores the init image, the mask, the blur and the paste: the same picture again.
        XCTAssertEqual(try pixels(sandbox.path + "/reloaded.png"), try pixels(sandbox.path + "/pasted.png"))
        XCTAssertNotEqual(try pixels(sandbox.path + "/pasted.png"), try pixels(sandbox.path + "/four.png"))
        XCTAssertFalse(run.stderr.contains("load:"), run.stderr)
    }

    func testHiresFixThroughTheREPLAndLoad() throws {
        let sandbox = Sandbox()
        sandbox.write("h.sdscript", """
            \(header(size: "64x64", steps: 6))
            set hires 2
            set hires-steps 4
            set hires-strength 0.5
            gen
            save hires.png
            set hires off
            load hires.png
            gen
            save again.png
            set hires 4096x64

            """)
        let run = try PipeRun(["run", "--keep-going", "h.sdscript"], in: sandbox)
        // make_hires_fixtures.py's case euler_latent_x2: A1111's two passes over diffusers' parts.
        assertClose(try pixels(sandbox.path + "/hires.png"), try Fixture.tensors("hires/euler_latent_x2.safetensors").tensor("image").data,
                    tolerance: 2.0 / 255, "hires fix through the REPL")
        let recipe = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/hires.png")).recipe
        XCTAssertEqual([recipe.width, recipe.height], [64, 64], "A1111's Size is the first pass's")
        XCTAssertEqual(recipe.extra("Hires upscale"), "2")
        XCTAssertEqual(recipe.extra("Hires steps"), "4")
        XCTAssertEqual(recipe.extra("Hires upscaler"), "Latent")
        XCTAssertEqual(recipe.extra("Denoising strength"), "0.5")
        XCTAssertEqual(try pixels(sandbox.path + "/again.png"), try pixels(sandbox.path + "/hires.png"), "load restores the hires fix")
        XCTAssertTrue(run.stderr.contains("h.sdscript:19: set hires: expected sides that are a multiple of 8 from 64 to 2048, got '4096x64'"), run.stderr)
    }

    func testHiresFixWithAnUpscalerNetworkFoundByName() throws {
        let sandbox = Sandbox()
        try FileManager.default.createDirectory(atPath: sandbox.path + "/models/ESRGAN", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: FixturePaths.root.appendingPathComponent("esrgan/tiny-x4.safetensors").path,
                                         toPath: sandbox.path + "/models/ESRGAN/tiny-x4.safetensors")
        sandbox.write("n.sdscript", """
            \(header(size: "64x64", steps: 6))
            set hires 96x96
            set hires-steps 3
            set hires-strength 0.6
            set hires-upscaler tiny-x5
            set hires-upscaler tiny-x4
            gen
            save net.png
            set hires-upscaler latent
            load net.png
            gen
            save again.png

            """)
        let run = try PipeRun(["run", "--keep-going", "n.sdscript"], in: sandbox)
        // make_hires_fixtures.py's case euler_esrgan-x4: decoded, the tiny x4 RRDBNet, Lanczos to 96², encoded.
        assertClose(try pixels(sandbox.path + "/net.png"), try Fixture.tensors("hires/euler_esrgan-x4.safetensors").tensor("image").data,
                    tolerance: 2.0 / 255, "hires fix with an upscaler network through the REPL")
        let recipe = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/net.png")).recipe
        XCTAssertEqual(recipe.extra("Hires upscaler"), "tiny-x4", "A1111 names an ESRGAN model by its file")
        XCTAssertEqual(recipe.extra("Hires resize"), "96x96")
        XCTAssertEqual(try pixels(sandbox.path + "/again.png"), try pixels(sandbox.path + "/net.png"), "load restores the upscaler network")
        XCTAssertTrue(run.stderr.contains("n.sdscript:13: set hires-upscaler: expected latent, latent-nearest, latent-nearest-exact, latent-bicubic, lanczos, "
                                          + "or an upscaler's file or its name in "), run.stderr)
        XCTAssertTrue(run.stderr.contains("(did you mean 'tiny-x4'?)"), run.stderr)
        XCTAssertFalse(run.stderr.contains("load:"), run.stderr)
    }

    func testVAETilingThroughTheREPLAndLoad() throws {
        let sandbox = Sandbox()
        sandbox.write("t.sdscript", """
            \(header(size: "128x128", steps: 4))
            set vae-tiling on
            gen
            save tiled.png
            set vae-tiling off
            load tiled.png
            gen
            save again.png
            set vae-tiling maybe

            """)
        let run = try PipeRun(["run", "--keep-going", "t.sdscript"], in: sandbox)
        // make_vae_tiling_fixtures.py's txt2img: diffusers with pipe.vae.enable_tiling().
        assertClose(try pixels(sandbox.path + "/tiled.png"), try Fixture.tensors("vae_tiling/txt2img.safetensors").tensor("image").data,
                    tolerance: 2.0 / 255, "VAE tiling through the REPL")
        let stored = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/tiled.png"))
        let own = try JSONSerialization.jsonObject(with: Data((stored.settingsJSON ?? "{}").utf8)) as? [String: Any]
        XCTAssertEqual(own?["vae_tiling"] as? Bool, true, stored.settingsJSON ?? "no sdrepl keys")
        XCTAssertEqual(try pixels(sandbox.path + "/again.png"), try pixels(sandbox.path + "/tiled.png"), "load restores the tiling")
        XCTAssertTrue(run.stderr.contains("t.sdscript:17: set vae-tiling: expected auto, on or off, got 'maybe'"), run.stderr)
    }

    func testBadMasksAreClearErrors() throws {
        let sandbox = Sandbox()
        let initPNG = FixturePaths.root.appendingPathComponent("img2img/init.png").path
        let maskPNG = FixturePaths.root.appendingPathComponent("inpaint/mask.png").path
        sandbox.write("notimage.png", "hello")
        let black = try PNGFile.encode(try RGBImage(width: 8, height: 8, pixels: [UInt8](repeating: 0, count: 192)), chunks: [])
        XCTAssertTrue(FileManager.default.createFile(atPath: sandbox.path + "/black.png", contents: Data(black)))
        sandbox.write("b.sdscript", """
            model \(model)
            prompt x
            set size 64x64
            set steps 2
            set autosave off
            mask \(maskPNG)
            gen
            init \(initPNG)
            mask notimage.png
            gen
            mask black.png
            gen
            mask nosuch.png
            set mask-blur 65

            """)
        let run = try PipeRun(["run", "--keep-going", "b.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 1)
        for line in ["b.sdscript:7: gen: a mask needs an init image to repaint: set one with 'init FILE' or 'init N'",
                     "b.sdscript:9: mask: \(sandbox.path)/notimage.png: not a PNG or JPEG file",
                     "b.sdscript:12: gen: the mask is all black: nothing to repaint (white marks what is repainted)",
                     "b.sdscript:13: mask: \(sandbox.path)/nosuch.png: no such file",
                     "b.sdscript:14: set mask-blur: expected a whole number from 0 to 64, got '65'"] {
            XCTAssertTrue(run.stderr.contains(line), "\(line)\n\(run.stderr)")
        }
        XCTAssertTrue(run.stdout.contains("mask: \(sandbox.path)/black.png is 8x8; resized to 64x64"), run.stdout)
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
        XCTAssertTrue(run.stderr.contains("tiny-lora.safetensors is a LoRA (it has 'lora_"), run.stderr)
    }
}
