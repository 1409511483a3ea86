import Diffusion
import Foundation
import Imaging
import TestSupport
import XCTest

/// Few-step LoRAs, `set mode draft|final`, `final N`, and VAE files kept as A1111 keeps them, through
/// the real binary on the tiny models.
final class DraftWorkflowEndToEndTests: XCTestCase {
    private func pixels(_ path: String) throws -> [UInt8] {
        try PNGFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), path: path).image.pixels
    }

    private func link(_ fixture: String, as name: String, in sandbox: Sandbox) throws {
        let url = URL(fileURLWithPath: sandbox.path + "/" + name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: url.path, withDestinationPath: FixturePaths.root.appendingPathComponent(fixture).path)
    }

    /// The LCM-LoRA layout as a draft, every value explicit (as a transcript replays it), gives
    /// diffusers' pixels: `fewstep_lora/manifest.json`, `kohya/image` is
    /// `pipe(prompt, num_inference_steps=4, guidance_scale=1.0, height=96, width=96,
    /// generator=torch.Generator('cpu').manual_seed(33)).images[0][::4, ::4]` with the LoRA fused and
    /// `LCMScheduler`. `final 1` renders the same seed with the user's own settings (PNDM, 3 steps);
    /// `final last` takes the last image (here not a draft).
    func testAnExplicitDraftMatchesDiffusersAndFinalUsesTheUsersSettings() throws {
        let sandbox = Sandbox()
        try link("fewstep_lora/lcm-lora-layout.safetensors", as: "models/Lora/lcm-lora-sdv1-5.safetensors", in: sandbox)
        let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path
        sandbox.write("d.sdscript", """
            model \(model)
            prompt a red fox in the snow
            seed 33
            set size 96x96
            set steps 3
            set cfg 7.5
            set autosave off
            set mode draft lora=lcm-lora-sdv1-5:1 sampler=lcm steps=4 cfg=1 spacing=model
            gen
            save draft.png
            final 1
            save final.png
            set mode final
            set steps 3
            gen
            save own.png
            final last
            set mode drafty
            set mode draft lora=nosuch sampler=lcm

            """)
        let run = try PipeRun(["run", "--keep-going", "d.sdscript"], in: sandbox)
        let draft = try pixels(sandbox.path + "/draft.png")
        var every4th: [Float] = []
        for y in stride(from: 0, to: 96, by: 4) {
            for x in stride(from: 0, to: 96, by: 4) {
                for c in 0..<3 { every4th.append(Float(draft[(y * 96 + x) * 3 + c]) / 255) }
            }
        }
        assertClose(every4th, try Fixture.tensors("fewstep_lora/references").tensor("kohya/image").data,
                    tolerance: 1.0 / 255 + 1e-6, "LCM draft through the REPL")
        // final 1 is the user's own render of seed 33: the same pixels as a plain gen after 'set mode final'.
        XCTAssertEqual(try pixels(sandbox.path + "/final.png"), try pixels(sandbox.path + "/own.png"))
        XCTAssertNotEqual(try pixels(sandbox.path + "/final.png"), draft)
        let recipe = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/draft.png")).recipe
        XCTAssertTrue(recipe.prompt.hasSuffix("<lora:lcm-lora-sdv1-5:1>"), recipe.prompt)
        XCTAssertEqual(recipe.steps, 4)
        for line in ["d.sdscript:17: final: image 3 was not made in draft mode",
                     "d.sdscript:18: set mode: expected draft or final, got 'drafty'",
                     "d.sdscript:19: set mode draft: no LoRA named 'nosuch'"] {
            XCTAssertTrue(run.stderr.contains(line), "\(line)\n\(run.stderr)")
        }
    }

    /// `set mode draft` finds the few-step LoRA and the TAESD in A1111's folders, says what it picked,
    /// and says which files to get when there are none.
    func testDraftModeFindsTheLoRAAndTAESDOrSaysWhatToGet() throws {
        let empty = Sandbox()
        empty.write("e.sdscript", "model \(FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path)\nset mode draft\n")
        let none = try PipeRun(["run", "e.sdscript"], in: empty)
        XCTAssertTrue(none.stderr.contains("e.sdscript:2: set mode draft: no few-step LoRA for SD1.5 (LCM, TCD, Hyper-SD or PCM by its file name)"), none.stderr)
        XCTAssertTrue(none.stderr.contains("'model download latent-consistency/lcm-lora-sdv1-5 pytorch_lora_weights.safetensors'"), none.stderr)
        XCTAssertTrue(none.stderr.contains("; for fast decoding too, 'model download madebyollin/taesd taesd_decoder.safetensors' into models/VAE-taesd"),
                      none.stderr)

        let sandbox = Sandbox()
        try link("fewstep_lora/lcm-lora-layout.safetensors", as: "models/Lora/Hyper-SD15-8steps-lora.safetensors", in: sandbox)
        try link("fewstep_lora/lcm-lora-layout.safetensors", as: "models/Lora/lcm-lora-sdv1-5.safetensors", in: sandbox)
        try link("taesd/taesd_decoder.safetensors", as: "models/VAE-taesd/taesd_decoder.safetensors", in: sandbox)
        sandbox.write("f.sdscript", """
            model \(FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path)
            prompt a red fox
            seed 5
            set size 64x64
            set autosave off
            set mode draft
            gen
            save d.png

            """)
        let run = try PipeRun(["run", "f.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        let taesd = sandbox.path + "/models/VAE-taesd/taesd_decoder.safetensors"
        XCTAssertTrue(run.stdout.contains("draft: LCM-LoRA lora=lcm-lora-sdv1-5:1 sampler=lcm steps=4 cfg=1 spacing=model vae=\(taesd)"), run.stdout)
        let recipe = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/d.png")).recipe
        XCTAssertEqual(recipe.extra.first { $0.key == "VAE" }?.value, "taesd_decoder.safetensors")
        XCTAssertEqual(recipe.sampler, "LCM")

        // The explicit form takes a VAE by its name from 'vaes', as 'set vae NAME' does.
        sandbox.write("g.sdscript", "set mode draft lora=lcm-lora-sdv1-5:1 sampler=lcm steps=4 cfg=1 vae=taesd_decoder.safetensors\nset\n")
        let named = try PipeRun(["run", "g.sdscript"], in: sandbox)
        XCTAssertEqual(named.status, 0, named.stderr)
        XCTAssertTrue(named.stdout.contains("vae=\(taesd)"), named.stdout)
    }

    /// `set mode draft` skips a file named like a few-step LoRA but made for SDXL, and a TAESD that is
    /// not one, saying why; a LoRA name with blanks is recorded so that the replay reads it back
    /// (`run --check` matches); a prompt that has the draft LoRA's tag already (a loaded draft) keeps
    /// its own weight rather than getting a second tag; the explicit form checks its files when set.
    func testDraftsSkipFilesThatDoNotFitTakeNamesWithBlanksAndNeverTagTwice() throws {
        let sandbox = Sandbox()
        try link("fewstep_lora/lcm-lora-layout.safetensors", as: "models/Lora/LCM LoRA SD15.safetensors", in: sandbox)
        let block = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q"
        try writeSafetensors(URL(fileURLWithPath: sandbox.path + "/models/Lora/lcm-lora-sdxl.safetensors"),
                             [(block + ".lora_down.weight", .f32, [4, 640], [Float](repeating: 0, count: 2560)),
                              (block + ".lora_up.weight", .f32, [640, 4], [Float](repeating: 0, count: 2560))])
        try FileManager.default.createDirectory(atPath: sandbox.path + "/models/VAE-taesd", withIntermediateDirectories: true)
        try writeSafetensors(URL(fileURLWithPath: sandbox.path + "/models/VAE-taesd/taesd_decoder.safetensors"),
                             [("bar.bias", .f32, [2], [0, 0])])
        let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path
        // Typed at a terminal, so the session is recorded.
        let terminal = try PseudoTerminal([], in: sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.expect("sd> ")
        for line in ["model \(model)", "prompt a red fox", "seed 5", "set size 64x64", "set autosave off", "set mode draft", "gen",
                     "save d.png", "load d.png", "gen"] {
            terminal.type(line + "\r")
            terminal.expect("sd> ")
        }
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0)
        let output = terminal.transcript.replacingOccurrences(of: "\r\n", with: "\n")
        XCTAssertTrue(output.contains("draft: skipped lcm-lora-sdxl ("), output)
        XCTAssertTrue(output.contains("draft: skipped taesd_decoder.safetensors ("), output)
        XCTAssertTrue(output.contains("draft: LCM-LoRA lora=LCM LoRA SD15:1 sampler=lcm steps=4 cfg=1 spacing=model\n"), output)
        XCTAssertTrue(output.contains("draft: no usable TAESD in"), output)
        let recipe = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/d.png")).recipe
        XCTAssertEqual(recipe.prompt, "a red fox <lora:LCM LoRA SD15:1>")
        // The loaded draft's `gen` is the draft again: one tag, the same pixels.
        let hashes = output.components(separatedBy: "sha256 ").dropFirst().map { $0.prefix(16) }
        XCTAssertEqual(hashes.count, 2, output)
        XCTAssertEqual(hashes.first, hashes.last, output)

        // The transcript records the name with its blanks, and its replay checks.
        let path = "sessions/" + (try XCTUnwrap(sandbox.files(in: "sessions").last))
        let text = try String(contentsOfFile: sandbox.path + "/" + path, encoding: .utf8)
        XCTAssertTrue(text.contains("set mode draft lora=LCM LoRA SD15:1 sampler=lcm steps=4 cfg=1 spacing=model\n"), text)
        let check = try PipeRun(["run", "--check", path], in: sandbox)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stderr.contains("check: 2 images matched, 0 mismatched"), check.stderr)

        // The explicit form checks its files, and says which key or value it does not know.
        sandbox.write("h.sdscript", """
            model \(model)
            set mode draft lora=LCM LoRA SD15:1 sampler=lcm steps=4 cfg=1 vae=\(sandbox.path)/models/VAE-taesd/taesd_decoder.safetensors
            set mode draft lora=lcm-lora-sdxl:1 sampler=lcm
            set mode draft lora=LCM LoRA SD15:1 smapler=lcm
            set mode draft lora=LCM LoRA SD15:1 sampler=lcn
            set mode draft lora=LCM LoRA SD15:1 vae=none steps=2
            set

            """)
        let explicit = try PipeRun(["run", "--keep-going", "h.sdscript"], in: sandbox)
        for line in ["h.sdscript:2: set mode draft: vae=\(sandbox.path)/models/VAE-taesd/taesd_decoder.safetensors: ",
                     "h.sdscript:3: set mode draft: ", "is an SDXL LoRA",
                     "h.sdscript:4: set mode draft: expected KEY=VALUE with KEY one of lora, sampler, steps, cfg, spacing, eta, vae, got 'smapler=' (did you mean 'sampler='?)",
                     "h.sdscript:5: set mode draft: unknown sampler (", ": 'lcn' (did you mean 'lcm'?)"] {
            XCTAssertTrue(explicit.stderr.contains(line), "\(line)\n\(explicit.stderr)")
        }
        XCTAssertTrue(explicit.stdout.contains("draft lora=LCM LoRA SD15:1 sampler=lcm steps=2 cfg=1 spacing=model vae=none"), explicit.stdout)
    }

    /// A1111's folders: `vaes` lists `models/VAE`, `models/VAE-taesd` and `MODEL.vae.safetensors`
    /// beside the model (here a diffusers folder, `models/tiny`); `set vae auto` picks the latter, `set vae NAME` takes a listed name; saved
    /// images carry `VAE` and `VAE hash` (the file's SHA-256, first 10 hex digits, as A1111's
    /// `hashes.sha256(...)[0:10]`); `load` restores them, or says the VAE is missing. An SDXL VAE is
    /// refused saying so.
    func testVAEFilesAsA1111KeepsThem() throws {
        let sandbox = Sandbox()
        // A diffusers folder here (the tiny single file needs its config to generate): `tiny.vae.*` beside it.
        try link("models/tiny-sd15-diffusers", as: "models/tiny", in: sandbox)
        let vaeWeights = "models/tiny-sd15-diffusers/vae/diffusion_pytorch_model.safetensors"
        try link(vaeWeights, as: "models/tiny.vae.safetensors", in: sandbox)
        try link(vaeWeights, as: "models/VAE/sdxl_vae.safetensors", in: sandbox)
        try link("taesd/taesd_decoder.safetensors", as: "models/VAE-taesd/taesd_decoder.safetensors", in: sandbox)
        sandbox.write("v.sdscript", """
            model models/tiny
            prompt a red fox
            seed 5
            set size 64x64
            set steps 2
            set autosave off
            gen
            vaes
            set vae auto
            gen
            save auto.png
            set vae taesd_decodr
            set vae sdxl_vae.safetensors
            set vae taesd_decoder
            set vae none
            load auto.png
            gen
            save loaded.png

            """)
        let run = try PipeRun(["run", "--keep-going", "v.sdscript"], in: sandbox)
        XCTAssertTrue(run.stdout.contains("tiny.vae.safetensors  (auto: named like the model)"), run.stdout)
        XCTAssertTrue(run.stdout.contains("3 VAEs in "), run.stdout)
        let hash = try sha256sum(FixturePaths.root.appendingPathComponent(vaeWeights).path).prefix(10)
        for file in ["auto.png", "loaded.png"] {
            let recipe = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/" + file)).recipe
            XCTAssertEqual(recipe.extra.first { $0.key == "VAE" }?.value, "tiny.vae.safetensors", file)
            XCTAssertEqual(recipe.extra.first { $0.key == "VAE hash" }?.value, String(hash), file)
        }
        for line in ["v.sdscript:12: set vae: ", "did you mean 'taesd_decoder.safetensors'",
                     "v.sdscript:13: set vae: ", "sdxl_vae.safetensors is an SDXL VAE (its name has 'sdxl'); SD1.x models need an SD1.x VAE"] {
            XCTAssertTrue(run.stderr.contains(line), "\(line)\n\(run.stderr)")
        }
        XCTAssertFalse(run.stderr.contains("load:"), run.stderr)

        // Elsewhere, without the VAE: load says so in its one warning line.
        let other = Sandbox()
        try FileManager.default.copyItem(atPath: sandbox.path + "/auto.png", toPath: other.path + "/auto.png")
        other.write("l.sdscript", "load auto.png\n")
        let load = try PipeRun(["run", "l.sdscript"], in: other)
        XCTAssertTrue(load.stderr.contains("its VAE tiny.vae.safetensors (hash \(hash)) is not in "), load.stderr)
    }

    /// Tab completes `set vae` with the listed names (and paths), and `set mode` with its two words.
    func testTabCompletesVAENamesAndModes() throws {
        let sandbox = Sandbox()
        try link("taesd/taesd_decoder.safetensors", as: "models/VAE-taesd/taesd_decoder.safetensors", in: sandbox)
        let terminal = try PseudoTerminal([], in: sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.expect("sd> ")
        terminal.type("set vae taesd_\t")
        terminal.expect("decoder.safetensors")
        terminal.type("\r")
        terminal.expect("sd> ")
        terminal.type("set mode fi\t")
        terminal.expect("nal")
        terminal.type("\r")
        terminal.expect("sd> ")
        terminal.type("set\r")
        terminal.expect("taesd_decoder.safetensors")
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0)
    }
}
