import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// `<lora:…>` tags (A1111's `extra_networks.parse_prompt` and the LoRA arguments of
/// `extra_networks_lora.py`) and LoRA files: layouts, strictness, and the delta arithmetic.
final class LoRATests: XCTestCase {
    func testTagsAreRemovedAndTheirArgumentsRead() throws {
        let (prompt, loras) = try ExtraNetworks.parse("a fox <lora:ink:0.8>, snow <lora:styles/paper:1:0.5> <lyco:old> <lora:x:te=0.3:unet=2>")
        XCTAssertEqual(prompt, "a fox , snow   ")
        XCTAssertEqual(loras, [
            LoRAReference(name: "ink", textEncoderMultiplier: 0.8),
            LoRAReference(name: "styles/paper", textEncoderMultiplier: 1, unetMultiplier: 0.5),
            LoRAReference(name: "old"),
            LoRAReference(name: "x", textEncoderMultiplier: 0.3, unetMultiplier: 2),
        ])
        // Not tags: no kind, nothing after the colon, no closing bracket.
        XCTAssertEqual(try ExtraNetworks.parse("a <b> c <:d> <e:> <f:g").prompt, "a <b> c <:d> <e:> <f:g")
        // Tags go before prompt editing reads the text, as in A1111.
        XCTAssertEqual(try ExtraNetworks.parse("[cat:dog<lora:a:1>:0.5]").prompt, "[cat:dog:0.5]")
    }

    func testBadTagsAreRefusedNamingTheTag() {
        XCTAssertThrowsError(try ExtraNetworks.parse("a <lora:ink:lots>")) {
            XCTAssertEqual("\($0)", "<lora:ink:lots>: 'lots' is not a multiplier; write a number such as 0.8")
        }
        XCTAssertThrowsError(try ExtraNetworks.parse("a <lora: :1>")) { XCTAssertTrue("\($0)".contains("names no LoRA"), "\($0)") }
        XCTAssertThrowsError(try ExtraNetworks.parse("a <hypernet:h:1>")) {
            XCTAssertEqual($0 as? LoRAError, .unsupportedNetwork(tag: "<hypernet:h:1>", kind: "hypernet"))
        }
    }

    // MARK: - Files

    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("lora-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// Writes a safetensors file of fp32 tensors filled with `value(name, index)`.
    @discardableResult
    private func write(_ name: String, _ tensors: [(String, [Int])], value: (String, Int) -> Float = { _, i in Float(i % 7) * 0.1 - 0.3 }) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let writer = try SafetensorsWriter(url: url, tensors: tensors.map { .init(name: $0.0, dtype: .f32, shape: $0.1) })
        for (tensorName, shape) in tensors {
            try writer.append((0..<shape.reduce(1, *)).map { value(tensorName, $0) })
        }
        try writer.finish()
        return url
    }

