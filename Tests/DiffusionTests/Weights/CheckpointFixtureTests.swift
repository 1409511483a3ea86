import Foundation
import XCTest
@testable import Diffusion
@testable import NN
import TestSupport

/// The tiny SD1.5 fixture model (`Tests/Fixtures/models`, made by `make_fixtures.py` with diffusers and
/// checked there to load through `StableDiffusionPipeline.from_pretrained` and `.from_single_file`):
/// a diffusers folder in fp32 with an `.fp16.` variant (whose text encoder is saved without
/// `text_model.`, as transformers 5 does), and the same model as an fp16 single file in the LDM layout
/// with EMA counters, DDPM buffers and `position_ids`.
final class CheckpointFixtureTests: XCTestCase {
    func testAllThreeFormatsOfTheFixtureModelAgree() throws {
        let folder = try Checkpoint(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .low))
        let variant = try Checkpoint(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .low, variant: "fp16"))
        let single = try Checkpoint(url: Fixture.tinySD15SingleFile, options: LoadOptions(memoryMode: .low))

        XCTAssertEqual(folder.keys.count, 684 + 240 + 52)  // UNet, VAE, text encoder of the tiny config
        XCTAssertEqual(single.keys, folder.keys)
        XCTAssertEqual(variant.keys, folder.keys)
        XCTAssertEqual(variant.fileURL(for: .textEncoder).lastPathComponent, "model.fp16.safetensors")
        for key in folder.keys {
            XCTAssertEqual(single.shape(of: key), folder.shape(of: key), key)
            let fp32 = try folder.readTensor(key)
            let fromSingle = try single.readTensor(key)
            // fp16 files hold exactly the fp32 weights rounded to half precision (`.half()` in the script).
            XCTAssertEqual(fromSingle, fp32.map { Float(Float16($0)) }, key)
            XCTAssertEqual(try variant.readTensor(key), fromSingle, key)
        }
        // Every stored tensor of the single file is either a weight or a known non-weight.
        XCTAssertEqual(single.unexpectedKeys(used: Set(single.keys)), [])
        XCTAssertEqual(Set(single.ignoredKeys), [
            "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
            "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
            "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "model_ema.decay",
            "model_ema.num_updates", "cond_stage_model.transformer.text_model.embeddings.position_ids",
        ])
        // Configs, tokenizer and scheduler come with the folder only.
        XCTAssertNotNil(folder.configData(for: .unet))
        XCTAssertNotNil(folder.configData(for: .vae))
        XCTAssertNotNil(folder.configData(for: .textEncoder))
        XCTAssertNotNil(folder.schedulerConfigData)
        XCTAssertEqual(folder.tokenizerDirectory?.lastPathComponent, "tokenizer")
        XCTAssertNil(single.configData(for: .unet))
        XCTAssertNil(single.tokenizerDirectory)
    }

    /// A download of the fixture single file cut in the middle of its data.
    func testTruncatedFixtureCheckpoint() throws {
        let dir = try makeWeightsTestDirectory(self)
        let full = try Data(contentsOf: Fixture.tinySD15SingleFile)
        let cut = try writeTestFile(Array(full.prefix(full.count / 2)), "tiny-sd15.safetensors", in: dir)
        let error = checkpointError { _ = try Checkpoint(url: cut) }
        guard case let .unreadable(path, underlying) = error, case .offsetsOutOfRange = underlying else {
            return XCTFail("\(String(describing: error))")
        }
        XCTAssertEqual(path, cut.path)
        XCTAssertTrue(error!.description.contains("truncated (an interrupted download?)"), error!.description)
    }
}
