import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// Building the models from checkpoints: strict shapes, every weight used, the same numbers from
/// every layout and memory mode.
final class ModelLoadingTests: XCTestCase {
    /// A config whose last level is wider than the fixture's is refused at the first tensor it
    /// reaches, with the key and both shapes.
    func testUNetWithWrongWidthIsRefusedNamingTheTensor() throws {
        let checkpoint = try TinySD15Fixture.checkpoint(.diffusersFP32)
        var config = try TinySD15Fixture.config(UNetConfig.self, .unet)
        XCTAssertEqual(config.blockOutChannels, [32, 32, 32, 64])
        config.blockOutChannels[3] = 128
        XCTAssertThrowsError(try UNet2DConditionModel(config: config, weights: checkpoint.weights(for: .unet))) { error in
            guard case let .shapeMismatch(key, expected, actual, _) = error as? WeightsError else { return XCTFail("\(error)") }
            XCTAssertEqual(key, "unet.down_blocks.3.resnets.0.conv1.weight")
            XCTAssertEqual(expected, [128, 32, 3, 3])
            XCTAssertEqual(actual, [64, 32, 3, 3])
            XCTAssertTrue("\(error)".contains("unet.down_blocks.3.resnets.0.conv1.weight"), "\(error)")
        }
    }

    /// SD1.5's defaults against the tiny model: the text encoder fails at its first tensor.
    func testTextEncoderWithDefaultConfigIsRefusedNamingTheTensor() throws {
        let checkpoint = try TinySD15Fixture.checkpoint(.singleFile)
        XCTAssertThrowsError(try CLIPTextModel(weights: checkpoint.weights(for: .textEncoder))) { error in
            XCTAssertEqual(error as? WeightsError,
                           .shapeMismatch(key: "text_encoder.text_model.embeddings.token_embedding.weight",
                                          expected: [49408, 768], actual: [49408, 8], source: checkpoint.sourceDescription))
        }
    }

    func testVAEWithWrongLatentChannelsIsRefusedNamingTheTensor() throws {
        let checkpoint = try TinySD15Fixture.checkpoint(.diffusersFP16)
        var config = try TinySD15Fixture.config(VAEConfig.self, .vae)
        config.latentChannels = 8
        XCTAssertThrowsError(try AutoencoderDecoder(config: config, weights: checkpoint.weights(for: .vae))) { error in
            guard case let .shapeMismatch(key, expected, actual, _) = error as? WeightsError else { return XCTFail("\(error)") }
            XCTAssertEqual(key, "vae.post_quant_conv.weight")
            XCTAssertEqual(expected, [8, 8, 1, 1])
            XCTAssertEqual(actual, [4, 4, 1, 1])
        }
    }

    func testMissingTensorIsRefusedNamingIt() throws {
        // A config with one more resnet per level than the checkpoint asks for a tensor it lacks.
        let checkpoint = try TinySD15Fixture.checkpoint(.diffusersFP32)
        var config = try TinySD15Fixture.config(UNetConfig.self, .unet)
        config.layersPerBlock = .all(3)
        XCTAssertThrowsError(try UNet2DConditionModel(config: config, weights: checkpoint.weights(for: .unet))) { error in
            guard case let .missingTensor(key, _) = error as? WeightsError else { return XCTFail("\(error)") }
            XCTAssertEqual(key, "unet.down_blocks.0.resnets.2.norm1.weight")
        }
    }

    /// The three models take every tensor of the checkpoint except the VAE encoder's, which
    /// text-to-image does not use: nothing is silently left out of a forward pass.
    func testModelsUseEveryWeightInEveryLayout() throws {
        for form in TinySD15Fixture.Form.allCases {
            let checkpoint = try TinySD15Fixture.checkpoint(form)
            _ = try TinySD15Fixture.textEncoder(checkpoint)
            _ = try TinySD15Fixture.unet(checkpoint)
            _ = try TinySD15Fixture.vae(checkpoint)
            let unused = checkpoint.unexpectedKeys(ignoring: ["vae.encoder.", "vae.quant_conv."])
            XCTAssertEqual(unused, [], "\(form.rawValue)")
        }
    }

    /// The fp16 variant folder and the single file hold the same fp16 numbers, and low-memory mode
    /// converts the same bytes on each use: all must give bit-identical outputs.
    func testLayoutsAndMemoryModesGiveIdenticalOutputs() throws {
        let references = try TinySD15Fixture.references(for: .singleFile)
        let latents = try references.tensor("unet/odd/sample")
        let context = try references.tensor("unet/odd/encoder_hidden_states")
        let vaeLatents = try references.tensor("vae/nonsquare/latents")
        let ids = try references.tensor("text/2/ids").data.map { Int($0) }

        var outputs: [(String, Tensor, Tensor, Tensor)] = []
        for (form, memory) in [(TinySD15Fixture.Form.diffusersFP16, MemoryMode.fast), (.singleFile, .fast), (.singleFile, .low)] {
            let checkpoint = try TinySD15Fixture.checkpoint(form, memory: memory)
            XCTAssertEqual(checkpoint.memoryMode, memory)
            outputs.append(("\(form.rawValue) \(memory)",
                            try TinySD15Fixture.textEncoder(checkpoint)(tokens: ids, clipSkip: 2),
                            try TinySD15Fixture.unet(checkpoint)(latents, timestep: 300, context: context),
                            try TinySD15Fixture.vae(checkpoint).decode(vaeLatents)))
        }
        for other in outputs.dropFirst() {
            XCTAssertEqual(other.1, outputs[0].1, "text encoder: \(other.0) vs \(outputs[0].0)")
            XCTAssertEqual(other.2, outputs[0].2, "UNet: \(other.0) vs \(outputs[0].0)")
            XCTAssertEqual(other.3, outputs[0].3, "VAE: \(other.0) vs \(outputs[0].0)")
        }
    }
}