    private func checkpoint() throws -> Checkpoint {
        try Checkpoint(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast))
    }

    /// `W + multiplier · alpha / r · up · down`, for a linear layer, a 1×1 conv and a 3×3 conv, read
    /// through the patched source, against the same sum written out here in Double.
    func testDeltasAreAddedWithAlphaOverRank() throws {
        let base = try checkpoint()
        let q = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
        let conv = "unet.down_blocks.0.resnets.0.conv1.weight"
        let fc1 = "text_encoder.text_model.encoder.layers.1.mlp.fc1.weight"
        let qShape = try XCTUnwrap(base.shape(of: q)), convShape = try XCTUnwrap(base.shape(of: conv))
        let fcShape = try XCTUnwrap(base.shape(of: fc1))
        let url = try write("three.safetensors", [
            ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", [2, qShape[1]]),
            ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", [qShape[0], 2]),
            ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha", [1]),
            ("lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight", [3, convShape[1], 3, 3]),
            ("lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight", [convShape[0], 3, 1, 1]),
            ("lora_te_text_model_encoder_layers_1_mlp_fc1.lora_down.weight", [2, fcShape[1]]),
            ("lora_te_text_model_encoder_layers_1_mlp_fc1.lora_up.weight", [fcShape[0], 2]),
        ], value: { name, i in name.hasSuffix(".alpha") ? 1 : Float((i * 37 + name.count) % 11) * 0.05 - 0.25 })
        let lora = try LoRAFile(url: url)
        let patched = try LoRAPatchedSource(base: base, loras: [(lora, 0.5, 0.8)])
        let file = try SafetensorsFile(url: url)

        func expected(_ key: String, module: String, scale: Double) throws -> [Float] {
            let shape = try XCTUnwrap(base.shape(of: key))
            var w = [Float](repeating: 0, count: shape.reduce(1, *))
            try w.withUnsafeMutableBufferPointer { try base.read(key, into: $0) }
            let up = try file.tensor(module + ".lora_up.weight"), down = try file.tensor(module + ".lora_down.weight")
            let rank = down.shape[0], rows = shape[0], columns = w.count / rows
            return (0..<w.count).map { index in
                let (r, c) = (index / columns, index % columns)
                let delta = (0..<rank).reduce(0.0) { $0 + Double(up.data[r * rank + $1]) * Double(down.data[$1 * columns + c]) }
                return Float(Double(w[index]) + scale * delta)
            }
        }
        func read(_ key: String) throws -> [Float] {
            var out = [Float](repeating: .nan, count: try XCTUnwrap(patched.shape(of: key)).reduce(1, *))
            try out.withUnsafeMutableBufferPointer { try patched.read(key, into: $0) }
            return out
        }
        // to_q: alpha 1, rank 2, UNet multiplier 0.8; conv1: no alpha (= rank); fc1: text encoder 0.5.
        assertClose(try read(q), try expected(q, module: "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
                                              scale: 0.8 * 1 / 2), tolerance: 1e-6, "to_q")
        assertClose(try read(conv), try expected(conv, module: "lora_unet_down_blocks_0_resnets_0_conv1", scale: 0.8),
                    tolerance: 1e-6, "conv1 3x3")
        assertClose(try read(fc1), try expected(fc1, module: "lora_te_text_model_encoder_layers_1_mlp_fc1", scale: 0.5),
                    tolerance: 1e-6, "fc1")
        // Untouched weights are the checkpoint's.
        let k = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight"
        var plain = [Float](repeating: 0, count: try XCTUnwrap(base.shape(of: k)).reduce(1, *))
        try plain.withUnsafeMutableBufferPointer { try base.read(k, into: $0) }
        XCTAssertEqual(try read(k), plain)
    }

    /// PEFT's layout (`lora_A` / `lora_B` under the module's own path) changes the same weight.
    func testPEFTLayoutIsRead() throws {
        let base = try checkpoint()
        let key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.weight"
        let shape = try XCTUnwrap(base.shape(of: key))
        let url = try write("peft.safetensors", [
            ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.lora_A.weight", [1, shape[1]]),
            ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.lora_B.weight", [shape[0], 1]),
        ], value: { _, _ in 0.5 })
        let patched = try LoRAPatchedSource(base: base, loras: [(try LoRAFile(url: url), 1, 1)])
        var a = [Float](repeating: 0, count: shape.reduce(1, *)), b = a
        try a.withUnsafeMutableBufferPointer { try base.read(key, into: $0) }
        try b.withUnsafeMutableBufferPointer { try patched.read(key, into: $0) }
        assertClose(b, a.map { $0 + 0.25 }, tolerance: 1e-6, "up · down = 0.5 · 0.5 everywhere; no alpha: alpha = rank")
    }

    /// A 1×1 kernel written on one side only still fits: `[r, in, 1, 1]` on a linear weight,
    /// `[r, in]` on a 1×1 convolution (`proj_in`), as different trainers save them.
    func testOneByOneKernelsFitEitherWay() throws {
        let base = try checkpoint()
        let q = try XCTUnwrap(base.shape(of: "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"))
        let proj = try XCTUnwrap(base.shape(of: "unet.down_blocks.0.attentions.0.proj_in.weight"))
        let url = try write("kernels.safetensors", [
            ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", [2, q[1], 1, 1]),
            ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", [q[0], 2, 1, 1]),
            ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", [2, proj[1]]),
            ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", [proj[0], 2]),
        ])
        XCTAssertNoThrow(try LoRAPatchedSource(base: base, loras: [(try LoRAFile(url: url), 1, 1)]))
    }

    func testWrongFilesAreRefusedClearly() throws {
        let base = try checkpoint()
        func refusal(_ url: URL) -> String {
            do {
                _ = try LoRAPatchedSource(base: base, loras: [(try LoRAFile(url: url), 1, 1)])
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        let sdxl = try write("sdxl.safetensors", [("lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", [1, 8]),
                                                  ("lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", [8, 1])])
        XCTAssertTrue(refusal(sdxl).contains("is an SDXL LoRA (it has 'lora_te1_"), refusal(sdxl))
        XCTAssertTrue(refusal(sdxl).hasSuffix("use the SD1.5 version of this LoRA"), refusal(sdxl))
        // A LoHa fails by its form, which no SD1.5 version would change.
        let loha = try write("loha.safetensors", [("lora_unet_conv_in.hada_w1_a", [4, 2])])
        XCTAssertEqual(refusal(loha), "\(loha.path) is a LoHa (it has 'lora_unet_conv_in.hada_w1_a'); sdrepl applies only LoRA and LoCon "
                       + "networks ('*.lora_up.weight' · '*.lora_down.weight'): use a LoRA version of this network")
        let other = try write("sd2.safetensors", [("lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight", [1, 8]),
                                                  ("lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight", [8, 1])])
        XCTAssertTrue(refusal(other).contains("changes 1 layer that SD1.5 does not have (lora_unet_down_blocks_9_attentions_0_proj_in)"),
                      refusal(other))
        let shape = try XCTUnwrap(base.shape(of: "unet.conv_in.weight"))
        let wrong = try write("wrong.safetensors", [("lora_unet_conv_in.lora_down.weight", [2, shape[1] + 1, 3, 3]),
                                                    ("lora_unet_conv_in.lora_up.weight", [shape[0], 2, 1, 1])])
        XCTAssertTrue(refusal(wrong).contains("does not fit 'lora_unet_conv_in'"), refusal(wrong))
        let half = try write("half.safetensors", [("lora_unet_conv_in.lora_down.weight", [2, shape[1], 3, 3])])
        XCTAssertTrue(refusal(half).contains("has no 'lora_unet_conv_in.lora_up.weight'"), refusal(half))
        // A file with no LoRA in it is named by its first tensor that is no part of one, without the
        // SD1.5 advice (there is no SD1.5 version of a VAE).
        let checkpointLike = try write("checkpoint-like.safetensors", [("unet.conv_in.weight", [1]), ("lora_unet_conv_in.alpha", [])])
        XCTAssertEqual(refusal(checkpointLike), "\(checkpointLike.path) is not a LoRA: its first tensor, 'unet.conv_in.weight', is not a LoRA's; "
                       + "a LoRA holds '*.lora_down.weight' and '*.lora_up.weight' (or PEFT's '*.lora_A.weight' and '*.lora_B.weight') "
                       + "for each layer it changes")
        XCTAssertTrue(refusal(Fixture.url("taesd/taesd_decoder.safetensors")).contains("is not a LoRA: its first tensor, '1.bias', is not a LoRA's"),
                      refusal(Fixture.url("taesd/taesd_decoder.safetensors")))
        let alphas = try write("alphas.safetensors", [("lora_unet_conv_in.alpha", [])])
        XCTAssertTrue(refusal(alphas).contains("is not a LoRA: it has 'lora_unet_conv_in.alpha' but no '*.lora_down.weight'"), refusal(alphas))
        let empty = try write("empty.safetensors", [])
        XCTAssertTrue(refusal(empty).contains("is not a LoRA: it holds no tensors;"), refusal(empty))
        for file in [checkpointLike, alphas, empty, Fixture.url("taesd/taesd_decoder.safetensors")] {
            XCTAssertFalse(refusal(file).contains("SD1.5"), refusal(file))
        }
    }

    /// A LoRA whose parts are stored as F8 or integers is refused when `gen` opens it, naming the part
    /// and its type, from safetensors or a pickle. An F8 part used to pass until a weight it changes
    /// was read inside the UNet, where the failure stopped the process; integer parts were applied
    /// as numbers and reported as NaN weights. The session goes on: the next plain `gen` draws.
    func testLoRAPartsStoredAsF8OrIntegersAreRefusedWhenOpened() throws {
        let pipe = try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .low))
        let source = try SafetensorsFile(url: Fixture.url("lora/tiny-lora.safetensors"))
        let lora = folder.appendingPathComponent("Lora")
        try FileManager.default.createDirectory(at: lora, withIntermediateDirectories: true)
        pipe.loraDirectories = [lora]
        let request = GenerationRequest(prompt: "a red fox", seed: 3, steps: 2, width: 64, height: 64, sampler: .euler)
        let plain = try pipe.generate(request)[0].image
        for (name, dtype) in [("f8", SafetensorsDType.f8e4m3), ("f8-pickled", .f8e4m3), ("i8", .i8), ("flags", .bool)] {
            let retyped = try writeRetyped(source, to: lora.appendingPathComponent(name + ".safetensors")) {
                $0.name.hasSuffix(".weight") ? dtype : nil
            }
            if name.hasSuffix("pickled") {
                try writeTorchTwin(of: try SafetensorsFile(url: retyped), to: lora.appendingPathComponent(name + ".pt"), wrapper: nil)
                try FileManager.default.removeItem(at: retyped)
            }
            var tagged = request
            tagged.prompt = "a red fox <lora:\(name):1>"
            XCTAssertThrowsError(try pipe.generate(tagged), name) { error in
                guard case let .notFloat(tensor, stored, path)? = error as? WeightsError else { return XCTFail("\(name): \(error)") }
                XCTAssertTrue(tensor.hasPrefix("lora_") && tensor.hasSuffix(".weight"), tensor)
                XCTAssertEqual(stored, dtype.rawValue)
                XCTAssertEqual(URL(fileURLWithPath: path).lastPathComponent, name + (name.hasSuffix("pickled") ? ".pt" : ".safetensors"))
            }
        }
        XCTAssertEqual(try pipe.generate(request)[0].image, plain, "after the refusals the models are the plain ones")
    }

    /// Found by stem, safetensors before pickles; a pickle outside PyTorch's zip format is refused when read.
    func testFilesAreFoundByNameInSubFoldersPicklesToo() throws {
        let styles = folder.appendingPathComponent("Lora/styles")
        try FileManager.default.createDirectory(at: styles, withIntermediateDirectories: true)
        try write("Lora/styles/ink.safetensors", [("x", [1])])
        FileManager.default.createFile(atPath: folder.appendingPathComponent("Lora/old.pt").path, contents: Data([0x80, 2]))
        let lora = folder.appendingPathComponent("Lora")
        XCTAssertEqual(try LoRALibrary.locate("ink", in: [lora]).lastPathComponent, "ink.safetensors")
        XCTAssertEqual(try LoRALibrary.locate("styles/ink", in: [lora]).lastPathComponent, "ink.safetensors")
        let old = try LoRALibrary.locate("old", in: [lora])
        XCTAssertEqual(old.lastPathComponent, "old.pt")
        XCTAssertThrowsError(try LoRAFile(url: old)) {
            XCTAssertTrue("\($0)".contains("is a pickle outside PyTorch's zip format (it starts with a pickle protocol 2 header)"), "\($0)")
        }
        XCTAssertThrowsError(try LoRALibrary.locate("nope", in: [lora, folder.appendingPathComponent("missing")])) {
            XCTAssertEqual("\($0)", "no LoRA named 'nope': looked for nope.safetensors in \(lora.path), \(folder.path)/missing (and .pt, .ckpt, .pth, .bin there); put the file there or 'set lora-dir DIR'")
        }
        XCTAssertEqual(LoRALibrary.names(in: [lora]), ["ink", "old"])
    }

    /// In the pipeline: a LoRA whose up weights are all zero changes nothing, bit for bit; a tag that
    /// names no file, or a tag in the negative prompt, is refused before any step runs.
    func testThePipelineAppliesTagsAndRefusesBadOnesUpFront() throws {
        let pipe = try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .low))
        let base = pipe.checkpoint
        let shape = try XCTUnwrap(base.shape(of: "unet.conv_in.weight"))
        try write("Lora/zero.safetensors", [("lora_unet_conv_in.lora_down.weight", [2, shape[1], 3, 3]),
                                            ("lora_unet_conv_in.lora_up.weight", [shape[0], 2, 1, 1])],
                  value: { name, i in name.contains("up") ? 0 : Float(i) })
        pipe.loraDirectories = [folder.appendingPathComponent("Lora")]
        let request = GenerationRequest(prompt: "a red fox", seed: 3, steps: 2, width: 64, height: 64, sampler: .euler)
        let plain = try pipe.generate(request)[0].image
        var tagged = request
        tagged.prompt = "a red fox <lora:zero:1>"
        XCTAssertEqual(try pipe.generate(tagged)[0].image, plain)
        try write("Lora/some.safetensors", [("lora_unet_conv_in.lora_down.weight", [2, shape[1], 3, 3]),
                                            ("lora_unet_conv_in.lora_up.weight", [shape[0], 2, 1, 1])])
        tagged.prompt = "a red fox <lora:some:1>"
        XCTAssertNotEqual(try pipe.generate(tagged)[0].image, plain)
        var steps = 0
        tagged.prompt = "a red fox <lora:absent:1>"
        XCTAssertThrowsError(try pipe.generate(tagged, progress: { _ in steps += 1 })) {
            XCTAssertTrue("\($0)".hasPrefix("no LoRA named 'absent'"), "\($0)")
        }
        var negative = request
        negative.negativePrompt = "blurry <lora:zero:1>"
        XCTAssertThrowsError(try pipe.generate(negative, progress: { _ in steps += 1 })) {
            XCTAssertEqual($0 as? LoRAError, .inNegativePrompt(tag: "<lora:zero:1>"))
        }
        XCTAssertEqual(steps, 0)
        XCTAssertEqual(try pipe.generate(request)[0].image, plain, "after the refusals the models are the plain ones")
    }
}
