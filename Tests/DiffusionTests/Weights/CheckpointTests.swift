import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

final class CheckpointTests: XCTestCase {
    /// Every SD1.5 tensor, converted to its LDM name the way diffusers' converter does, maps back to
    /// its diffusers name through `KeyMap` (the VAE attention weights flattened from 1×1 convs).
    func testKeyTableInvertsTheDiffusersConverterForEverySD15Tensor() {
        let map = KeyMap()
        var ldmNames = Set<String>()
        for component in CheckpointComponent.allCases {
            for name in SD15Names.names(component) {
                let ldm: String, flattened: Bool
                switch component {
                case .unet: (ldm, flattened) = (DiffusersToLDM.unet(name), false)
                case .vae: (ldm, flattened) = DiffusersToLDM.vae(name)
                case .textEncoder: (ldm, flattened) = (DiffusersToLDM.textEncoder(name), false)
                }
                XCTAssertTrue(ldmNames.insert(ldm).inserted, "two diffusers names give \(ldm)")
                XCTAssertEqual(map.mapLDM(ldm), .tensor(key: component.prefix + name, reshape: flattened), ldm)
            }
        }
        // SD1.5 has 686 UNet, 248 VAE and 196 text-encoder tensors (v1-5-pruned-emaonly minus position_ids).
        XCTAssertEqual(SD15Names.unet.count, 686)
        XCTAssertEqual(SD15Names.vae.count, 248)
        XCTAssertEqual(SD15Names.textEncoder.count, 196)
        // Spot checks against the converter's comments: the irregular places of the numbering.
        XCTAssertEqual(map.mapLDM("model.diffusion_model.output_blocks.2.1.conv.weight"), .tensor(key: "unet.up_blocks.0.upsamplers.0.conv.weight", reshape: false))
        XCTAssertEqual(map.mapLDM("model.diffusion_model.output_blocks.5.2.conv.bias"), .tensor(key: "unet.up_blocks.1.upsamplers.0.conv.bias", reshape: false))
        XCTAssertEqual(map.mapLDM("model.diffusion_model.input_blocks.9.0.op.weight"), .tensor(key: "unet.down_blocks.2.downsamplers.0.conv.weight", reshape: false))
        XCTAssertEqual(map.mapLDM("first_stage_model.decoder.up.0.block.2.nin_shortcut.weight"), .tensor(key: "vae.decoder.up_blocks.3.resnets.2.conv_shortcut.weight", reshape: false))
        XCTAssertEqual(map.mapLDM("first_stage_model.decoder.mid.attn_1.proj_out.weight"), .tensor(key: "vae.decoder.mid_block.attentions.0.to_out.0.weight", reshape: true))
        XCTAssertEqual(map.mapLDM("first_stage_model.decoder.mid.attn_1.proj_out.bias"), .tensor(key: "vae.decoder.mid_block.attentions.0.to_out.0.bias", reshape: false))
    }

    func testIgnoredAndUnknownKeys() {
        let map = KeyMap()
        for key in ["model_ema.decay", "model_ema.diffusion_modelinput_blocks00weight", "alphas_cumprod", "betas",
                    "cond_stage_model.transformer.text_model.embeddings.position_ids", "first_stage_model.loss.logvar"] {
            XCTAssertEqual(map.mapLDM(key), .ignored, key)
        }
        for key in ["model.diffusion_model.input_blocks.3.1.norm.weight", "model.diffusion_model.output_blocks.1.3.weight",
                    "first_stage_model.decoder.up.7.block.0.conv1.weight", "lora_unet_down.weight", "control_model.zero_convs.0.0.weight"] {
            XCTAssertEqual(map.mapLDM(key), .unknown, key)
        }
        XCTAssertEqual(map.mapDiffusers("encoder.mid_block.attentions.0.query.weight", component: .vae),
                       .tensor(key: "vae.encoder.mid_block.attentions.0.to_q.weight", reshape: false))
        XCTAssertEqual(map.mapDiffusers("decoder.mid_block.attentions.0.proj_attn.bias", component: .vae),
                       .tensor(key: "vae.decoder.mid_block.attentions.0.to_out.0.bias", reshape: false))
    }

