import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// Every input the loader refuses, through the public `Checkpoint` API, with the exact error.
final class CheckpointRefusalTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = try makeWeightsTestDirectory(self)
    }

    private func url(_ name: String) -> URL { dir.appendingPathComponent(name) }

    // MARK: Pickles

    /// A protocol-2 pickle that runs `os.system("touch <marker>")` when unpickled, built opcode by
    /// opcode (`pickletools.dis` shows PROTO 2, GLOBAL 'os system', BINUNICODE, TUPLE1, REDUCE,
    /// STOP; `pickle.loads` of these bytes does create the marker — checked once by hand, never here).
    private func evilPickle(marker: URL) -> [UInt8] {
        let command = Array("touch \(marker.path)".utf8)
        var bytes: [UInt8] = [0x80, 0x02] + Array("cos\nsystem\n".utf8) + [UInt8(ascii: "X")]
        withUnsafeBytes(of: UInt32(command.count).littleEndian) { bytes.append(contentsOf: $0) }
        return bytes + command + [0x85, UInt8(ascii: "R"), UInt8(ascii: ".")]
    }

    func testPickleIsRefusedAndNeverRun() throws {
        let marker = url("pwned")
        let pickle = evilPickle(marker: marker)
        for name in ["model.ckpt", "model.safetensors", "model"] {
            let file = try writeTestFile(pickle, name, in: dir)
            let error = checkpointError { _ = try Checkpoint(url: file) }
            XCTAssertEqual(error, .pickleFile(path: file.path, evidence: "it starts with a pickle protocol 2 header"), name)
            XCTAssertTrue(error?.description.contains("safetensors.torch") ?? false)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker.path), "the pickle was executed")
    }

    /// A safetensors file whose 640-byte header length starts with the bytes 0x80 0x02, like a
    /// pickle, is still read as safetensors (the '{' after the length decides), also through a symlink.
    func testSafetensorsThatStartsLikeAPickle() throws {
        let model = TinySD15()
        let real = try model.writeSingleFile(url("real.safetensors"))
        let file = try SafetensorsFile(url: real)
        // Pad the header with spaces (the format allows it) to a length whose low bytes are 0x80 0x02.
        let original = try Data(contentsOf: real)
        let headerLength = file.dataStart - 8
        var header = Array(original[8..<file.dataStart])
        let target = ((headerLength >> 16) << 16) + 0x10280  // low bytes 0x80 0x02, above the real length
        header += [UInt8](repeating: 0x20, count: target - headerLength)
        let bytes = safetensorsBytes(header: header, data: Array(original[file.dataStart...]))
        XCTAssertEqual(Array(bytes[0..<2]), [0x80, 0x02])
        let disguised = try writeTestFile(bytes, "disguised.safetensors", in: dir)
        let link = url("link.safetensors")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: disguised.path)
        XCTAssertEqual(try Checkpoint(url: disguised).keys.count, 686 + 248 + 196)
        XCTAssertEqual(try Checkpoint(url: link).keys.count, 686 + 248 + 196)
    }

    func testPickleByNameOrZipMagic() throws {
        let zip = try writeTestFile([0x50, 0x4B, 0x03, 0x04] + [UInt8](repeating: 0, count: 60), "model.pt", in: dir)
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: zip) }, .unreadablePickle(path: zip.path, underlying: .damagedZip(
            path: zip.path, reason: "it has no end-of-central-directory record (truncated, or not a zip archive)")))
        // A protocol-0 pickle has no magic bytes; its name gives it away.
        let old = try writeTestFile(Array("cos\nsystem\n(S'true'\ntR.".utf8), "model.bin", in: dir)
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: old) }, .pickleFile(path: old.path, evidence: "its name ends in .bin"))
    }

    func testDiffusersFolderWithABarePickleForWeights() throws {
        let folder = try TinySD15().writeDiffusersFolder(url("sd"), components: [.vae, .textEncoder])
        let bin = folder.appendingPathComponent("unet/diffusion_pytorch_model.bin")
        try FileManager.default.createDirectory(at: bin.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(evilPickle(marker: url("pwned"))).write(to: bin)
        // A diffusers folder's .bin is read when it is torch.save's zip; a bare pickle is refused unparsed.
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: folder) }, .pickleFile(path: bin.path, evidence: "it starts with a pickle protocol 2 header"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: url("pwned").path))
    }

    func testGGUF() throws {
        let file = try writeTestFile(Array("GGUF".utf8) + [3, 0, 0, 0, 0, 0, 0, 0], "model.gguf", in: dir)
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: file) }, .ggufFile(path: file.path))
    }

    // MARK: Other models

    func testSD2SingleFileByOpenCLIPKeys() throws {
        let file = try TinySD15().writeSingleFile(url("sd2.safetensors"), components: [.unet, .vae], extra: [
            ("cond_stage_model.model.token_embedding.weight", .f16, [2], [0, 0]),
        ])
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: file) },
                       .unsupportedModel(path: file.path, kind: "an SD 2.x checkpoint",
                                         evidence: "its text encoder is OpenCLIP ('cond_stage_model.model.token_embedding.weight')"))
    }

    func testSD2DiffusersFolderByContextWidth() throws {
        let folder = try TinySD15(crossAttentionWidth: 1024).writeDiffusersFolder(url("sd2"))
        let error = checkpointError { _ = try Checkpoint(url: folder) }
        guard case let .unsupportedModel(path, kind, evidence) = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(path, folder.path)
        XCTAssertEqual(kind, "an SD 2.x checkpoint")
        XCTAssertTrue(evidence.hasPrefix("its cross-attention takes 1024-wide text embeddings"), evidence)
        // ... and by the OpenCLIP text encoder's width
        let folder2 = try TinySD15(textWidth: 1024).writeDiffusersFolder(url("sd2b"))
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: folder2) },
                       .unsupportedModel(path: folder2.path, kind: "an SD 2.x checkpoint",
                                         evidence: "its text encoder is 1024 wide (OpenCLIP), SD1.x's CLIP ViT-L/14 is 768"))
    }

    func testSDXL() throws {
        let file = try TinySD15().writeSingleFile(url("xl.safetensors"), components: [.unet, .vae], extra: [
            ("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight", .f16, [2], [0, 0]),
        ])
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: file) },
                       .unsupportedModel(path: file.path, kind: "an SDXL checkpoint",
                                         evidence: "it has 'conditioner.embedders.0.transformer.text_model.final_layer_norm.weight'"))
        let folder = try TinySD15().writeDiffusersFolder(url("xl"), modelIndex: #"{"_class_name": "StableDiffusionXLPipeline", "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}"#)
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: folder) },
                       .unsupportedModel(path: folder.path, kind: "an SDXL pipeline", evidence: "model_index.json names StableDiffusionXLPipeline"))
    }

    func testInpaintingCheckpointsOpenAndOtherInputWidthsAreRefused() throws {
        // 9 input channels: an inpainting UNet (sd-v1-5-inpainting), opened in both layouts (the
        // pipeline on a real one is in InpaintingPipelineTests).
        let inpainting = TinySD15(unetInChannels: 9)
        for layout in ["single", "folder"] {
            let location = layout == "single" ? try inpainting.writeSingleFile(url("inpaint.safetensors")) : try inpainting.writeDiffusersFolder(url("inpaint"))
            XCTAssertEqual(try Checkpoint(url: location).shape(of: "unet.conv_in.weight")?[1], 9, layout)
        }
        let pix2pix = TinySD15(unetInChannels: 8)
        for layout in ["single", "folder"] {
            let location = layout == "single" ? try pix2pix.writeSingleFile(url("p2p.safetensors")) : try pix2pix.writeDiffusersFolder(url("p2p"))
            XCTAssertEqual(checkpointError { _ = try Checkpoint(url: location) },
                           .unsupportedModel(path: location.path, kind: "an InstructPix2Pix checkpoint",
                                             evidence: "its UNet's conv_in takes 8 channels, not 4 (text to image) or 9 (inpainting)"), layout)
        }
    }

    func testLoRAAndUnknownFiles() throws {
        let lora = try writeSafetensors(url("lora.safetensors"), [
            ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", .f16, [2], [0, 0]),
        ])
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: lora) },
                       .unsupportedModel(path: lora.path, kind: "a LoRA, not a full checkpoint",
                                         evidence: "it has 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight'"))
        let other = try writeSafetensors(url("other.safetensors"), [("weight", .f32, [1], [0]), ("bias", .f32, [1], [0])])
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: other) },
                       .unknownLayout(path: other.path, reason: "none of its keys ('weight', 'bias') is a key of an SD checkpoint"))
        let model = TinySD15()
        let folder = try model.writeDiffusersFolder(url("sd"))
        let unetFile = folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: unetFile) },
                       .unknownLayout(path: unetFile.path, reason: "it is a UNet alone (the unet/ part of a diffusers folder); give the folder that holds model_index.json"))
        let vaeFile = folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors")
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: vaeFile) },
                       .unknownLayout(path: vaeFile.path, reason: "it is a VAE alone, not a full checkpoint"))
        let empty = url("empty-folder")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: empty) },
                       .unknownLayout(path: empty.path, reason: "the folder has no model_index.json, no unet/ and no .safetensors file"))
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: url("nowhere")) }, .notFound(path: url("nowhere").path))
    }

    // MARK: Incomplete checkpoints

    func testDiffusersFolderWithAPartMissing() throws {
        let folder = try TinySD15().writeDiffusersFolder(url("sd"), components: [.unet, .textEncoder])
        let error = checkpointError { _ = try Checkpoint(url: folder) }
        XCTAssertEqual(error, .missingComponent(path: folder.path, component: "VAE",
                                                lookedFor: ["vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
                                                            "vae/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.fp16.bin"]))
        XCTAssertTrue(error?.description.contains("has no VAE weights") ?? false)
    }

    func testDiffusersFolderWithADamagedModelIndex() throws {
        let folder = try TinySD15().writeDiffusersFolder(url("damaged-index"), modelIndex: "{{{")
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: folder) },
                       .unknownLayout(path: folder.path, reason: "its model_index.json is not a JSON object (damaged, or an interrupted download?): fetch it again"))
    }

    func testDiffusersFolderWithAConfigMissing() throws {
        let folder = url("no-config")
        try FileManager.default.copyItem(at: Fixture.tinySD15Folder, to: folder)
        try FileManager.default.removeItem(at: folder.appendingPathComponent("unet/config.json"))
        // The tiny UNet read with SD1.5's sizes would fail on a shape: the missing file is named instead.
        let error = checkpointError { _ = try StableDiffusionPipeline(url: folder) }
        XCTAssertEqual(error?.description, "\(folder.path) has no unet/config.json (looked for \(folder.path)/unet/config.json); "
                       + "the download is incomplete — fetch the missing part or the whole model again")
    }

    func testSingleFileWithoutTextEncoder() throws {
        let file = try TinySD15().writeSingleFile(url("no-text.safetensors"), components: [.unet, .vae])
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: file) },
                       .missingComponent(path: file.path, component: "text encoder", lookedFor: ["cond_stage_model.transformer.*"]))
    }

    /// A real-layout checkpoint cut short, as by an interrupted download: inside the header, and
    /// inside the data.
    func testTruncatedCheckpoint() throws {
        let full = try Data(contentsOf: TinySD15().writeSingleFile(url("full.safetensors")))
        let headerLength = Int(full.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })

        let inHeader = try writeTestFile(Array(full.prefix(4096)), "cut-header.safetensors", in: dir)
        XCTAssertEqual(checkpointError { _ = try Checkpoint(url: inHeader) },
                       .unreadable(path: inHeader.path, underlying: .headerBeyondFile(path: inHeader.path, declared: UInt64(headerLength), available: 4088)))

        let inData = try writeTestFile(Array(full.prefix(full.count - 100)), "cut-data.safetensors", in: dir)
        let error = checkpointError { _ = try Checkpoint(url: inData) }
        guard case let .unreadable(_, underlying) = error, case let .offsetsOutOfRange(_, tensor, end, dataLength) = underlying else {
            return XCTFail("\(String(describing: error))")
        }
        XCTAssertEqual(dataLength, full.count - 8 - headerLength - 100)
        XCTAssertGreaterThan(Int(end), dataLength, "\(tensor) is cut")
        XCTAssertTrue(tensor.hasPrefix("cond_stage_model."), "the text encoder is written last; \(tensor) is among the cut")
        XCTAssertTrue(error!.description.contains("truncated"), error!.description)
    }
}
