import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// The key layouts of the published few-step LoRAs, against diffusers 0.42.1 + peft 0.21.2
/// (`Tests/Fixtures/make_fewstep_lora_fixtures.py`; `fewstep_lora/manifest.json` has the Python):
///
/// - `lcm-lora-layout`: written by `get_module_kohya_state_dict(unet, "lora_unet", torch.float16)` of
///   diffusers' `train_lcm_distill_lora_sd_wds.py` (latent-consistency/lcm-lora-sdv1-5; PCM's `*_converted`
///   files come from the same function), rank 2, alpha 4, every target module of the LCM script.
/// - `diffusers-layout`: `save_lora_weights(dir, unet_lora_layers=get_peft_model_state_dict(unet))` after
///   `unet.add_adapter(...)`: `unet.<path>.lora_A.weight`, no alpha.
///
/// Each is loaded by diffusers with `pipe.load_lora_weights(DIR, weight_name=FILE); pipe.fuse_lora()`.
final class FewStepLoRAParityTests: XCTestCase {
    static let layouts = [("kohya", "lcm-lora-layout"), ("diffusers", "diffusers-layout")]
    static let prompt = "a red fox in the snow"

    private func check(memory: MemoryMode) throws {
        let pipe = try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: memory))
        pipe.loraDirectories = [Fixture.url("fewstep_lora")]
        let references = try Fixture.tensors("fewstep_lora/references")
        // pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        let ids = try pipe.tokenizer.encode(Self.prompt, paddedTo: 77)
        let latent = try references.tensor("inputs/latent")
        for (layout, file) in [("none", "")] + Self.layouts {
            let tag = file.isEmpty ? "" : "<lora:\(file):1>"
            try pipe.useLoRAs(try ExtraNetworks.parse(tag).loras)
            // pipe.unet(latent, 500, encoder_hidden_states=pipe.text_encoder(ids).last_hidden_state).sample
            let text = pipe.textEncoder(tokens: ids)
            assertParity(pipe.unet(latent, timestep: 500, context: text), try references.tensor("\(layout)/unet"),
                         "\(layout) (\(memory)): UNet")
            // pipe(prompt, num_inference_steps=4, guidance_scale=1.0, height=96, width=96,
            //      generator=torch.Generator("cpu").manual_seed(33), output_type="np").images[0][::4, ::4]
            // with pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
            let request = GenerationRequest(prompt: "\(Self.prompt) \(tag)", seed: 33, steps: 4, guidanceScale: 1,
                                            width: 96, height: 96, sampler: .lcm)
            let image = try pipe.generate(request)[0].image
            var every4th: [Float] = []
            for y in stride(from: 0, to: 96, by: 4) {
                for x in stride(from: 0, to: 96, by: 4) {
                    for c in 0..<3 { every4th.append(Float(image.rgb[(y * 96 + x) * 3 + c]) / 255) }
                }
            }
            // Our bytes against diffusers' float image: within rounding (1/255).
            assertClose(every4th, try references.tensor("\(layout)/image").data, tolerance: 1.0 / 255 + 1e-6,
                        "\(layout) (\(memory)): LCM image[::4, ::4]")
        }
    }

    func testFastModeMatchesDiffusers() throws { try check(memory: .fast) }

    func testLowMemoryModeMatchesDiffusers() throws { try check(memory: .low) }

    /// Each file changes the UNet by far more than the tolerance, so parity is not the LoRA being ignored.
    func testTheReferencesDifferFromNoLoRA() throws {
        let references = try Fixture.tensors("fewstep_lora/references")
        for (layout, _) in Self.layouts {
            let difference = maxAbsDifference(try references.tensor("\(layout)/unet").data,
                                              try references.tensor("none/unet").data)
            XCTAssertGreaterThan(difference, 0.5, layout)
        }
    }

    /// The LCM layout carries alpha 4 at rank 2 (scale 2); the diffusers layout has no alpha (scale 1).
    func testAlphaIsReadFromTheKohyaLayoutOnly() throws {
        let kohya = try LoRAFile(url: Fixture.url("fewstep_lora/lcm-lora-layout.safetensors"))
        XCTAssertEqual(Set(kohya.modules.map(\.alpha)), [4])
        XCTAssertEqual(Set(kohya.modules.map { $0.down.shape[0] }), [2])
        let peft = try LoRAFile(url: Fixture.url("fewstep_lora/diffusers-layout.safetensors"))
        XCTAssertEqual(Set(peft.modules.map(\.alpha)), [nil])
    }
}
