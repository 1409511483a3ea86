import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// A VAE kept apart from the checkpoint decodes as the checkpoint's own: the tiny model's `vae/`
/// folder (diffusers), and its VAE in A1111's single-file layout (the single file's
/// `first_stage_model.*` without the prefix, as `vae-ft-mse-840000-ema-pruned.safetensors` is written).
final class VAEFileTests: XCTestCase {
    func testBothLayoutsDecodeAsTheCheckpointsVAE() throws {
        let pipe = try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast))
        var generator = TorchGenerator(seed: 8)
        let latents = generator.randn([1, 4, 8, 8])
        let expected = try pipe.vae.decode(latents, cancellation: nil)

        let folder = try makeWeightsTestDirectory(self)
        let single = try SafetensorsFile(url: Fixture.tinySD15SingleFile)
        let names = single.names.filter { $0.hasPrefix("first_stage_model.") && !$0.hasPrefix("first_stage_model.loss.") }
        let file = folder.appendingPathComponent("vae-tiny.safetensors")
        let writer = try SafetensorsWriter(url: file, tensors: try names.map { name in
            .init(name: String(name.dropFirst("first_stage_model.".count)), dtype: .f32, shape: try XCTUnwrap(single.shape(of: name)))
        })
        for name in names {
            let count = try XCTUnwrap(single.shape(of: name)).reduce(1, *)
            var values = [Float](repeating: 0, count: count)
            try values.withUnsafeMutableBufferPointer { try single.read(name, into: $0) }
            try values.withUnsafeBufferPointer { try writer.append($0) }
        }
        try writer.finish()

        // A whole diffusers model given as the VAE: its vae/ folder.
        for url in [Fixture.tinySD15Folder.appendingPathComponent("vae"), Fixture.tinySD15Folder, file] {
            let decoder = try loadLatentDecoder(url, vaeConfig: pipe.vae.config)
            XCTAssertEqual(decoder.decoderName, "VAE")
            let image = try decoder.decode(latents, cancellation: nil)
            // The single file is fp16 (its VAE converts exactly to fp32), the folder fp32: the same decoder.
            assertClose(image, expected, tolerance: url == file ? 2e-2 : 0, url.lastPathComponent)
        }
    }

    func testAFileThatIsNeitherSaysSo() throws {
        let reference = Fixture.url("taesd/reference.safetensors")
        XCTAssertThrowsError(try loadLatentDecoder(reference)) { error in
            guard case .notAVAE(_, let reason)? = error as? VAEFileError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.hasSuffix("nor a TAESD decoder"), reason)
        }
        XCTAssertThrowsError(try loadLatentDecoder(Fixture.tinySD15SingleFile)) { error in
            XCTAssertEqual("\(error)", "\(Fixture.tinySD15SingleFile.path) is a whole checkpoint (first_stage_model.* is its VAE), not a VAE; "
                           + "give it with 'model' instead")
        }
        // A folder without a VAE's weights says so, rather than that a file it never named is missing.
        let empty = try makeWeightsTestDirectory(self)
        XCTAssertThrowsError(try loadLatentDecoder(empty)) { error in
            XCTAssertEqual("\(error)", "\(empty.path) is not a VAE: the folder has no diffusion_pytorch_model.safetensors, "
                           + "which a diffusers VAE folder holds beside its config.json; nor a TAESD decoder")
        }
    }

    /// What the tensors say comes before the name: a LoRA is called a LoRA even when its name says
    /// `sdxl` (which used to make it "an SDXL VAE"); the name tells SDXL's VAE from SD1.x's only once
    /// the tensors are a VAE's, whose shapes the two share.
    func testTheTensorsAreLookedAtBeforeTheName() throws {
        let dir = try makeWeightsTestDirectory(self)
        let sdxlLoRA = try writeSafetensors(dir.appendingPathComponent("sdxl-kohya.safetensors"), [
            (name: "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", dtype: .f32, shape: [1, 8], values: [Float](repeating: 0, count: 8)),
            (name: "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", dtype: .f32, shape: [8, 1], values: [Float](repeating: 0, count: 8)),
        ])
        XCTAssertThrowsError(try loadLatentDecoder(sdxlLoRA)) { error in
            XCTAssertEqual("\(error)", "\(sdxlLoRA.path) is an SDXL LoRA (it has 'lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight', "
                           + "a second text encoder), not a VAE; LoRAs go in the prompt, as <lora:NAME:1>")
        }
        let lora = Fixture.url("lora/tiny-lora.safetensors")
        XCTAssertThrowsError(try loadLatentDecoder(lora)) { error in
            guard case let .otherFile(_, kind, evidence, _)? = error as? VAEFileError else { return XCTFail("\(error)") }
            XCTAssertEqual(kind, "a LoRA")
            XCTAssertTrue(evidence.hasPrefix("it has 'lora_"), evidence)
        }
        // SD1.x's VAE under SDXL's name: only the name tells, and it is believed.
        let namedSDXL = dir.appendingPathComponent("sdxl_vae.safetensors")
        try FileManager.default.copyItem(at: Fixture.tinySD15Folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"), to: namedSDXL)
        XCTAssertThrowsError(try loadLatentDecoder(namedSDXL, vaeConfig: try TinySD15Fixture.config(VAEConfig.self, .vae))) { error in
            XCTAssertEqual(error as? VAEFileError, .otherModel(path: namedSDXL.path, kind: "an SDXL VAE", evidence: "its name has 'sdxl'"))
        }
    }

    /// TAESD's encoder, in madebyollin's layout (`taesd_encoder.safetensors`: conv(3, C) at index 0, a
    /// block at 1) or diffusers' (`encoder.layers.*` alone), is called TAESD's encoder, and the
    /// decoder's file is named.
    func testTAESDsEncoderIsCalledSo() throws {
        let dir = try makeWeightsTestDirectory(self)
        let folder = try SafetensorsFile(url: Fixture.url("taesd/tiny-taesd/diffusion_pytorch_model.safetensors"))
        let encoderNames = folder.names.filter { $0.hasPrefix("encoder.layers.") }
        XCTAssertFalse(encoderNames.isEmpty)
        func write(_ name: String, rename: (String) -> String) throws -> URL {
            try writeSafetensors(dir.appendingPathComponent(name), try encoderNames.map { stored in
                (name: rename(stored), dtype: .f32, shape: try XCTUnwrap(folder.shape(of: stored)), values: try folder.tensor(stored).data)
            })
        }
        let original = try write("taesd_encoder.safetensors") { String($0.dropFirst("encoder.layers.".count)) }
        let diffusers = try write("encoder.safetensors") { $0 }
        for url in [original, diffusers] {
            XCTAssertThrowsError(try loadLatentDecoder(url)) { error in
                XCTAssertEqual(error as? TinyAutoencoderError, .encoder(path: url.path))
                XCTAssertEqual("\(error)", "\(url.path) is TAESD's encoder (taesd_encoder), which turns images into latents; sdrepl decodes "
                               + "with TAESD's decoder: give taesd_decoder.safetensors from the same place (madebyollin/taesd)")
            }
        }
    }

    /// A VAE or TAESD whose weights are stored as F8, integers or BOOL is refused when it is opened,
    /// naming the tensor and its type. F8 used to pass and stop the process at the first decode;
    /// integers and BOOL decoded to wrong pixels without a word (or were called NaN weights).
    func testDecodersStoredAsAnythingButFloatsAreRefusedWhenOpened() throws {
        let dir = try makeWeightsTestDirectory(self)
        let config = try TinySD15Fixture.config(VAEConfig.self, .vae)
        let vae = try SafetensorsFile(url: Fixture.tinySD15Folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"))
        let taesd = try SafetensorsFile(url: Fixture.url("taesd/taesd_decoder.safetensors"))
        for (source, kind) in [(vae, "vae"), (taesd, "taesd")] {
            for dtype in [SafetensorsDType.f8e4m3, .f8e5m2, .i8, .i32, .bool] {
                let url = try writeRetyped(source, to: dir.appendingPathComponent("\(kind)-\(dtype.rawValue).safetensors")) { _ in dtype }
                let pickled = try writeTorchTwin(of: try SafetensorsFile(url: url), to: dir.appendingPathComponent("\(kind)-\(dtype.rawValue).pt"), wrapper: nil)
                for file in [url, pickled] {
                    XCTAssertThrowsError(try loadLatentDecoder(file, vaeConfig: config), file.lastPathComponent) { error in
                        guard case let .notFloat(tensor, stored, path)? = error as? WeightsError else { return XCTFail("\(file.lastPathComponent): \(error)") }
                        XCTAssertTrue(source.names.contains(tensor), tensor)
                        XCTAssertEqual(stored, dtype.rawValue)
                        XCTAssertEqual(path, file.path)
                    }
                }
            }
        }
    }
}
