import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// LoRA against diffusers: `lora/tiny-lora.safetensors` (kohya-ss layout, LoCon 3×3 convs, fp16) on
/// the tiny SD1.5-topology model, loaded by diffusers 0.42.1 + peft 0.21.2 with
/// `pipe.load_lora_weights(...)` and `pipe.fuse_lora(lora_scale=S)` (per component where the
/// multipliers differ). `lora/manifest.json` has each case's Python lines; the generator is
/// `Tests/Fixtures/make_lora_fixtures.py`.
final class LoRAParityTests: XCTestCase {
    /// Each case: its name in the references and the A1111 tag that asks for the same scales.
    static let cases = [
        ("none", ""),
        ("full_0.8", "<lora:tiny-lora:0.8>"),  // fuse_lora(lora_scale=0.8)
        ("unet_only_1.0", "<lora:tiny-lora:0:1>"),  // fuse_lora(components=["unet"], lora_scale=1.0)
        ("te1.0_unet0.5", "<lora:tiny-lora:1:0.5>"),  // text_encoder 1.0, unet 0.5
    ]
    static let prompt = "a red fox in the snow"

    private func check(memory: MemoryMode) throws {
        let pipe = try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: memory))
        pipe.loraDirectories = [Fixture.url("lora")]
        let references = try Fixture.tensors("lora/references")
        // pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        let ids = try pipe.tokenizer.encode(Self.prompt, paddedTo: 77)
        let latent = try references.tensor("inputs/latent")
        for (name, tag) in Self.cases {
            try pipe.useLoRAs(try ExtraNetworks.parse(tag).loras)
            // pipe.text_encoder(ids).last_hidden_state
            let text = pipe.textEncoder(tokens: ids)
            assertParity(text, try references.tensor("\(name)/text"), "\(name) (\(memory)): text encoder")
            // pipe.unet(latent, 500, encoder_hidden_states=text).sample
            assertParity(pipe.unet(latent, timestep: 500, context: text), try references.tensor("\(name)/unet"),
                         "\(name) (\(memory)): UNet")
            // pipe(prompt, num_inference_steps=4, guidance_scale=7.5, height=96, width=96,
            //      generator=torch.Generator("cpu").manual_seed(33), output_type="np").images[0]
            let request = GenerationRequest(prompt: "\(Self.prompt) \(tag)", seed: 33, steps: 4, guidanceScale: 7.5,
                                            width: 96, height: 96, sampler: .pndm)
            let image = try pipe.generate(request)[0].image
            var every4th: [Float] = []
            var sums = [Double](repeating: 0, count: 3)
            for y in 0..<96 {
                for x in 0..<96 {
                    for c in 0..<3 {
                        let value = Float(image.rgb[(y * 96 + x) * 3 + c]) / 255
                        sums[c] += Double(value)
                        if y % 4 == 0 && x % 4 == 0 { every4th.append(value) }
                    }
                }
            }
            // Our bytes against diffusers' float image: within rounding (1/255).
            assertClose(every4th, try references.tensor("\(name)/image_every4th").data, tolerance: 1.0 / 255 + 1e-6,
                        "\(name) (\(memory)): image[::4, ::4]")
            assertClose(sums.map { Float($0 / (96 * 96)) }, try references.tensor("\(name)/image_mean").data,
                        tolerance: 0.5 / 255 + 1e-5, "\(name) (\(memory)): mean of each channel")
        }
    }

    func testFastModeMatchesDiffusers() throws { try check(memory: .fast) }

    /// Low-memory mode adds the deltas each time a weight is converted: the same numbers.
    func testLowMemoryModeMatchesDiffusers() throws { try check(memory: .low) }

    /// The LoRA changes every component, so the parity above is not the LoRA being ignored.
    func testTheReferencesDifferFromNoLoRA() throws {
        let references = try Fixture.tensors("lora/references")
        for (name, _) in Self.cases.dropFirst() {
            for part in ["unet", "image_every4th"] {
                let difference = maxAbsDifference(try references.tensor("\(name)/\(part)").data,
                                                  try references.tensor("none/\(part)").data)
                XCTAssertGreaterThan(difference, 0.1, "\(name)/\(part)")
            }
        }
    }
}
