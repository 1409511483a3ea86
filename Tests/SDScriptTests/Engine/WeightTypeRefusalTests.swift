import Diffusion
import Foundation
import TestSupport
import XCTest
@testable import SDScript

/// Weights files stored as F8 or integers, through the session on the real engine: each is refused
/// in one line when it is named, and nothing that comes from a file stops the process (an F8 weight
/// used to reach the fatal error of a read "after validation").
final class WeightTypeRefusalTests: XCTestCase {
    private func engineSession(_ io: BufferIO = BufferIO()) -> Session {
        Session(components: Components(generatorLoader: PipelineLoader(), models: FixedModelCatalog(),
                                       styles: StyleBook(environment: [:]), saver: nil), io: io)
    }

    /// `set vae` refuses an F8 TAESD and an int8 VAE at once, naming the tensor and its type, and
    /// keeps the decoder in use, which the next `gen` uses.
    func testSetVAERefusesADecoderStoredAsF8OrIntegersAndKeepsTheOneInUse() throws {
        let folder = TemporaryFolder()
        let taesd = Fixture.url("taesd/taesd_decoder.safetensors")
        let f8 = try writeRetyped(try SafetensorsFile(url: taesd), to: URL(fileURLWithPath: folder.path + "/taesd_f8_decoder.safetensors")) { _ in .f8e4m3 }
        let vae = try SafetensorsFile(url: Fixture.tinySD15Folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"))
        let int8 = try writeRetyped(vae, to: URL(fileURLWithPath: folder.path + "/int8-vae.safetensors")) { _ in .i8 }
        let session = engineSession()
        // The model is loaded first, so that the VAE file is checked against its VAE's sizes.
        for line in ["model \(Fixture.tinySD15Folder.path)", "prompt a fox", "seed 1", "set size 64x64", "set steps 1", "gen",
                     "set vae \(taesd.path)"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        for (file, dtype) in [(f8, "F8_E4M3"), (int8, "I8")] {
            let failure = try XCTUnwrap(session.execute("set vae \(file.path)").failure, "\(file.lastPathComponent) was accepted").description
            XCTAssertTrue(failure.hasPrefix("set vae: tensor '"), failure)
            XCTAssertTrue(failure.contains("' in \(file.path) is \(dtype) ("), failure)
            XCTAssertTrue(failure.hasSuffix("; the VAE in use is kept"), failure)
            XCTAssertFalse(failure.contains("\n"), failure)
            XCTAssertEqual(session.settings.resources.vae, taesd.path)
        }
        XCTAssertEqual(session.execute("gen"), .ok)
        XCTAssertEqual(session.images.last?.decoder, "TAESD")
    }

    /// A LoRA stored as F8 fails its `gen` with one line naming the tensor and its type; the session
    /// goes on, and the next `gen` without it draws.
    func testAnF8LoRAFailsItsGenAndTheSessionGoesOn() throws {
        let folder = TemporaryFolder()
        let f8 = try writeRetyped(try SafetensorsFile(url: Fixture.url("lora/tiny-lora.safetensors")),
                                  to: URL(fileURLWithPath: folder.path + "/f8.safetensors")) { $0.name.hasSuffix(".weight") ? .f8e4m3 : nil }
        let session = engineSession()
        for line in ["model \(Fixture.tinySD15Folder.path)", "set lora-dir \(folder.path)", "prompt a fox <lora:f8:1>", "seed 1",
                     "set size 64x64", "set steps 1"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        let failure = try XCTUnwrap(session.execute("gen").failure, "the F8 LoRA was applied").description
        XCTAssertTrue(failure.hasPrefix("gen: tensor 'lora_"), failure)
        XCTAssertTrue(failure.contains("' in \(f8.path) is F8_E4M3 (a float type sdrepl cannot read)"), failure)
        XCTAssertFalse(failure.contains("\n"), failure)
        XCTAssertEqual(session.execute("prompt a fox"), .ok)
        XCTAssertEqual(session.execute("gen"), .ok)
        XCTAssertEqual(session.images.count, 1)
    }

    /// A TAESD for live previews that cannot be read (an F8 `taesd_decoder.safetensors` lying in
    /// `models/VAE-taesd`, which the user never chose) leaves the latent projection: the image is made.
    func testAPreviewTAESDStoredAsF8LeavesTheLatentProjection() throws {
        let folder = TemporaryFolder()
        let f8 = try writeRetyped(try SafetensorsFile(url: Fixture.url("taesd/taesd_decoder.safetensors")),
                                  to: URL(fileURLWithPath: folder.path + "/taesd_decoder.safetensors")) { _ in .f8e4m3 }
        let session = engineSession()
        XCTAssertEqual(session.execute("model \(Fixture.tinySD15Folder.path)"), .ok)
        let generator = try session.loadedGenerator()
        let request = GenerationRequest(prompt: "a fox", seed: 1, steps: 2, width: 64, height: 64, sampler: .euler)
        func previews(_ taesd: URL) throws -> [(width: Int?, decoded: Bool)] {
            var seen: [(width: Int?, decoded: Bool)] = []
            var images = 0
            try generator.generate(request, folders: ResourceFolders(previewDecoder: taesd), progress: { seen.append(($0.preview?.width, $0.previewIsDecoded)) },
                                   isCancelled: { false }, image: { _ in images += 1 })
            XCTAssertEqual(images, 1)
            return seen.filter { $0.width != nil }
        }
        let fallback = try previews(f8)
        XCTAssertFalse(fallback.isEmpty)
        XCTAssertTrue(fallback.allSatisfy { $0.width == 8 && !$0.decoded }, "one pixel per latent: \(fallback)")
        // The same place with a TAESD that reads decodes the previews at full size.
        XCTAssertTrue(try previews(Fixture.url("taesd/taesd_decoder.safetensors")).contains { $0.width == 64 && $0.decoded })
    }
}
