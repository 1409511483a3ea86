import Foundation
import XCTest
@testable import Diffusion
@testable import NN

/// The model configs: diffusers/transformers JSON decodes to the SD1.5 defaults, unknown keys and
/// `null`s are tolerated, and non-SD1.x settings are refused by name.
final class ModelConfigTests: XCTestCase {
    /// runwayml/stable-diffusion-v1-5 `unet/config.json`, as published.
    static let sd15UNetJSON = """
    {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0", "act_fn": "silu",
     "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false,
     "cross_attention_dim": 768,
     "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
     "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
     "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
     "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}
    """

    /// Every `UNet2DConditionModel.__init__` default of diffusers 0.42.1, as a saved config lists
    /// them (`{k: v.default for k, v in inspect.signature(UNet2DConditionModel.__init__).parameters.items()}`),
    /// with `cross_attention_dim` set to SD1.5's: most are `null`, which must mean "default".
    static let diffusersDefaultsUNetJSON = """
    {"sample_size": null, "in_channels": 4, "out_channels": 4, "center_input_sample": false, "flip_sin_to_cos": true,
     "freq_shift": 0, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
     "mid_block_type": "UNetMidBlock2DCrossAttn", "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
     "only_cross_attention": false, "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "downsample_padding": 1,
     "mid_block_scale_factor": 1, "dropout": 0.0, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-05,
     "cross_attention_dim": 768, "transformer_layers_per_block": 1, "reverse_transformer_layers_per_block": null,
     "encoder_hid_dim": null, "encoder_hid_dim_type": null, "attention_head_dim": 8, "num_attention_heads": null,
     "dual_cross_attention": false, "use_linear_projection": false, "class_embed_type": null, "addition_embed_type": null,
     "addition_time_embed_dim": null, "num_class_embeds": null, "upcast_attention": false, "resnet_time_scale_shift": "default",
     "resnet_skip_time_act": false, "resnet_out_scale_factor": 1.0, "time_embedding_type": "positional", "time_embedding_dim": null,
     "time_embedding_act_fn": null, "timestep_post_act": null, "time_cond_proj_dim": null, "conv_in_kernel": 3, "conv_out_kernel": 3,
     "projection_class_embeddings_input_dim": null, "attention_type": "default", "class_embeddings_concat": false,
     "mid_block_only_cross_attention": null, "cross_attention_norm": null, "addition_embed_type_num_heads": 64}
    """

    func testSD15UNetConfigDecodesToTheDefaults() throws {
        let published = try UNetConfig(json: Data(Self.sd15UNetJSON.utf8))
        XCTAssertEqual(published, UNetConfig())
        XCTAssertNoThrow(try published.validate())
        XCTAssertEqual(published.timeEmbeddingChannels, 1280)
        XCTAssertEqual(published.headsPerLevel, [8, 8, 8, 8])

        var full = try UNetConfig(json: Data(Self.diffusersDefaultsUNetJSON.utf8))
        XCTAssertNoThrow(try full.validate())
        full.sampleSize = 64  // null in the signature defaults
        XCTAssertEqual(full, UNetConfig())
    }

