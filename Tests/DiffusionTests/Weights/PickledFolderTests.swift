import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// A diffusers folder whose VAE is `diffusion_pytorch_model.fp16.bin`, written by diffusers'
/// `save_pretrained(safe_serialization=False, variant="fp16")` (`make_pickled_folder_fixture.py`),
/// against the fixture folder it was made from.
final class PickledFolderTests: XCTestCase {
    private let folder = Fixture.url("models/tiny-sd15-pickled-vae")

    func testThePickledVAEHoldsTheSafetensorsBits() throws {
        let pickled = try Checkpoint(url: folder, options: LoadOptions(memoryMode: .fast, variant: "fp16"))
        let twin = try TinySD15Fixture.checkpoint(.diffusersFP16)
        XCTAssertEqual(pickled.fileURL(for: .vae).lastPathComponent, "diffusion_pytorch_model.fp16.bin")
        XCTAssertEqual(Set(pickled.keys), Set(twin.keys))
        let fromThePickle = pickled.keys.filter { pickled.storedLocation(of: $0)?.file.pathExtension == "bin" }
        let twinVAE = twin.keys.filter { twin.storedLocation(of: $0)?.file.deletingLastPathComponent().lastPathComponent == "vae" }
        XCTAssertEqual(Set(fromThePickle), Set(twinVAE))
        XCTAssertFalse(fromThePickle.isEmpty)
        for key in pickled.keys {
            XCTAssertEqual(try pickled.readTensor(key).map(\.bitPattern), try twin.readTensor(key).map(\.bitPattern), key)
        }
    }

    func testTheSameImageAsTheSafetensorsFolder() throws {
        let request = GenerationRequest(prompt: "a red fox in the snow", negativePrompt: "blurry", seed: 33, steps: 3,
                                        guidanceScale: 7.5, width: 64, height: 64, sampler: .euler)
        let pickled = try StableDiffusionPipeline(url: folder, options: LoadOptions(memoryMode: .fast, variant: "fp16"))
        let twin = try StableDiffusionPipeline(checkpoint: TinySD15Fixture.checkpoint(.diffusersFP16))
        let image = try pickled.generate(request)[0].image
        XCTAssertEqual(image.rgb, try twin.generate(request)[0].image.rgb)
        XCTAssertGreaterThan(Set(image.rgb).count, 50, "an image, not a flat colour")
    }

    /// With pickles off the folder is refused, naming the `.bin` and how to allow it.
    func testPicklesTurnedOffRefuseTheFolder() throws {
        let saved = PicklePolicy.current
        PicklePolicy.current = .refuse
        defer { PicklePolicy.current = saved }
        let bin = folder.appendingPathComponent("vae/diffusion_pytorch_model.fp16.bin").path
        let error = checkpointError { _ = try Checkpoint(url: folder) }
        XCTAssertEqual(error, .unreadablePickle(path: bin, underlying: .picklesRefused(path: bin)))
    }
}