    /// The single file (fp16, LDM names, EMA keys and buffers) and the diffusers folder (fp32) of the
    /// same model give the same keys, shapes and Float32 values.
    func testSingleFileAndDiffusersFolderGiveTheSameTensors() throws {
        let dir = try makeWeightsTestDirectory(self)
        let model = TinySD15()
        let single = try model.writeSingleFile(dir.appendingPathComponent("tiny.safetensors"), dtype: .f16, extra: [
            ("model_ema.decay", .f32, [], [0.9999]),
            ("model_ema.num_updates", .i32, [], [0]),
            ("alphas_cumprod", .f32, [3], [1, 0.5, 0.25]),
            ("cond_stage_model.transformer.text_model.embeddings.position_ids", .i64, [1, 2], [0, 1]),
        ])
        let folder = try model.writeDiffusersFolder(dir.appendingPathComponent("tiny-diffusers"), dtype: .f32)

        let a = try Checkpoint(url: single, options: LoadOptions(memoryMode: .low))
        let b = try Checkpoint(url: folder, options: LoadOptions(memoryMode: .low))
        XCTAssertEqual(a.layout, .singleFile)
        XCTAssertEqual(b.layout, .diffusersFolder)
        XCTAssertEqual(a.keys, b.keys)
        XCTAssertEqual(a.keys.count, 686 + 248 + 196)
        for key in a.keys {
            XCTAssertEqual(a.shape(of: key), b.shape(of: key), key)
            var x = [Float](repeating: 0, count: a.shape(of: key)!.reduce(1, *)), y = x
            try x.withUnsafeMutableBufferPointer { try a.read(key, into: $0) }
            try y.withUnsafeMutableBufferPointer { try b.read(key, into: $0) }
            XCTAssertEqual(x, y, key)
        }
        // The values are the model's, not just equal to each other.
        let expected = try XCTUnwrap(model.vae.first { $0.name == "decoder.mid_block.attentions.0.to_q.weight" })
        let q = try a.weights(for: .vae).parameter("decoder.mid_block.attentions.0.to_q.weight", shape: [2, 2])
        XCTAssertEqual(q.value.data, expected.values)
        XCTAssertEqual(a.storedLocation(of: "vae.decoder.mid_block.attentions.0.to_q.weight")?.key, "first_stage_model.decoder.mid.attn_1.q.weight")

        XCTAssertEqual(Set(a.ignoredKeys), ["model_ema.decay", "model_ema.num_updates", "alphas_cumprod",
                                           "cond_stage_model.transformer.text_model.embeddings.position_ids"])
        XCTAssertEqual(a.fileURLs, [single])
        XCTAssertEqual(b.fileURLs.map(\.lastPathComponent), ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors", "model.safetensors"])
        XCTAssertNil(a.configData(for: .unet))
        XCTAssertEqual(b.configData(for: .vae).map { String(decoding: $0, as: UTF8.self) }, "{\"component\": \"vae\"}")
    }

    /// bf16 single files read like fp16 ones (the values are exact in both).
    func testBFloat16SingleFile() throws {
        let dir = try makeWeightsTestDirectory(self)
        let model = TinySD15(seed: 3)
        let a = try Checkpoint(url: model.writeSingleFile(dir.appendingPathComponent("bf16.safetensors"), dtype: .bf16))
        let b = try Checkpoint(url: model.writeSingleFile(dir.appendingPathComponent("f32.safetensors"), dtype: .f32))
        for key in a.keys.prefix(200) {
            XCTAssertEqual(try a.weights(for: .unet).source.readTensor(key), try b.weights(for: .unet).source.readTensor(key), key)
        }
    }

    /// `text_model.` may be missing from text-encoder keys (transformers 5 saves so); both spellings
    /// give `text_encoder.text_model.*`, in both layouts. Having both at once is refused.
    func testTextModelPrefixBothWays() throws {
        let dir = try makeWeightsTestDirectory(self)
        let model = TinySD15()
        let with = try Checkpoint(url: model.writeDiffusersFolder(dir.appendingPathComponent("with")))
        let without = try Checkpoint(url: model.writeDiffusersFolder(dir.appendingPathComponent("without"), textModelLevel: false))
        let singleWithout = try Checkpoint(url: model.writeSingleFile(dir.appendingPathComponent("s.safetensors"), textModelLevel: false))
        let textKeys = with.keys.filter { $0.hasPrefix("text_encoder.") }
        XCTAssertEqual(textKeys.count, 196)
        XCTAssertTrue(textKeys.allSatisfy { $0.hasPrefix("text_encoder.text_model.") })
        XCTAssertEqual(without.keys, with.keys)
        XCTAssertEqual(singleWithout.keys, with.keys)
        XCTAssertEqual(without.storedLocation(of: "text_encoder.text_model.final_layer_norm.weight")?.key, "final_layer_norm.weight")
        let token = "text_encoder.text_model.embeddings.token_embedding.weight"
        XCTAssertEqual(try without.readTensor(token), try with.readTensor(token))
        XCTAssertEqual(try singleWithout.readTensor(token), try with.readTensor(token))

        let both = try model.writeSingleFile(dir.appendingPathComponent("both.safetensors"), extra: [
            ("cond_stage_model.transformer.final_layer_norm.bias", .f16, [2], [0, 0]),
        ])
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: both) },
                       .conflictingKeys(path: both.path, first: "cond_stage_model.transformer.text_model.final_layer_norm.bias",
                                        second: "cond_stage_model.transformer.final_layer_norm.bias",
                                        mappedTo: "text_encoder.text_model.final_layer_norm.bias"))
    }

    /// Plain files are preferred; `variant: "fp16"` picks the `.fp16.` files; a component with only the
    /// variant uses it either way.
    func testDiffusersVariantChoice() throws {
        let dir = try makeWeightsTestDirectory(self)
        let folder = dir.appendingPathComponent("sd")
        try TinySD15(seed: 1).writeDiffusersFolder(folder, dtype: .f32)
        try TinySD15(seed: 2).writeDiffusersFolder(folder, dtype: .f16, variant: "fp16")
        try FileManager.default.removeItem(at: folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"))

        let plain = try Checkpoint(url: folder)
        XCTAssertEqual(plain.fileURL(for: .unet).lastPathComponent, "diffusion_pytorch_model.safetensors")
        XCTAssertEqual(plain.fileURL(for: .vae).lastPathComponent, "diffusion_pytorch_model.fp16.safetensors")
        XCTAssertEqual(plain.fileURL(for: .textEncoder).lastPathComponent, "model.safetensors")
        let fp16 = try Checkpoint(url: folder, options: LoadOptions(variant: "fp16"))
        XCTAssertEqual(fp16.fileURL(for: .unet).lastPathComponent, "diffusion_pytorch_model.fp16.safetensors")
        XCTAssertEqual(fp16.fileURL(for: .textEncoder).lastPathComponent, "model.fp16.safetensors")
        XCTAssertEqual(try fp16.readTensor("unet.conv_in.bias"), TinySD15(seed: 2).unet.first { $0.name == "conv_in.bias" }!.values)
        XCTAssertEqual(try plain.readTensor("unet.conv_in.bias"), TinySD15(seed: 1).unet.first { $0.name == "conv_in.bias" }!.values)
    }

    /// A Hugging Face cache entry: blobs named by hash, a snapshot of symlinks, `refs/main`.
    func testHuggingFaceCacheLayout() throws {
        let dir = try makeWeightsTestDirectory(self)
        let fm = FileManager.default
        let entry = dir.appendingPathComponent("models--tiny--sd15")
        let staging = try TinySD15().writeDiffusersFolder(dir.appendingPathComponent("staging"))
        let commit = "0123456789abcdef0123456789abcdef01234567"
        let snapshot = entry.appendingPathComponent("snapshots/\(commit)")
        try fm.createDirectory(at: entry.appendingPathComponent("blobs"), withIntermediateDirectories: true)
        try fm.createDirectory(at: entry.appendingPathComponent("refs"), withIntermediateDirectories: true)
        let files = ["model_index.json", "unet/diffusion_pytorch_model.safetensors", "unet/config.json",
                     "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"]
        for (i, file) in files.enumerated() {
            let blob = entry.appendingPathComponent("blobs/blob\(i)")
            try fm.moveItem(at: staging.appendingPathComponent(file), to: blob)
            let link = snapshot.appendingPathComponent(file)
            try fm.createDirectory(at: link.deletingLastPathComponent(), withIntermediateDirectories: true)
            let depth = file.split(separator: "/").count + 1
            try fm.createSymbolicLink(atPath: link.path, withDestinationPath: String(repeating: "../", count: depth) + "blobs/blob\(i)")
        }
        try Data((commit + "\n").utf8).write(to: entry.appendingPathComponent("refs/main"))

        let checkpoint = try Checkpoint(url: entry)
        XCTAssertTrue(checkpoint.viaHuggingFaceCache)
        XCTAssertEqual(checkpoint.location.path, snapshot.path)
        XCTAssertEqual(checkpoint.layout, .diffusersFolder)
        XCTAssertEqual(checkpoint.keys.count, 686 + 248 + 196)
        XCTAssertNotNil(checkpoint.configData(for: .unet))
        XCTAssertEqual(try checkpoint.readTensor("unet.conv_in.bias"), TinySD15().unet.first { $0.name == "conv_in.bias" }!.values)

        // refs/main naming a snapshot that is not there
        try Data("feedface".utf8).write(to: entry.appendingPathComponent("refs/main"))
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: entry) },
                       .unresolvedSnapshot(path: entry.path, reason: "refs/main names 'feedface', which is not in snapshots/"))
        // no refs/main: the only snapshot is used
        try fm.removeItem(at: entry.appendingPathComponent("refs/main"))
        XCTAssertEqual(try Checkpoint(url: entry).location.path, snapshot.path)
    }

    /// A single-file checkpoint inside a cache snapshot, and a folder holding one `.safetensors`.
    func testSingleFileInSnapshotOrFolder() throws {
        let dir = try makeWeightsTestDirectory(self)
        let entry = dir.appendingPathComponent("models--someone--finetune")
        let snapshot = entry.appendingPathComponent("snapshots/abc")
        try FileManager.default.createDirectory(at: snapshot, withIntermediateDirectories: true)
        try TinySD15().writeSingleFile(snapshot.appendingPathComponent("finetune.safetensors"))
        let checkpoint = try Checkpoint(url: entry)
        XCTAssertEqual(checkpoint.layout, .singleFile)
        XCTAssertEqual(checkpoint.fileURL(for: .vae).lastPathComponent, "finetune.safetensors")
        XCTAssertEqual(try Checkpoint(url: snapshot).layout, .singleFile)
    }

    func testUnexpectedKeysAreListedNotPrinted() throws {
        let dir = try makeWeightsTestDirectory(self)
        let url = try TinySD15().writeSingleFile(dir.appendingPathComponent("x.safetensors"), extra: [
            ("control_model.zero_convs.0.0.weight", .f16, [2], [1, 2]),
        ])
        let checkpoint = try Checkpoint(url: url)
        let unet = checkpoint.weights(for: .unet)
        _ = try unet.parameter("conv_in.weight", shape: [2, 4, 3, 3])
        let unexpected = checkpoint.unexpectedKeys(ignoring: ["vae.", "text_encoder."])
        XCTAssertEqual(unexpected.count, 686 - 1 + 1)
        XCTAssertFalse(unexpected.contains("unet.conv_in.weight"))
        XCTAssertTrue(unexpected.contains("unet.conv_in.bias"))
        XCTAssertEqual(unexpected.last, "control_model.zero_convs.0.0.weight")
        XCTAssertEqual(checkpoint.unexpectedKeys(used: Set(checkpoint.keys)), ["control_model.zero_convs.0.0.weight"])
    }

    /// Strictness comes from `Weights.parameter`, naming the mapped key, both shapes and the file.
    func testMissingAndMisshapenTensorsThroughWeights() throws {
        let dir = try makeWeightsTestDirectory(self)
        let url = try TinySD15().writeSingleFile(dir.appendingPathComponent("x.safetensors"))
        let checkpoint = try Checkpoint(url: url)
        let text = checkpoint.weights(for: .textEncoder)
        XCTAssertEqual(weightsError { _ = try text.parameter("final_layer_norm.weight", shape: [768]) },
                       .shapeMismatch(key: "text_encoder.text_model.final_layer_norm.weight", expected: [768], actual: [2], source: url.path))
        XCTAssertEqual(weightsError { _ = try text.scoped("encoder.layers.12").parameter("mlp.fc1.weight", shape: [2]) },
                       .missingTensor(key: "text_encoder.text_model.encoder.layers.12.mlp.fc1.weight", source: url.path))
    }

    /// A weight stored as F8 or integers is refused when the model is built, naming the tensor under
    /// its stored name in its file; tensors that are not weights keep loading in whatever type they
    /// have (the fixture single file's I64 `position_ids` and I32 `model_ema.num_updates`, as real
    /// LDM checkpoints hold them).
    func testWeightsStoredAsF8OrIntegersAreRefusedWhenTheModelIsBuilt() throws {
        let dir = try makeWeightsTestDirectory(self)
        let single = try SafetensorsFile(url: Fixture.tinySD15SingleFile)
        XCTAssertEqual(single.info("cond_stage_model.transformer.text_model.embeddings.position_ids")?.dtype, .i64)
        XCTAssertEqual(single.info("model_ema.num_updates")?.dtype, .i32)
        let fixture = try Checkpoint(url: Fixture.tinySD15SingleFile, options: LoadOptions(memoryMode: .low))
        XCTAssertNoThrow(try TinySD15Fixture.textEncoder(fixture))
        XCTAssertNoThrow(try TinySD15Fixture.unet(fixture))
        XCTAssertNoThrow(try TinySD15Fixture.vae(fixture))

        let weight = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
        XCTAssertNotNil(single.info(weight))
        for dtype in [SafetensorsDType.f8e4m3, .i8] {
            let url = try writeRetyped(single, to: dir.appendingPathComponent("\(dtype.rawValue).safetensors")) { $0.name == weight ? dtype : nil }
            for mode in [MemoryMode.low, .fast] {
                let checkpoint = try Checkpoint(url: url, options: LoadOptions(memoryMode: mode))
                XCTAssertThrowsError(try TinySD15Fixture.unet(checkpoint)) { error in
                    XCTAssertEqual(error as? WeightsError, .notFloat(tensor: weight, dtype: dtype.rawValue, path: url.path), "\(mode)")
                }
            }
        }
    }

    private func weightsError(_ body: () throws -> Void) -> WeightsError? {
        do {
            try body()
            return nil
        } catch {
            return error as? WeightsError
        }
    }

    /// `Parameter.withValue` gives the same values as `value` in both modes; only `.fast` keeps them.
    func testParameterValuesInBothModes() throws {
        let dir = try makeWeightsTestDirectory(self)
        let model = TinySD15(seed: 5)
        let url = try model.writeSingleFile(dir.appendingPathComponent("x.safetensors"), dtype: .f16)
        let expected = try XCTUnwrap(model.unet.first { $0.name == "conv_in.weight" }).values
        for mode in [MemoryMode.low, .fast] {
            let checkpoint = try Checkpoint(url: url, options: LoadOptions(memoryMode: mode))
            let p = try checkpoint.weights(for: .unet).parameter("conv_in.weight", shape: [2, 4, 3, 3])
            XCTAssertEqual(p.withValue { Array($0) }, expected, "\(mode)")
            XCTAssertEqual(p.value.data, expected, "\(mode)")
            XCTAssertEqual(p.value.shape, [2, 4, 3, 3])
        }
    }

    func testMemoryModeResolution() throws {
        let gib = 1 << 30
        XCTAssertEqual(MemoryMode.auto.resolve(fastModeBytes: 4 * gib, availableBytes: 16 * gib), .fast)
        XCTAssertEqual(MemoryMode.auto.resolve(fastModeBytes: 4 * gib, availableBytes: 6 * gib), .low)
        XCTAssertEqual(MemoryMode.low.resolve(fastModeBytes: 1, availableBytes: 64 * gib), .low)
        XCTAssertEqual(MemoryMode.fast.resolve(fastModeBytes: 64 * gib, availableBytes: 1), .fast)
        let meminfo = "MemTotal:       24000000 kB\nMemFree:        20000000 kB\nMemAvailable:   22000000 kB\n"
        XCTAssertEqual(MemoryMode.availableMemoryBytes(meminfo: meminfo), 22_000_000 * 1024)
        XCTAssertNil(MemoryMode.availableMemoryBytes(meminfo: "MemTotal: 1 kB\n"))
        XCTAssertNotNil(MemoryMode.availableMemoryBytes(), "Linux has /proc/meminfo")

        let dir = try makeWeightsTestDirectory(self)
        let url = try TinySD15().writeSingleFile(dir.appendingPathComponent("x.safetensors"))
        let fast = try Checkpoint(url: url, options: LoadOptions(memoryMode: .fast))
        XCTAssertEqual(fast.memoryMode, .fast)
        XCTAssertTrue(fast.weights(for: .unet).keepConverted)
        let low = try Checkpoint(url: url, options: LoadOptions(memoryMode: .low))
        XCTAssertFalse(low.weights(for: .vae).keepConverted)
        // The tiny model fits in any machine that runs the tests.
        XCTAssertEqual(try Checkpoint(url: url).memoryMode, .fast)
        XCTAssertEqual(fast.float32ByteCount, fast.keys.reduce(0) { $0 + 4 * fast.shape(of: $1)!.reduce(1, *) })
        // Fast mode keeps only the UNet, in two bytes an element from an fp16 file and four from fp32.
        let unetElements = fast.keys.filter { $0.hasPrefix("unet.") }.reduce(0) { $0 + fast.shape(of: $1)!.reduce(1, *) }
        XCTAssertGreaterThan(unetElements, 0)
        XCTAssertEqual(fast.fastModeByteCount, 2 * unetElements)
        let fp32 = try Checkpoint(url: TinySD15().writeSingleFile(dir.appendingPathComponent("x32.safetensors"), dtype: .f32))
        XCTAssertEqual(fp32.fastModeByteCount, 4 * unetElements)
        // SD1.5 from an fp16 file (1.6 GiB kept) is fast with 5 GiB free, where its 4 GiB of Float32 was not.
        XCTAssertEqual(MemoryMode.auto.resolve(fastModeBytes: 1_720_000_000, availableBytes: 5 * gib), .fast)
    }
}

extension TensorSource {
    /// The whole tensor `key` as Float32 values (test convenience).
    func readTensor(_ key: String) throws -> [Float] {
        var out = [Float](repeating: 0, count: shape(of: key)?.reduce(1, *) ?? 0)
        try out.withUnsafeMutableBufferPointer { try read(key, into: $0) }
        return out
    }
}
