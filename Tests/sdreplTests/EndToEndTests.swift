import Diffusion
import Foundation
import Imaging
import TestSupport
import XCTest

/// The real `sdrepl` binary generating with the fixture model (Tests/Fixtures/models): scripts,
/// transcripts and `--check`, pixels against the engine and against diffusers, save/load/info,
/// model discovery, and a terminal's progress bar, Ctrl-C and sixel. Every process runs in a
/// `Sandbox` (its own HOME, XDG folders, HF_HOME and working directory).
final class EndToEndTests: XCTestCase {
    static let diffusersModel = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path
    static let singleFileModel = FixturePaths.root.appendingPathComponent("models/tiny-sd15.safetensors").path

    /// Paths after `saved` in the output, in order.
    private func savedPaths(_ stdout: String) -> [String] {
        stdout.split(separator: "\n").flatMap { line -> [String] in
            guard let range = line.range(of: "saved ") else { return [] }
            return line[range.upperBound...].split(separator: " ").map(String.init)
        }
    }

    private func decodePNG(_ path: String) throws -> DecodedPNG {
        try PNGFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), path: path)
    }

    /// `image[::step, ::step] / 255` of a decoded PNG, as the fixtures store diffusers' images.
    private func subsampled(_ png: DecodedPNG, every step: Int) -> [Float] {
        var values: [Float] = []
        for y in stride(from: 0, to: png.image.height, by: step) {
            for x in stride(from: 0, to: png.image.width, by: step) {
                for c in 0..<3 { values.append(Float(png.image.pixels[(y * png.image.width + x) * 3 + c]) / 255) }
            }
        }
        return values
    }

    private func sha256(of path: String) throws -> String { try sha256sum(path) }

    // MARK: - Scripts, transcripts, --check

    func testScriptRunAndStandardInputGenerateSaveAndATranscriptChecks() throws {
        let sandbox = Sandbox()
        let script = """
            model \(Self.diffusersModel)
            prompt a red fox in the snow
            seed 7
            set size 96x128
            set steps 4
            set sampler euler-a
            gen 2
            save fox.png
            """
        sandbox.write("fox.sdscript", script + "\n")
        let run = try PipeRun(["run", "fox.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        let hashes = imageHashes(run.stdout)
        XCTAssertEqual(hashes.count, 2, run.stdout)
        XCTAssertNotEqual(hashes.first, hashes.last, "seeds 7 and 8 differ")
        // autosave: PNG + JPEG of each image in generated_images/; `save fox.png`: fox-1.png, fox-2.png
        XCTAssertEqual(sandbox.files(in: "generated_images").filter { $0.hasSuffix(".png") }.count, 2)
        XCTAssertEqual(sandbox.files(in: "generated_images").filter { $0.hasSuffix(".jpg") }.count, 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: sandbox.path + "/fox-1.png"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: sandbox.path + "/fox-2.png"))

        let piped = try PipeRun([], stdin: script + "\n", in: sandbox)
        XCTAssertEqual(piped.status, 1, "save fox.png again: files are never overwritten")
        XCTAssertTrue(piped.stderr.contains("<stdin>:8: save:"), piped.stderr)
        XCTAssertEqual(imageHashes(piped.stdout), hashes, "sdrepl < FILE gives the same pixels as sdrepl run FILE")

        // An interactive session records the transcript; it replays and checks.
        let typed = script.split(separator: "\n").dropLast().map(String.init) + ["save pty.png", "seed random", "gen"]
        let (path, text) = try recordedSession(typing: typed, in: sandbox, da1Reply: "\u{1B}[?62;22c")
        let results = text.split(separator: "\n").filter { $0.hasPrefix("#=> image") }
        XCTAssertEqual(results.count, 3, text)
        XCTAssertTrue(results[0].contains("seed=7 size=96x128 sha256=\(hashes[0])"), text)
        XCTAssertTrue(text.contains(" # random\ngen\n"), "the random seed drawn is written before its gen:\n\(text)")
        XCTAssertTrue(text.contains("\nsave pty.png\n#=> saved 1 pty-1.png\n#=> saved 2 pty-2.png\n"), text)
        let before = sandbox.files(in: "")

        let check = try PipeRun(["run", "--check", path], in: sandbox)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stderr.contains("check: 3 images matched, 0 mismatched"), check.stderr)
        XCTAssertEqual(sandbox.files(in: ""), before, "--check writes no files")

        // Tamper with the second image's hash: --check names the line and fails.
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let target = try XCTUnwrap(lines.indices.filter { lines[$0].hasPrefix("#=> image") }.dropFirst().first)
        let digit = lines[target].last == "0" ? "1" : "0"
        lines[target] = String(lines[target].dropLast()) + digit
        sandbox.write("tampered.sdscript", lines.joined(separator: "\n"))
        let tampered = try PipeRun(["run", "--check", "tampered.sdscript"], in: sandbox)
        XCTAssertEqual(tampered.status, 1)
        XCTAssertTrue(tampered.stderr.contains("tampered.sdscript:\(target + 1): check: image 2 differs: sha256 recorded"),
                      tampered.stderr)
        XCTAssertTrue(tampered.stderr.contains("check: 2 images matched, 1 mismatched"), tampered.stderr)

        // Cut off after the last gen (a crash): its image is not checked, and the summary says so.
        lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let last = try XCTUnwrap(lines.lastIndex { $0.hasPrefix("#=> image") })
        sandbox.write("cut.sdscript", lines[..<last].joined(separator: "\n") + "\n")
        let cut = try PipeRun(["run", "--check", "cut.sdscript"], in: sandbox)
        XCTAssertEqual(cut.status, 1)
        XCTAssertTrue(cut.stderr.contains("has no '#=> image' line to check against"), cut.stderr)
        XCTAssertTrue(cut.stderr.contains("check: 2 images matched, 0 mismatched, 1 not recorded"), cut.stderr)
    }

    // MARK: - Pixels: the REPL equals the engine equals diffusers

    func testTheREPLReproducesTheDiffusersFixturesAndTheEngine() throws {
        let manifestURL = FixturePaths.root.appendingPathComponent("pipeline/manifest.json")
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as? [String: Any]
        let cases = try XCTUnwrap(manifest?["cases"] as? [[String: Any]])
        let pipeline = try StableDiffusionPipeline(url: URL(fileURLWithPath: Self.diffusersModel))
        for name in ["pndm_cfg", "ddim_nonsquare"] {
            let c = try XCTUnwrap(cases.first { $0["name"] as? String == name })
            let prompt = try XCTUnwrap(c["prompt"] as? String), negative = c["negative_prompt"] as? String ?? ""
            let seed = try XCTUnwrap(c["seed"] as? Int), steps = try XCTUnwrap(c["steps"] as? Int)
            let guidance = try XCTUnwrap(c["guidance"] as? Double)
            let width = try XCTUnwrap(c["width"] as? Int), height = try XCTUnwrap(c["height"] as? Int)
            let sampler = try XCTUnwrap(c["sampler"] as? String)
            let sandbox = Sandbox()
            sandbox.write("case.sdscript", """
                model \(Self.diffusersModel)
                prompt \(prompt)
                negative \(negative)
                seed \(seed)
                set steps \(steps)
                set cfg \(guidance)
                set size \(width)x\(height)
                set sampler \(sampler)
                set autosave off
                gen
                save case.png

                """)
            let run = try PipeRun(["run", "case.sdscript"], in: sandbox)
            XCTAssertEqual(run.status, 0, "\(name): \(run.stderr)")
            let png = try decodePNG(sandbox.path + "/case.png")
            XCTAssertEqual([png.image.width, png.image.height], [width, height], name)

            // diffusers: the stored float image [H, W, 3] in [0, 1], within 1/255.
            let reference = try SafetensorsFile(url: FixturePaths.root.appendingPathComponent("pipeline/\(c["file"] as? String ?? "")"))
            let expected = try reference.tensor("image")
            XCTAssertEqual(expected.shape, [height, width, 3], name)
            var worst: Float = 0
            for (byte, value) in zip(png.image.pixels, expected.data) { worst = max(worst, abs(Float(byte) / 255 - value)) }
            XCTAssertLessThanOrEqual(worst, 1.0 / 255 + 1e-6, "\(name): max pixel difference \(worst * 255)/255")

            // The engine in this process: the same bytes.
            let request = GenerationRequest(prompt: prompt, negativePrompt: negative, seed: UInt64(seed), steps: steps,
                                            guidanceScale: Float(guidance), width: width, height: height,
                                            sampler: try Sampler(name: sampler))
            let engine = try XCTUnwrap(try pipeline.generate(request).first)
            XCTAssertEqual(png.image.pixels, engine.image.rgb, "\(name): the REPL's PNG equals the pipeline's pixels")

            // The recipe: A1111 parameters with the UNet file's short hash and the model's name.
            let parameters = try XCTUnwrap(png.text("parameters"), name)
            let unetHash = try sha256(of: Self.diffusersModel + "/unet/diffusion_pytorch_model.safetensors")
            XCTAssertTrue(parameters.contains("Model hash: \(unetHash.prefix(10)), Model: tiny-sd15-diffusers"), parameters)
            XCTAssertTrue(parameters.contains("Seed: \(seed), Size: \(width)x\(height)"), parameters)
            XCTAssertTrue(parameters.hasSuffix("Version: sdrepl \(SDReplVersion.string)"), parameters)
        }
    }

    /// A LoRA through the REPL: found in `models/Lora`, listed by `loras`, shown by `tokens`, applied
    /// as diffusers applies it (the `full_0.8` case of `lora/references`), named in the saved
    /// recipe's `Lora hashes`.
    func testALoRATagThroughTheREPLMatchesDiffusers() throws {
        let sandbox = Sandbox()
        let lora = FixturePaths.root.appendingPathComponent("lora/tiny-lora.safetensors").path
        try FileManager.default.createDirectory(atPath: sandbox.path + "/models/Lora/tiny", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: lora, toPath: sandbox.path + "/models/Lora/tiny/tiny-lora.safetensors")
        sandbox.write("lora.sdscript", """
            model \(Self.diffusersModel)
            loras
            prompt a red fox in the snow <lora:tiny-lora:0.8>
            tokens
            seed 33
            set steps 4
            set size 96x96
            set autosave off
            gen
            save fox.png

            """)
        let run = try PipeRun(["run", "lora.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("<lora:tiny-lora:1>\n1 LoRA in \(sandbox.path)/models/Lora"), run.stdout)
        XCTAssertTrue(run.stdout.contains("LoRA tiny-lora: text encoder x0.8, UNet x0.8\n6 tokens in 1 chunk"), run.stdout)
        let png = try decodePNG(sandbox.path + "/fox.png")
        // pipe.load_lora_weights(...); pipe.fuse_lora(lora_scale=0.8); pipe(prompt, 4 steps, 7.5, 96x96, seed 33)
        let expected = try SafetensorsFile(url: FixturePaths.root.appendingPathComponent("lora/references.safetensors"))
            .tensor("full_0.8/image_every4th").data
        XCTAssertLessThanOrEqual(maxAbsDifference(subsampled(png, every: 4), expected), 1.0 / 255 + 1e-6)
        let parameters = try XCTUnwrap(png.text("parameters"))
        XCTAssertTrue(parameters.hasPrefix("a red fox in the snow <lora:tiny-lora:0.8>\n"), parameters)
        // A1111's hash of a .safetensors LoRA, the SHA-256 of what follows the header (hashes.py's
        // addnet_hash_safetensors): hashlib.sha256(b[8 + struct.unpack("<Q", b[:8])[0]:]).hexdigest()[:12]
        // of the fixture's bytes b. The whole file's SHA-256 starts 5f1de8a1acc4.
        XCTAssertTrue(parameters.contains("Lora hashes: \"tiny-lora: 3d755519d909\""), parameters)

        // A misspelt name: where sdrepl looked, and the closest name there.
        let typo = try PipeRun([], stdin: "model \(Self.diffusersModel)\nset size 64x64\nprompt a fox <lora:tiny-lorra>\ngen\n", in: sandbox)
        XCTAssertEqual(typo.status, 1)
        XCTAssertTrue(typo.stderr.contains("gen: no LoRA named 'tiny-lorra': looked for tiny-lorra.safetensors in \(sandbox.path)/models/Lora"),
                      typo.stderr)
        XCTAssertTrue(typo.stderr.contains("(did you mean 'tiny-lora'?)"), typo.stderr)
    }

    /// Textual-inversion embeddings through the REPL: found in `embeddings/`, listed, shown by
    /// `tokens` as `<name>`, and applied as diffusers' `load_textual_inversion` does (`ti/references`).
    func testEmbeddingsThroughTheREPLMatchDiffusers() throws {
        let sandbox = Sandbox()
        try FileManager.default.createDirectory(atPath: sandbox.path + "/embeddings", withIntermediateDirectories: true)
        for name in ["tinyneg", "tinyglow"] {
            try FileManager.default.copyItem(atPath: FixturePaths.root.appendingPathComponent("ti/\(name).safetensors").path,
                                             toPath: sandbox.path + "/embeddings/\(name).safetensors")
        }
        sandbox.write("ti.sdscript", """
            model \(Self.diffusersModel)
            embeddings
            prompt a tinyglow fox in the snow
            tokens
            seed 33
            set steps 4
            set size 96x96
            set autosave off
            gen
            save glow.png
            prompt a red fox in the snow
            negative tinyneg, blurry
            gen
            save neg.png

            """)
        let run = try PipeRun(["run", "ti.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("tinyglow\ntinyneg\n2 embeddings in \(sandbox.path)/embeddings"), run.stdout)
        XCTAssertTrue(run.stdout.contains("chunk 1 (6 tokens): a <tinyglow> fox in the snow"), run.stdout)
        let references = try SafetensorsFile(url: FixturePaths.root.appendingPathComponent("ti/references.safetensors"))
        for (file, name) in [("glow.png", "pos"), ("neg.png", "neg")] {
            let png = try decodePNG(sandbox.path + "/" + file)
            let expected = try references.tensor("\(name)/image_every16th").data
            XCTAssertLessThanOrEqual(maxAbsDifference(subsampled(png, every: 16), expected), 1.0 / 255 + 1e-6, name)
        }
    }

    // MARK: - save, load, info

    func testLoadOfASavedPNGAndJPEGRegeneratesTheSamePixels() throws {
        let sandbox = Sandbox()
        sandbox.write("make.sdscript", """
            model \(Self.diffusersModel)
            prompt a cottage in a forest, (autumn:1.3)
            negative fog
            set style watercolor
            seed 4242
            set size 128x96
            set steps 5
            set cfg 6.5
            set sampler dpmpp-2m-karras
            gen

            """)
        let made = try PipeRun(["run", "make.sdscript"], in: sandbox)
        XCTAssertEqual(made.status, 0, made.stderr)
        let hash = try XCTUnwrap(imageHashes(made.stdout).first)
        let saved = savedPaths(made.stdout)
        XCTAssertEqual(saved.map { ($0 as NSString).pathExtension }, ["png", "jpg"], made.stdout)
        XCTAssertTrue(saved.allSatisfy { $0.hasPrefix("generated_images/") && $0.contains("_s4242_") }, "\(saved)")
        for path in saved {
            // Another session with other settings: load sets them all back.
            let again = try PipeRun([], stdin: "model \(Self.diffusersModel)\nprompt x\nseed 1\nset steps 9\nload \(path)\nset autosave off\ngen\n", in: sandbox)
            XCTAssertEqual(again.status, 0, "\(path): \(again.stderr)")
            XCTAssertEqual(imageHashes(again.stdout), [hash], "\(path): load then gen regenerates the image")

            let info = try PipeRun(["info", path], in: sandbox)
            XCTAssertEqual(info.status, 0, info.stderr)
            XCTAssertTrue(info.stdout.contains("Negative prompt: "), info.stdout)
            XCTAssertTrue(info.stdout.contains("Steps: 5, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 4242, Size: 128x96, Model hash: "),
                          info.stdout)
            XCTAssertTrue(info.stdout.contains("Model: tiny-sd15"), info.stdout)
            XCTAssertTrue(info.stdout.contains("AI Origin Watermark"), info.stdout)
            XCTAssertTrue(info.stdout.contains("trainedAlgorithmicMedia"), info.stdout)
        }
        let png = try PipeRun(["info", saved[0]], in: sandbox)
        XCTAssertTrue(png.stdout.contains("Prompt as typed: a cottage in a forest, (autumn:1.3)"), png.stdout)
        XCTAssertTrue(png.stdout.contains("Style: watercolor"), png.stdout)
        let missing = try PipeRun(["info", "nothing.png"], in: sandbox)
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("nothing.png"), missing.stderr)
    }

    /// `~` in a path typed at the prompt is `$HOME`, as in the shell, not the password database's home.
    func testATildeIsTheHomeTheEnvironmentGives() throws {
        let sandbox = Sandbox()
        try FileManager.default.createDirectory(atPath: sandbox.path + "/home", withIntermediateDirectories: true)
        sandbox.write("home/s.sdscript", "help seed\n")
        let run = try PipeRun(["--no-record"], stdin: "run ~/s.sdscript\n", in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("usage: seed"), run.stdout + run.stderr)
    }

    func testASaveFailureKeepsTheImageForSaveElsewhere() throws {
        let sandbox = Sandbox()
        // The default outdir is not checked as `set outdir` checks one: a file where it should be.
        sandbox.write("generated_images", "a file where the output folder should be")
        sandbox.write("s.sdscript", """
            model \(Self.diffusersModel)
            prompt a boat
            seed 5
            set size 96x96
            set steps 4
            gen
            save elsewhere/boat.png
            history

            """)
        let run = try PipeRun(["run", "--keep-going", "s.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 1)
        XCTAssertTrue(run.stderr.contains("s.sdscript:6: gen: autosave: cannot create the folder "), run.stderr)
        XCTAssertEqual(run.stderr.components(separatedBy: "stays in the session").count, 2, run.stderr)
        XCTAssertTrue(run.stderr.contains("generated_images"), run.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: sandbox.path + "/elsewhere/boat.png"), run.stdout + run.stderr)
        XCTAssertTrue(run.stdout.contains("1  seed 5, 96x96"), run.stdout)
    }

    // MARK: - Models

    func testModelsListsAModelsFolderAndAFakeHuggingFaceCache() throws {
        let sandbox = Sandbox()
        let fm = FileManager.default
        try fm.createDirectory(atPath: sandbox.path + "/models", withIntermediateDirectories: true)
        try fm.copyItem(atPath: Self.singleFileModel, toPath: sandbox.path + "/models/tiny.safetensors")
        let sha = try sha256(of: Self.singleFileModel)
        let listed = try PipeRun([], stdin: "models\n", in: sandbox)
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertTrue(listed.stdout.contains("\(sandbox.path)/models/tiny.safetensors  single-file  "), listed.stdout)
        XCTAssertTrue(listed.stdout.contains("hash \(sha.prefix(10))  (./models)"), listed.stdout)
        XCTAssertTrue(listed.stdout.contains("using \(sandbox.path)/models/tiny.safetensors (./models)"), listed.stdout)
        let cached = try String(contentsOfFile: sandbox.path + "/cache/sdrepl/model-hashes.tsv", encoding: .utf8)
        XCTAssertTrue(cached.contains(String(sha.prefix(10))), "the hash is cached under XDG_CACHE_HOME")
        try fm.removeItem(atPath: sandbox.path + "/models")

        // A Hugging Face cache under $HF_HOME, found with no configuration: a diffusers snapshot.
        let repo = sandbox.path + "/hf/hub/models--stable-diffusion-v1-5--stable-diffusion-v1-5"
        try fm.createDirectory(atPath: repo + "/snapshots", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: repo + "/refs", withIntermediateDirectories: true)
        try fm.copyItem(atPath: Self.diffusersModel, toPath: repo + "/snapshots/0123abc")
        try "0123abc".write(toFile: repo + "/refs/main", atomically: true, encoding: .utf8)
        let unetSHA = try sha256(of: Self.diffusersModel + "/unet/diffusion_pytorch_model.safetensors")
        let hub = try PipeRun([], stdin: "models\nprompt a fox\nseed 1\nset size 96x96\nset steps 4\nset autosave off\ngen\n", in: sandbox)
        XCTAssertEqual(hub.status, 0, hub.stderr)
        XCTAssertTrue(hub.stdout.contains("\(repo)/snapshots/0123abc  diffusers  F32  "), hub.stdout)
        XCTAssertTrue(hub.stdout.contains("hash \(unetSHA.prefix(10))  (HF cache (stable-diffusion-v1-5/stable-diffusion-v1-5))"), hub.stdout)
        XCTAssertTrue(hub.stdout.contains("loading \(repo)/snapshots/0123abc"), hub.stdout)
        XCTAssertEqual(imageHashes(hub.stdout).count, 1, hub.stdout)
    }

    func testBadModelsGiveTheEnginesErrorAndTheSessionGoesOn() throws {
        let sandbox = Sandbox()
        sandbox.write("old.ckpt", "not really a pickle")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Self.singleFileModel))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: sandbox.path + "/truncated.safetensors"))
        sandbox.write("s.sdscript", """
            prompt a fox
            set size 96x96
            set steps 4
            set autosave off
            model old.ckpt
            model nowhere.safetensors
            model truncated.safetensors
            gen
            model \(Self.singleFileModel)
            gen
            model \(Self.diffusersModel)
            gen

            """)
        let run = try PipeRun(["run", "--keep-going", "s.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 1)
        XCTAssertTrue(run.stderr.contains("s.sdscript:5: model:"), run.stderr)
        XCTAssertTrue(run.stderr.contains("old.ckpt is a text file, not a weights file"), run.stderr)
        XCTAssertTrue(run.stderr.contains("s.sdscript:6: model:"), run.stderr)
        // `model PATH` opens the checkpoint at once (header, layout, shapes): a refused one is reported
        // on its own line, names its path once, and never replaces the working model.
        let truncated = run.stderr.split(separator: "\n").first { $0.hasPrefix("s.sdscript:7: model:") } ?? ""
        XCTAssertEqual(truncated.components(separatedBy: "truncated.safetensors").count - 1, 1, run.stderr)
        // The tiny single file carries no config, so it is read as SD1.5 and refused by shape (as an
        // SD2 or SDXL file would be), naming the tensor and both shapes.
        XCTAssertTrue(run.stderr.contains("s.sdscript:9: model: "), run.stderr)
        XCTAssertTrue(run.stderr.contains("has shape [49408, 8] but SD1.5 needs [49408, 768]"), run.stderr)
        XCTAssertEqual(imageHashes(run.stdout).count, 1, "the last gen works: \(run.stdout) \(run.stderr)")
    }

    // MARK: - A terminal: progress bar, Ctrl-C, sixel

    func testProgressBarCtrlCAndTheNextGenOnATerminal() throws {
        let sandbox = Sandbox()
        let terminal = try PseudoTerminal(["--model", Self.diffusersModel], in: sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.expect("sd> ")
        for line in ["prompt a fox", "seed 1", "set size 512x512", "set sampler euler", "set steps 1000", "set autosave off"] {
            terminal.type(line + "\r")
            terminal.expect("sd> ")
        }
        terminal.type("gen\r")
        terminal.expect("/1000", timeout: 60)
        terminal.expect("s/step  ETA", timeout: 30)
        terminal.type("\u{03}")
        terminal.expect("gen: cancelled (0 of 1 image finished)", timeout: 30)
        terminal.expect("sd> ")
        terminal.type("set steps 4\r")
        terminal.expect("sd> ")
        terminal.type("set size 96x96\r")
        terminal.expect("sd> ")
        terminal.type("gen\r")
        terminal.expect("image 1: seed 1, 96x96, ", timeout: 60)
        terminal.expect(" s, sha256 ", timeout: 5)
        terminal.expect("sd> ")
        XCTAssertFalse(terminal.transcript.contains("\u{1B}P"), "no sixel when the terminal does not list attribute 4")
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0)
    }

    func testASixelImageIsDrawnWhenTheTerminalListsAttribute4() throws {
        let sandbox = Sandbox()
        let terminal = try PseudoTerminal(["--model", Self.diffusersModel], in: sandbox, da1Reply: "\u{1B}[?62;4;22c")
        terminal.expect("sd> ")
        terminal.type("prompt a fox\r")
        terminal.expect("sd> ")
        terminal.type("set size 96x96\r")
        terminal.expect("sd> ")
        terminal.type("set steps 4\r")
        terminal.expect("sd> ")
        terminal.type("gen\r")
        terminal.expect("image 1: seed ", timeout: 60)
        terminal.expect("\u{1B}P", timeout: 30)  // DCS: the start of a sixel image
        terminal.expect("\u{1B}\\", timeout: 30)
        terminal.expect("sd> ")
        terminal.type("show\r")
        terminal.expect("\u{1B}P", timeout: 30)
        terminal.expect("sd> ")
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0)
    }

    /// With stdout on a pipe (`sdrepl | tee log`) lines are read without the line editor: Ctrl-C
    /// drops the line being typed and the session goes on.
    func testCtrlCAtThePromptWithStdoutOnAPipeDropsTheLine() throws {
        let sandbox = Sandbox()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let terminal = try PseudoTerminal(["--no-record"], in: sandbox, stdoutPipe: fds[1])
        close(fds[1])
        terminal.settle(1)
        terminal.type("prompt dropped")
        terminal.settle()
        terminal.type("\u{03}")
        terminal.settle()
        for line in ["prompt a fox", "set", "quit"] { terminal.type(line + "\r") }
        XCTAssertEqual(terminal.waitForExit(timeout: 30), 0)
        let text = String(decoding: FileHandle(fileDescriptor: fds[0], closeOnDealloc: true).readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(text.contains("prompt          a fox"), text)
        XCTAssertFalse(text.contains("dropped"), text)
    }

    func testNoSixelWhenStdoutIsAPipe() throws {
        let sandbox = Sandbox()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let terminal = try PseudoTerminal(["--model", Self.diffusersModel], in: sandbox, stdoutPipe: fds[1],
                                          da1Reply: "\u{1B}[?62;4;22c")
        close(fds[1])
        for line in ["prompt a fox", "set size 96x96", "set steps 4", "set preview sixel", "gen", "quit"] {
            terminal.type(line + "\r")
        }
        XCTAssertEqual(terminal.waitForExit(timeout: 60), 0)
        let output = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true).readDataToEndOfFile()
        let text = String(decoding: output, as: UTF8.self)
        XCTAssertTrue(text.contains("image 1: seed "), text)
        XCTAssertFalse(text.contains("\u{1B}"), "no escape sequences on a pipe: \(text.debugDescription)")
        XCTAssertFalse(terminal.transcript.contains("\u{1B}P"))
    }
}

