import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// VAE tiling against diffusers' `pipe.vae.enable_tiling()` on the tiny model at 128×128
/// (`make_vae_tiling_fixtures.py`; `vae_tiling/manifest.json` holds the Python): 3 × 3 tiles of
/// 8 latents / 64 pixels in both the decoder and the encoder.
final class VAETilingTests: XCTestCase {
    private struct Manifest: Decodable {
        let prompt: String, negative_prompt: String, seed: UInt64, steps: Int, guidance: Float, strength: Double, size: Int
    }

    private static let pipeline = Result { try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast)) }

    private func request(_ m: Manifest, tiled: Bool, initImage: PixelImage? = nil) -> GenerationRequest {
        GenerationRequest(prompt: m.prompt, negativePrompt: m.negative_prompt, seed: m.seed, steps: m.steps, guidanceScale: m.guidance,
                          width: m.size, height: m.size, sampler: .euler, initImage: initImage, strength: m.strength, vaeTiling: tiled)
    }

    /// `make_vae_tiling_fixtures.init_image()`: gradients, a disc and a checker.
    private func initImage(size: Int) -> PixelImage {
        var rgb: [UInt8] = []
        for y in 0..<size {
            for x in 0..<size {
                let disc = (x - 64) * (x - 64) + (y - 56) * (y - 56) < 30 * 30
                rgb += [UInt8(x * 2 % 256), UInt8(y * 2 % 256), UInt8(disc ? 230 : ((x / 16 + y / 16) % 2) * 120 + 40)]
            }
        }
        return PixelImage(width: size, height: size, rgb: rgb)
    }

    private func maxDifference(_ a: [UInt8], _ b: [Float]) -> Float {
        zip(a, b).map { abs(Float($0) / 255 - $1) }.max() ?? 0
    }

    func testTiledTextToImageMatchesDiffusers() throws {
        let pipe = try Self.pipeline.get()
        let m = try Fixture.json(Manifest.self, "vae_tiling/manifest.json")
        let expected = try Fixture.tensors("vae_tiling/txt2img.safetensors").tensor("image").data  // [128, 128, 3] in [0, 1]
        let tiled = try pipe.generate(request(m, tiled: true))[0].image
        assertClose(tiled.rgb.map { Float($0) / 255 }, expected, tolerance: 2.0 / 255, "tiled decode")
        // The same latents decoded whole differ visibly, so the tiles are what matched.
        let whole = try pipe.generate(request(m, tiled: false))[0].image
        XCTAssertGreaterThan(maxDifference(whole.rgb, expected), 4.0 / 255)
    }

    func testTiledImageToImageMatchesDiffusers() throws {
        let pipe = try Self.pipeline.get()
        let m = try Fixture.json(Manifest.self, "vae_tiling/manifest.json")
        let expected = try Fixture.tensors("vae_tiling/img2img.safetensors").tensor("image").data
        let image = try pipe.generate(request(m, tiled: true, initImage: initImage(size: m.size)))[0].image
        assertClose(image.rgb.map { Float($0) / 255 }, expected, tolerance: 2.0 / 255, "tiled encode and decode")
    }

    /// Up to the VAE's sample size nothing is tiled: the pixels are the untiled ones, bit for bit.
    func testSmallImagesAreNotTiled() throws {
        let pipe = try Self.pipeline.get()
        var small = GenerationRequest(prompt: "a red fox", seed: 3, steps: 2, width: 64, height: 64, sampler: .euler)
        let whole = try pipe.generate(small)[0].image
        small.vaeTiling = true
        XCTAssertEqual(try pipe.generate(small)[0].image.rgb, whole.rgb)
    }
}
