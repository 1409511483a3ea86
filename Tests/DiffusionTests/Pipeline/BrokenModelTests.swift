import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// Model files that load but cannot make a picture: NaN weights (a bad merge, an fp16 overflow), a
/// config whose numbers no scheduler or tokenizer can use. Each is refused with a message naming the
/// part and the files to suspect, where Swift's conversion to 8-bit pixels or a range would trap.
final class BrokenModelTests: XCTestCase {
    /// PNDM (the model's sampler): its 2 steps are 3 UNet evaluations, which progress counts too.
    private let request = GenerationRequest(prompt: "a red fox", seed: 1, steps: 2, width: 64, height: 64)

    /// A copy of the tiny diffusers folder in a fresh directory.
    private func tinyCopy() throws -> URL {
        let copy = try makeWeightsTestDirectory(self).appendingPathComponent("tiny-sd15")
        try FileManager.default.copyItem(at: TinySD15Fixture.folder, to: copy)
        return copy
    }

    /// Rewrites the safetensors file at `url` (or writes it to `destination`) with `change` applied
    /// to each tensor's values, as float32.
    @discardableResult
    private func rewrite(_ url: URL, to destination: URL? = nil, _ change: (String, [Float]) -> [Float]) throws -> URL {
        let source = try SafetensorsFile(url: url)
        let tensors = try source.tensors.map { info in
            (name: info.name, dtype: SafetensorsDType.f32, shape: info.shape, values: change(info.name, try source.tensor(info.name).data))
        }
        return try writeSafetensors(destination ?? url, tensors)
    }

    private func editJSON(_ url: URL, _ change: (inout [String: Any]) -> Void) throws {
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        change(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: url)
    }

    private func assertNonFinite(_ body: @autoclosure () throws -> Any, startsWith prefix: String, contains part: String,
                                 file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case let .nonFinite(message)? = error as? PipelineError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue(message.hasPrefix(prefix), message, file: file, line: line)
            XCTAssertTrue(message.contains(part), message, file: file, line: line)
        }
    }

    func testNaNInTheUNetIsRefusedAtTheFirstStepNamingTheModel() throws {
        let folder = try tinyCopy()
        try rewrite(folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")) { name, values in
            name == "conv_in.weight" ? values.map { _ in .nan } : values
        }
        let pipe = try StableDiffusionPipeline(url: folder)
        assertNonFinite(try pipe.generate(request), startsWith: "the UNet produced NaN or infinite values at step 1 of 3: the UNet weights of \(folder.path) hold",
                        contains: "try another model")
        // The pipeline stays usable: the cached latents and LoRAs are not poisoned.
        assertNonFinite(try pipe.generate(request), startsWith: "the UNet produced NaN", contains: "step 1 of 3")
    }

    func testNaNInALoRANamesTheTag() throws {
        let loras = try makeWeightsTestDirectory(self)
        try rewrite(Fixture.url("lora/tiny-lora.safetensors"), to: loras.appendingPathComponent("broken.safetensors")) { name, values in
            name.hasPrefix("lora_unet") && name.hasSuffix("lora_up.weight") ? values.map { _ in .infinity } : values
        }
        let pipe = try StableDiffusionPipeline(url: TinySD15Fixture.folder)
        pipe.loraDirectories = [loras]
        var withLoRA = request
        withLoRA.prompt = "a red fox <lora:broken:1>"
        assertNonFinite(try pipe.generate(withLoRA), startsWith: "the UNet produced NaN or infinite values at step 1 of 3",
                        contains: "or of a LoRA in the prompt (<lora:broken>) hold NaN or infinite values; try the prompt without its LoRAs")
        XCTAssertEqual(try pipe.generate(request).count, 1, "the same pipeline without the LoRA still works")
    }

    func testNaNInAnEmbeddingIsCaughtAtTheTextEncoder() throws {
        let embeddings = try makeWeightsTestDirectory(self)
        let pipe = try StableDiffusionPipeline(url: TinySD15Fixture.folder)
        let width = pipe.textEncoder.config.hiddenSize
        try writeSafetensors(embeddings.appendingPathComponent("nanemb.safetensors"),
                             [("emb_params", .f32, [1, width], [Float](repeating: .nan, count: width))])
        pipe.embeddingDirectories = [embeddings]
        var named = request
        named.prompt = "a nanemb fox"
        assertNonFinite(try pipe.prepare(named), startsWith: "the text encoder produced NaN or infinite values for this prompt",
                        contains: "or an embedding the prompt names")
    }

    func testNaNInADecoderFileNamesTheFileAndTheWayBack() throws {
        let taesd = try rewrite(Fixture.url("taesd/taesd_decoder.safetensors"),
                                to: try makeWeightsTestDirectory(self).appendingPathComponent("taesd_nan.safetensors")) { name, values in
            name.hasSuffix("bias") ? values.map { _ in .nan } : values
        }
        let pipe = try StableDiffusionPipeline(url: TinySD15Fixture.folder)
        pipe.decoder = try loadLatentDecoder(taesd)
        pipe.decoderFile = taesd
        assertNonFinite(try pipe.generate(request), startsWith: "the TAESD in \(taesd.path) produced NaN or infinite pixels",
                        contains: "'set vae none' goes back to the model's own")
    }

    func testSchedulerConfigsNoSamplerCanUseAreRefusedWhenTheModelLoads() throws {
        for (key, value, expected) in [
            ("num_train_timesteps", 0 as Any, "scheduler_config.json sets num_train_timesteps = 0; it must be from 2 to 100000"),
            ("beta_start", 2.0 as Any, "scheduler_config.json sets beta_start = 2.0; betas must be between 0 and 1"),
            ("steps_offset", 5000 as Any, "scheduler_config.json sets steps_offset = 5000; it must be from 0 to num_train_timesteps − 1"),
        ] {
            let folder = try tinyCopy()
            try editJSON(folder.appendingPathComponent("scheduler/scheduler_config.json")) { $0[key] = value }
            XCTAssertThrowsError(try StableDiffusionPipeline(url: folder), key) { error in
                XCTAssertTrue("\(error)".hasPrefix("invalid scheduler config: " + expected), "\(error)")
            }
        }
    }

    func testATextEncoderWithFewerTokensThanItsTokenizerIsRefused() throws {
        let folder = try tinyCopy()
        let weights = folder.appendingPathComponent("text_encoder/model.safetensors")
        let source = try SafetensorsFile(url: weights)
        let tensors = try source.tensors.map { info -> (name: String, dtype: SafetensorsDType, shape: [Int], values: [Float]) in
            let values = try source.tensor(info.name).data
            guard info.name.hasSuffix("token_embedding.weight") else { return (info.name, .f32, info.shape, values) }
            return (info.name, .f32, [1000, info.shape[1]], Array(values.prefix(1000 * info.shape[1])))
        }
        try writeSafetensors(weights, tensors)
        try editJSON(folder.appendingPathComponent("text_encoder/config.json")) { $0["vocab_size"] = 1000 }
        XCTAssertThrowsError(try StableDiffusionPipeline(url: folder)) { error in
            XCTAssertEqual(error as? ModelConfigError, .invalid(model: "text encoder", setting: "vocab_size", value: "1000",
                                                                reason: "the tokenizer has 49408 tokens, so its last ids would have no row in the token table"))
        }
    }
}