/// The examples are written for SD1.5 at 512x512 (their language is checked on the test double in
/// SDScriptTests.ExamplesTests); one runs here for real on the tiny model, with its size set small
/// first (the example sets steps and seeds but not the size).
final class ExampleRunTests: XCTestCase {
    /// Runs `examples/NAME` with `sdrepl run` on the tiny model at `size`; returns the run and its
    /// `image N: … sha256 …` lines.
    private func runExample(_ name: String, size: String) throws -> (PipeRun, [Substring]) {
        let sandbox = Sandbox()
        let example = FixturePaths.repoRoot.appendingPathComponent("examples/\(name)").path
        sandbox.write("wrapper.sdscript", """
            model \(EndToEndTests.diffusersModel)
            set size \(size)
            set autosave off
            run \(example)

            """)
        let run = try PipeRun(["run", "wrapper.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        return (run, run.stdout.split(separator: "\n").filter { $0.hasPrefix("image ") && $0.contains("sha256") })
    }

    func testPromptWeightingExampleRunsOnTheFixtureModel() throws {
        let (run, images) = try runExample("prompt-weighting.sdscript", size: "96x96")
        XCTAssertEqual(images.count, 4, run.stdout)
        XCTAssertTrue(run.stdout.contains("chunk 1 ("), "tokens shows the chunks: \(run.stdout)")
    }

    /// Prompt editing for real: `tokens` shows which text serves which steps (30 steps, the swap at
    /// 0.4 = step 12, which A1111's counter serves with the first text through step 13).
    func testPromptEditingExampleRunsOnTheFixtureModel() throws {
        let (run, hashes) = try runExample("prompt-editing.sdscript", size: "64x64")
        XCTAssertEqual(hashes.count, 4, run.stdout)
        XCTAssertEqual(Set(hashes.map { $0.split(separator: " ").last ?? "" }).count, 4, "four different pictures")
        XCTAssertTrue(run.stdout.contains("""
            2 prompts composed with AND or a :weight; their guidance adds up
            prompt 1 of 2, weight 1.0:
              6 tokens in 1 chunk of up to 75
                chunk 1 (6 tokens): a stone castle on a hill
            prompt 2 of 2, weight 0.7:
            """), run.stdout)
        XCTAssertTrue(run.stdout.contains("""
            prompt editing: 2 texts over 30 steps
              steps 1-13: portrait of a lion, golden hour, detailed fur
              steps 14-30: portrait of a tiger, golden hour, detailed fur
            """), run.stdout)
    }

    /// Image-to-image from image 1, then inpainting with a 512x512 mask resized to the picture.
    func testImageToImageAndInpaintingExampleRunsOnTheFixtureModel() throws {
        let (run, hashes) = try runExample("img2img-inpaint.sdscript", size: "64x64")
        XCTAssertEqual(hashes.count, 3, run.stdout)
        XCTAssertEqual(Set(hashes.map { $0.split(separator: " ").last ?? "" }).count, 3, "three different pictures")
        XCTAssertTrue(run.stdout.contains("masks/sky.png is 512x512; resized to 64x64"), run.stdout)
    }
}