    func testUNetConfigRoundTripsThroughJSON() throws {
        var config = UNetConfig()
        config.blockOutChannels = [32, 64]
        config.attentionHeadDim = .each([2, 4])
        config.downBlockTypes = ["CrossAttnDownBlock2D", "DownBlock2D"]
        config.upBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D"]
        let data = try config.json()
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains(#""block_out_channels":[32,64]"#))
        XCTAssertEqual(try UNetConfig(json: data), config)
        XCTAssertEqual(config.headsPerLevel, [2, 4])
    }

    /// Each setting that takes a UNet away from SD1.x is refused with its diffusers name.
    func testUNetRefusesNonSD1Settings() throws {
        let cases: [(json: String, setting: String)] = [
            (#"{"use_linear_projection": true, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024}"#, "use_linear_projection"),  // SD2.x
            (#"{"addition_embed_type": "text_time"}"#, "addition_embed_type"),  // SDXL
            (#"{"class_embed_type": "timestep"}"#, "class_embed_type"),
            (#"{"num_attention_heads": 8}"#, "num_attention_heads"),
            (#"{"time_cond_proj_dim": 256}"#, "time_cond_proj_dim"),  // LCM
            (#"{"only_cross_attention": [false, true, false, false]}"#, "only_cross_attention"),
            (#"{"resnet_time_scale_shift": "scale_shift"}"#, "resnet_time_scale_shift"),
            (#"{"mid_block_type": "UNetMidBlock2DSimpleCrossAttn"}"#, "mid_block_type"),
            (#"{"down_block_types": ["CrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]}"#, "down_block_types"),
            (#"{"cross_attention_dim": [768, 768, 768, 768]}"#, "cross_attention_dim"),
        ]
        for (json, setting) in cases {
            let config = try UNetConfig(json: Data(json.utf8))
            XCTAssertThrowsError(try config.validate(), json) { error in
                guard case let .unsupported(model, name, _, _) = error as? ModelConfigError else {
                    return XCTFail("\(json): \(error)")
                }
                XCTAssertEqual(model, "UNet")
                XCTAssertEqual(name, setting, json)
                XCTAssertTrue("\(error)".contains("Stable Diffusion 1.x"), "\(error)")
            }
        }
    }

    /// `upcast_attention` only changes the precision of the softmax; every op here is Float32, so it
    /// is accepted and changes nothing.
    func testUNetAcceptsUpcastAttention() throws {
        let config = try UNetConfig(json: Data(#"{"upcast_attention": true}"#.utf8))
        XCTAssertNoThrow(try config.validate())
    }

    func testUNetRefusesSizesThatDoNotFit() throws {
        let cases: [(json: String, setting: String)] = [
            (#"{"block_out_channels": [320, 640, 1280]}"#, "down_block_types"),
            (#"{"attention_head_dim": [8, 8]}"#, "attention_head_dim"),
            (#"{"attention_head_dim": 7}"#, "attention_head_dim"),
            (#"{"block_out_channels": [320, 640, 1280, 1284]}"#, "attention_head_dim"),
            (#"{"norm_num_groups": 48}"#, "block_out_channels"),
            (#"{"layers_per_block": 0}"#, "layers_per_block"),
            // Counts past any model's are refused before building asks for terabytes.
            (#"{"layers_per_block": 1000000000000}"#, "layers_per_block"),
            (#"{"transformer_layers_per_block": 100000}"#, "transformer_layers_per_block"),
            (#"{"block_out_channels": [320, 640, 1280, 1310720]}"#, "block_out_channels"),
            (#"{"cross_attention_dim": 100000000}"#, "cross_attention_dim"),
        ]
        for (json, setting) in cases {
            let config = try UNetConfig(json: Data(json.utf8))
            XCTAssertThrowsError(try config.validate(), json) { error in
                guard case let .invalid(_, name, _, _) = error as? ModelConfigError else { return XCTFail("\(json): \(error)") }
                XCTAssertEqual(name, setting, json)
            }
        }
    }

    /// runwayml/stable-diffusion-v1-5 `vae/config.json`, as published.
    func testSD15VAEConfigDecodesToTheDefaults() throws {
        let json = """
        {"_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0", "act_fn": "silu",
         "block_out_channels": [128, 256, 512, 512],
         "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
         "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
         "sample_size": 512, "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}
        """
        let config = try VAEConfig(json: Data(json.utf8))
        XCTAssertEqual(config, VAEConfig())
        XCTAssertEqual(config.scalingFactor, 0.18215)
        XCTAssertNoThrow(try config.validate())
    }

    func testVAERefusesNonSD1Settings() throws {
        for (json, setting) in [(#"{"shift_factor": 0.1159}"#, "shift_factor"),  // SD3
                                (#"{"latents_mean": [0, 0, 0, 0], "latents_std": [1, 1, 1, 1]}"#, "latents_mean"),
                                (#"{"up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "MidResTemporalBlock1D"]}"#, "up_block_types")] {
            let config = try VAEConfig(json: Data(json.utf8))
            XCTAssertThrowsError(try config.validate(), json) { error in
                guard case let .unsupported(model, name, _, _) = error as? ModelConfigError else { return XCTFail("\(json): \(error)") }
                XCTAssertEqual(model, "VAE")
                XCTAssertEqual(name, setting)
            }
        }
    }

    /// runwayml/stable-diffusion-v1-5 `text_encoder/config.json`, as published (transformers 4.22).
    func testSD15TextEncoderConfigDecodesToTheDefaults() throws {
        let json = """
        {"_name_or_path": "openai/clip-vit-large-patch14", "architectures": ["CLIPTextModel"], "attention_dropout": 0.0,
         "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768,
         "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
         "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 12,
         "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768, "torch_dtype": "float32",
         "transformers_version": "4.22.0.dev0", "vocab_size": 49408}
        """
        let config = try CLIPTextConfig(json: Data(json.utf8))
        XCTAssertEqual(config, CLIPTextConfig())
        XCTAssertNoThrow(try config.validate())
    }

    func testTextEncoderRefusesUnknownActivation() throws {
        let config = try CLIPTextConfig(json: Data(#"{"hidden_act": "relu"}"#.utf8))
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertEqual(error as? ModelConfigError,
                           .unsupported(model: "text encoder", setting: "hidden_act", value: "relu",
                                        reason: "SD1.x's CLIP uses quick_gelu; gelu is also accepted"))
        }
    }

    /// Every setting of each config has one JSON name that reads back to it: the snake-case form of
    /// its Swift name, or the name `renamedSettings` gives it (the names `validate()` reports).
    /// Another spelling of a setting is ignored as an unknown key.
    func testEverySettingHasOneJSONNameThatReadsBack() throws {
        func check<Config: ModelConfigFile>(_ type: Config.Type) {
            let properties = Mirror(reflecting: Config()).children.compactMap(\.label)
            XCTAssertFalse(properties.isEmpty)
            for property in properties {
                let key = Config.settingName(property)
                XCTAssertEqual(Config.renamedSettings[key] ?? Config.propertyName(key), property, "\(Config.self).\(key)")
            }
            for property in Config.renamedSettings.values { XCTAssertTrue(properties.contains(property), property) }
        }
        check(UNetConfig.self)
        check(VAEConfig.self)
        check(CLIPTextConfig.self)
        XCTAssertEqual(UNetConfig.settingName("normGroups"), "norm_num_groups")
        XCTAssertEqual(UNetConfig.settingName("blockOutChannels"), "block_out_channels")
        XCTAssertEqual(try VAEConfig(json: Data(#"{"norm_groups": 16, "normGroups": 8}"#.utf8)).normGroups, 32)
        XCTAssertEqual(try VAEConfig(json: Data(#"{"norm_num_groups": 16}"#.utf8)).normGroups, 16)
    }

    /// A config.json that is not JSON, or has a setting of the wrong type, is refused naming it.
    func testMalformedConfigIsRefusedNamingTheSetting() throws {
        XCTAssertThrowsError(try UNetConfig(json: Data(#"{"block_out_channels": [320, "640"]}"#.utf8))) { error in
            guard case let .malformed(model, setting, _) = error as? ModelConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(model, "UNet")
            XCTAssertEqual(setting, "block_out_channels[1]")
        }
        XCTAssertThrowsError(try VAEConfig(json: Data("{\"scaling_factor\": ".utf8))) { error in
            guard case let .malformed(model, setting, _) = error as? ModelConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(model, "VAE")
            XCTAssertEqual(setting, "")
            XCTAssertTrue("\(error)".contains("config.json cannot be read"), "\(error)")
        }
        XCTAssertThrowsError(try CLIPTextConfig(json: Data(#"{"num_hidden_layers": "twelve"}"#.utf8))) { error in
            guard case let .malformed(_, setting, _) = error as? ModelConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(setting, "num_hidden_layers")
        }
        // The reason is in words, not Swift's DecodingError text and type names.
        XCTAssertThrowsError(try UNetConfig(json: Data(#"{"block_out_channels": "32,32"}"#.utf8))) { error in
            XCTAssertEqual("\(error)", "the UNet config.json cannot be read at block_out_channels: expected a number or a list of numbers; "
                           + "it should be the config.json that diffusers or transformers saved with the weights")
        }
        for (json, setting) in [(#"{"num_hidden_layers": 100000}"#, "num_hidden_layers"), (#"{"vocab_size": 1000000000}"#, "vocab_size")] {
            XCTAssertThrowsError(try CLIPTextConfig(json: Data(json.utf8)).validate(), json) { error in
                guard case let .invalid(_, name, _, _) = error as? ModelConfigError else { return XCTFail("\(json): \(error)") }
                XCTAssertEqual(name, setting, json)
            }
        }
        XCTAssertThrowsError(try VAEConfig(json: Data(#"{"layers_per_block": 1000000000000}"#.utf8)).validate()) { error in
            guard case let .invalid(_, name, _, _) = error as? ModelConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "layers_per_block")
        }
    }

    /// The UNet's upsamplers resize to the skip connection's size when doubling would overshoot;
    /// the source index is `⌊dst · in / out⌋` as in torch:
    /// `F.interpolate(torch.arange(6.).reshape(1,1,2,3), size=(3,5), mode="nearest").flatten().tolist()`.
    func testNearestResizeMatchesTorch() {
        let x = Tensor(shape: [1, 1, 2, 3], data: (0..<6).map(Float.init))
        XCTAssertEqual(x.resizedNearest(height: 3, width: 5).data,
                       [0, 0, 1, 1, 2, 0, 0, 1, 1, 2, 3, 3, 4, 4, 5])
        // F.interpolate(torch.arange(15.).reshape(1,1,3,5), size=(6,9), mode="nearest"): rows double, columns 5 -> 9.
        let y = Tensor(shape: [1, 1, 3, 5], data: (0..<15).map(Float.init))
        let columns: [Float] = [0, 0, 1, 1, 2, 2, 3, 3, 4]
        let expected = (0..<6).flatMap { row in columns.map { $0 + Float(row / 2 * 5) } }
        XCTAssertEqual(y.resizedNearest(height: 6, width: 9).data, expected)
        // Exact doubling takes the same path as upsampleNearest2x.
        XCTAssertEqual(y.resizedNearest(height: 6, width: 10), y.upsampleNearest2x())
    }
}
