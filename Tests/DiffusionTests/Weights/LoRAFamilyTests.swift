import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// LoRAs for other models are refused saying what they are; diffusers' own key names are read.
final class LoRAFamilyTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws {
        folder = try makeWeightsTestDirectory(self)
    }

    private func write(_ name: String, _ tensors: [(String, [Int])]) throws -> URL {
        try writeSafetensors(folder.appendingPathComponent(name),
                             tensors.map { ($0.0, .f32, $0.1, [Float](repeating: 0.25, count: $0.1.reduce(1, *))) })
    }

    private func refusal(_ url: URL) -> String {
        do {
            let base = try Checkpoint(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast))
            _ = try LoRAPatchedSource(base: base, loras: [(try LoRAFile(url: url), 1, 1)])
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    /// SD2.x: OpenCLIP's text-encoder layers past 11, or a cross-attention key reading 1024-wide
    /// embeddings; SDXL: a second transformer block, or 2048-wide embeddings.
    func testOtherModelsAreNamed() throws {
        let attn2 = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
        let sd2 = try write("sd2.safetensors", [(attn2 + ".lora_down.weight", [4, 1024]), (attn2 + ".lora_up.weight", [32, 4])])
        XCTAssertTrue(refusal(sd2).contains("sd2.safetensors is an SD2.x LoRA ('\(attn2).lora_down.weight' reads 1024-wide text embeddings); sdrepl applies LoRA and LoCon networks for SD1.x only: use the SD1.5 version of this LoRA"),
                      refusal(sd2))
        let xl = try write("xl.safetensors", [(attn2 + ".lora_down.weight", [4, 2048]), (attn2 + ".lora_up.weight", [32, 4])])
        XCTAssertTrue(refusal(xl).contains("is an SDXL LoRA ('\(attn2).lora_down.weight' reads 2048-wide text embeddings)"), refusal(xl))
        let te = "lora_te_text_model_encoder_layers_22_mlp_fc1"
        let openclip = try write("openclip.safetensors", [(te + ".lora_down.weight", [4, 1024]), (te + ".lora_up.weight", [4096, 4])])
        XCTAssertTrue(refusal(openclip).contains("is an SD2.x LoRA (it has '\(te).lora_down.weight', past CLIP ViT-L's 12 layers)"),
                      refusal(openclip))
        let block = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q"
        let deep = try write("deep.safetensors", [(block + ".lora_down.weight", [4, 640]), (block + ".lora_up.weight", [640, 4])])
        XCTAssertTrue(refusal(deep).contains("is an SDXL LoRA (it has '\(block).lora_down.weight', a second transformer block)"),
                      refusal(deep))
    }

    /// `unet.<path>.lora.down.weight` (diffusers' `convert_state_dict_to_diffusers`) and PEFT's
    /// `base_model.model.<path>.lora_A.weight` reach the same weight as the kohya name.
    func testDiffusersAndPeftNamesReachTheirWeights() throws {
        let base = try Checkpoint(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast))
        let key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
        let shape = try XCTUnwrap(base.shape(of: key))
        let path = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
        var original = [Float](repeating: 0, count: shape.reduce(1, *))
        try original.withUnsafeMutableBufferPointer { try base.read(key, into: $0) }
        for (file, down, up) in [("diffusers.safetensors", "unet.\(path).lora.down.weight", "unet.\(path).lora.up.weight"),
                                 ("peft.safetensors", "base_model.model.\(path).lora_A.weight", "base_model.model.\(path).lora_B.weight"),
                                 ("wrapped.safetensors", "unet.base_model.model.\(path).lora_A.weight", "unet.base_model.model.\(path).lora_B.weight")] {
            let url = try write(file, [(down, [2, shape[1]]), (up, [shape[0], 2])])
            let patched = try LoRAPatchedSource(base: base, loras: [(try LoRAFile(url: url), 1, 1)])
            var values = [Float](repeating: 0, count: original.count)
            try values.withUnsafeMutableBufferPointer { try patched.read(key, into: $0) }
            // up · down = 2 · 0.25 · 0.25 everywhere; no alpha: alpha = rank
            assertClose(values, original.map { $0 + 0.125 }, tolerance: 1e-6, file)
        }
    }
}
