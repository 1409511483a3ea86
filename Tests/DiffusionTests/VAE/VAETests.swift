import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// The VAE decoder against diffusers 0.42.1's `AutoencoderKL.decode` on the tiny fixture model, for
/// a square 8×8 and a non-square 6×10 latent (64×64 and 48×80 pixels).
///
/// Tolerance: max abs err ≤ 1e-4 × max |reference| per case.
final class VAETests: XCTestCase {
    func testMatchesDiffusersFromDiffusersFP32() throws { try checkParity(.diffusersFP32) }
    func testMatchesDiffusersFromDiffusersFP16() throws { try checkParity(.diffusersFP16) }
    func testMatchesDiffusersFromSingleFile() throws { try checkParity(.singleFile) }

    /// Every 3×3 stride-1 convolution through Winograd F(4×4, 3×3), as at full size, where the
    /// decoder's maps all pass `conv2d`'s threshold; here only the last levels would by themselves.
    func testMatchesDiffusersWithWinogradConvolutions() throws {
        let saved = Tensor.winogradMinTiles
        Tensor.winogradMinTiles = 1
        defer { Tensor.winogradMinTiles = saved }
        try checkParity(.diffusersFP32)
    }

    private func checkParity(_ form: TinySD15Fixture.Form) throws {
        let vae = try TinySD15Fixture.vae(TinySD15Fixture.checkpoint(form))
        let references = try TinySD15Fixture.references(for: form)
        for name in TinySD15Fixture.vaeCases {
            let latents = try references.tensor("vae/\(name)/latents")
            // vae.decode(latents / 0.18215).sample: decode() divides by the scaling factor itself.
            assertParity(vae.decode(latents), try references.tensor("vae/\(name)/decoded"),
                         "VAE \(form.rawValue) \(name) \(latents.shape)")
        }
    }

    /// Latents are divided by `scaling_factor` before decoding: decoding `x` must equal decoding
    /// `x · 2` with a config whose factor is doubled.
    func testDecodeDividesByTheScalingFactor() throws {
        let checkpoint = try TinySD15Fixture.checkpoint(.diffusersFP32)
        let vae = try TinySD15Fixture.vae(checkpoint)
        var config = vae.config
        config.scalingFactor *= 2
        let doubled = try AutoencoderDecoder(config: config, weights: checkpoint.weights(for: .vae))
        let latents = try TinySD15Fixture.references(for: .diffusersFP32).tensor("vae/square/latents")
        assertParity(doubled.decode(latents * 2), vae.decode(latents), relativeTolerance: 1e-6, "VAE scaling factor")
    }
}
