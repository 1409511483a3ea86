import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// The tiny random-weight model with SD1.5's topology (`Tests/Fixtures/README.md`, "4. Tiny models") in the
/// three forms the loader reads, and the diffusers/transformers references computed from it.
///
/// Shared by the Text, UNet, VAE and Weights tests, so it sits at the top of DiffusionTests rather
/// than in one of their folders.
enum TinySD15Fixture {
    enum Form: String, CaseIterable {
        /// diffusers folder, plain fp32 files.
        case diffusersFP32 = "diffusers fp32"
        /// diffusers folder, `.fp16.` variant files (text encoder saved without `text_model.`).
        case diffusersFP16 = "diffusers fp16"
        /// one safetensors file in the original LDM layout, fp16.
        case singleFile = "single file"
    }

    static let folder = Fixture.tinySD15Folder
    static let singleFile = Fixture.tinySD15SingleFile

    /// The img2img and inpainting fixtures' init picture, from the processed tensor diffusers saved
    /// (`2 · b/255 − 1` inverts exactly, which the test of the encoder checks).
    static func initImage() throws -> PixelImage {
        let pixels = try Fixture.tensors("img2img/encoder").tensor("pixels")  // [1, 3, 64, 64]
        let (h, w) = (pixels.shape[2], pixels.shape[3])
        var rgb = [UInt8](repeating: 0, count: h * w * 3)
        for c in 0..<3 {
            for i in 0..<(h * w) { rgb[i * 3 + c] = UInt8(((pixels.data[c * h * w + i] + 1) / 2 * 255).rounded()) }
        }
        return PixelImage(width: w, height: h, rgb: rgb)
    }

    /// Opens the fixture in `form`.
    static func checkpoint(_ form: Form, memory: MemoryMode = .fast) throws -> Checkpoint {
        switch form {
        case .diffusersFP32: return try Checkpoint(url: folder, options: LoadOptions(memoryMode: memory))
        case .diffusersFP16: return try Checkpoint(url: folder, options: LoadOptions(memoryMode: memory, variant: "fp16"))
        case .singleFile: return try Checkpoint(url: singleFile, options: LoadOptions(memoryMode: memory))
        }
    }

    /// The component's `config.json` from the diffusers folder. A single file carries no config, so
    /// every form is built with these (the tiny model's sizes are not SD1.5's defaults).
    static func config<Config: ModelConfigFile>(_ type: Config.Type, _ component: CheckpointComponent) throws -> Config {
        try Config(json: Data(Fixture.bytes("models/tiny-sd15-diffusers/\(component.rawValue)/config.json")))
    }

    static func textEncoder(_ checkpoint: Checkpoint) throws -> CLIPTextModel {
        try CLIPTextModel(config: config(CLIPTextConfig.self, .textEncoder), weights: checkpoint.weights(for: .textEncoder))
    }

    static func unet(_ checkpoint: Checkpoint) throws -> UNet2DConditionModel {
        try UNet2DConditionModel(config: config(UNetConfig.self, .unet), weights: checkpoint.weights(for: .unet))
    }

    static func vae(_ checkpoint: Checkpoint) throws -> AutoencoderDecoder {
        try AutoencoderDecoder(config: config(VAEConfig.self, .vae), weights: checkpoint.weights(for: .vae))
    }

    /// The references for `form`: computed from the fp32 weights, or from the same weights rounded
    /// to fp16 (what both fp16 forms hold), upcast and computed in fp32 (`reference/components.json`).
    static func references(for form: Form) throws -> SafetensorsFile {
        try Fixture.tensors(form == .diffusersFP32 ? "reference/components_fp32" : "reference/components_fp16weights")
    }

    /// The prompts of `text/{i}/…` in the references (`REF_PROMPTS` in `make_fixtures.py`).
    static let promptCount = 5
    /// The UNet cases of `unet/{case}/…`: shape (B, 4, h, w) and timestep as in `make_fixtures.py`.
    static let unetCases = ["square", "square_t1", "square_float_t", "nonsquare", "odd"]
    /// The VAE cases of `vae/{case}/…`: latents (1, 4, 8, 8) and (1, 4, 6, 10).
    static let vaeCases = ["square", "nonsquare"]
}
