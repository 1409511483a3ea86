import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// The tiny fixture model as a `.ckpt` written by torch.save
/// (`torch.save({'state_dict': load_file('models/tiny-sd15.safetensors'), 'global_step': 840000}, path)`,
/// rebuilt byte for byte by `Fixture.tinySD15PickledCheckpoint`) against its safetensors twin: the
/// same keys and bits, the same component outputs (exactly, and within the usual tolerance of
/// diffusers), and the same image.
final class PickledCheckpointTests: XCTestCase {
    private func twins() throws -> (ckpt: Checkpoint, safetensors: Checkpoint) {
        let ckpt = try Fixture.tinySD15PickledCheckpoint(in: try makeWeightsTestDirectory(self))
        return (try Checkpoint(url: ckpt, options: LoadOptions(memoryMode: .fast)),
                try Checkpoint(url: Fixture.tinySD15SingleFile, options: LoadOptions(memoryMode: .fast)))
    }

    func testTheCkptHoldsWhatItsSafetensorsTwinHolds() throws {
        let (ckpt, safetensors) = try twins()
        XCTAssertEqual(ckpt.layout, .singleFile)
        XCTAssertEqual(ckpt.fileURL(for: .unet).lastPathComponent, "tiny-sd15.ckpt")
        XCTAssertEqual(ckpt.keys, safetensors.keys)
        XCTAssertEqual(ckpt.keys.count, 684 + 240 + 52)
        XCTAssertEqual(Set(ckpt.ignoredKeys), Set(safetensors.ignoredKeys))
        XCTAssertEqual(ckpt.unexpectedKeys(used: Set(ckpt.keys)), [])
        for key in ckpt.keys {
            XCTAssertEqual(ckpt.shape(of: key), safetensors.shape(of: key), key)
            XCTAssertEqual(try ckpt.readTensor(key).map(\.bitPattern), try safetensors.readTensor(key).map(\.bitPattern), key)
            XCTAssertEqual(ckpt.storedLocation(of: key)?.key, safetensors.storedLocation(of: key)?.key, key)
        }
    }

    /// Text encoder, UNet and VAE built over the `.ckpt` give exactly the safetensors twin's outputs,
    /// and so match diffusers as the single file does (`reference/components_fp16weights`, 1e-4 of the scale).
    func testTheComponentsMatchTheSafetensorsTwinAndDiffusers() throws {
        let (ckpt, safetensors) = try twins()
        let references = try TinySD15Fixture.references(for: .singleFile)
        let (unet, unetTwin) = (try TinySD15Fixture.unet(ckpt), try TinySD15Fixture.unet(safetensors))
        for name in TinySD15Fixture.unetCases {
            let sample = try references.tensor("unet/\(name)/sample")
            let timestep = try references.tensor("unet/\(name)/timestep").data[0]
            let context = try references.tensor("unet/\(name)/encoder_hidden_states")
            let out = unet(sample, timestep: timestep, context: context)
            XCTAssertEqual(out, unetTwin(sample, timestep: timestep, context: context), "UNet \(name)")
            assertParity(out, try references.tensor("unet/\(name)/out"), "UNet from the .ckpt, \(name)")
        }
        let (text, textTwin) = (try TinySD15Fixture.textEncoder(ckpt), try TinySD15Fixture.textEncoder(safetensors))
        let ids = try CLIPTokenizer.bundled().encode("a red fox in the snow", paddedTo: 77)
        XCTAssertEqual(text(tokens: ids), textTwin(tokens: ids))
        let (vae, vaeTwin) = (try TinySD15Fixture.vae(ckpt), try TinySD15Fixture.vae(safetensors))
        for name in TinySD15Fixture.vaeCases {
            let latents = try references.tensor("vae/\(name)/latents")
            XCTAssertEqual(try vae.decode(latents, cancellation: nil), try vaeTwin.decode(latents, cancellation: nil), "VAE \(name)")
        }
    }

    /// A whole generation: the pipeline of the fixture's fp16 diffusers folder (the same weights,
    /// bit for bit, with the configs a single file lacks) draws the same image with the models built
    /// over the `.ckpt`, over the safetensors single file, and over its own files.
    func testTheSameImageFromTheCkpt() throws {
        let (ckpt, safetensors) = try twins()
        let pipe = try StableDiffusionPipeline(checkpoint: TinySD15Fixture.checkpoint(.diffusersFP16))
        let request = GenerationRequest(prompt: "a red fox in the snow", negativePrompt: "blurry", seed: 33, steps: 4,
                                        guidanceScale: 7.5, width: 64, height: 64, sampler: .eulerAncestral)
        let own = try pipe.generate(request)[0].image
        var images: [PixelImage] = []
        for checkpoint in [ckpt, safetensors] {
            pipe.textEncoder = try TinySD15Fixture.textEncoder(checkpoint)
            pipe.unet = try TinySD15Fixture.unet(checkpoint)
            pipe.decoder = try TinySD15Fixture.vae(checkpoint)
            images.append(try pipe.generate(request)[0].image)
        }
        XCTAssertEqual(images[0].rgb, images[1].rgb, "the .ckpt's image is its safetensors twin's")
        XCTAssertEqual(images[0].rgb, own.rgb, "and the diffusers folder's")
        XCTAssertGreaterThan(Set(own.rgb).count, 50, "an image, not a flat colour")
    }

    /// With pickles turned off the `.ckpt` is refused before its pickle is read, saying how to allow
    /// it; a pickle outside the zip format is refused as before, never parsed.
    func testPicklesTurnedOffRefuseTheCkpt() throws {
        let ckpt = try Fixture.tinySD15PickledCheckpoint(in: try makeWeightsTestDirectory(self))
        let saved = PicklePolicy.current
        PicklePolicy.current = .refuse
        defer { PicklePolicy.current = saved }
        let error = checkpointError { _ = try Checkpoint(url: ckpt) }
        XCTAssertEqual(error, .unreadablePickle(path: ckpt.path, underlying: .picklesRefused(path: ckpt.path)))
        XCTAssertTrue(error!.description.contains("'set pickles on'"), error!.description)
        XCTAssertEqual(error!.description.components(separatedBy: ckpt.path).count - 1, 1, "the path once: \(error!)")
        XCTAssertNoThrow(try Checkpoint(url: Fixture.tinySD15SingleFile))
        PicklePolicy.current = .read
        XCTAssertNoThrow(try Checkpoint(url: ckpt))
    }

    /// A `.ckpt` found in a folder of its own, as a model folder can hold one.
    func testAFolderHoldingOneCkpt() throws {
        let dir = try makeWeightsTestDirectory(self)
        _ = try Fixture.tinySD15PickledCheckpoint(in: dir)
        let checkpoint = try Checkpoint(url: dir)
        XCTAssertEqual(checkpoint.fileURL(for: .vae).lastPathComponent, "tiny-sd15.ckpt")
    }
}
