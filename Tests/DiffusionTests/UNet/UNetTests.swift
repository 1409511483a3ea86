import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// The UNet against diffusers 0.42.1's `UNet2DConditionModel` on the tiny fixture model:
/// a batch of 2 at t = 999, t = 1, a fractional t = 749.25, a non-square 16×24 latent and an odd
/// 14×10 latent (14 → 7 → 4 → 2 on the way down, so the upsamplers must restore 2 → 4 → 7 → 14
/// rather than double).
///
/// Tolerance: max abs err ≤ 1e-4 × max |reference| per case.
final class UNetTests: XCTestCase {
    func testMatchesDiffusersFromDiffusersFP32() throws { try checkParity(.diffusersFP32) }
    func testMatchesDiffusersFromDiffusersFP16() throws { try checkParity(.diffusersFP16) }
    func testMatchesDiffusersFromSingleFile() throws { try checkParity(.singleFile) }

    /// The fixture's maps are too small for `conv2d` to pick Winograd by itself (it needs 32 tiles
    /// of 4×4), so this runs every 3×3 stride-1 convolution through F(4×4, 3×3), as the full-size
    /// model's 64×64, 32×32 and 16×16 levels do, within the same tolerance.
    func testMatchesDiffusersWithWinogradConvolutions() throws {
        let saved = Tensor.winogradMinTiles
        Tensor.winogradMinTiles = 1
        defer { Tensor.winogradMinTiles = saved }
        try checkParity(.diffusersFP32)
    }

    private func checkParity(_ form: TinySD15Fixture.Form) throws {
        let unet = try TinySD15Fixture.unet(TinySD15Fixture.checkpoint(form))
        let references = try TinySD15Fixture.references(for: form)
        for name in TinySD15Fixture.unetCases {
            let sample = try references.tensor("unet/\(name)/sample")
            let timestep = try references.tensor("unet/\(name)/timestep").data[0]
            let context = try references.tensor("unet/\(name)/encoder_hidden_states")
            // unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample
            assertParity(unet(sample, timestep: timestep, context: context), try references.tensor("unet/\(name)/out"),
                         "UNet \(form.rawValue) \(name) \(sample.shape)")
        }
    }

    /// Image sizes that are multiples of 8 pixels but not of 64 give latents that downsampling
    /// rounds up; the output keeps the input's size for each of them.
    func testOutputKeepsTheInputSizeForOddLatents() throws {
        let unet = try TinySD15Fixture.unet(TinySD15Fixture.checkpoint(.diffusersFP32))
        let context = Tensor(shape: [1, 77, 8], repeating: 0.1)
        for (height, width) in [(12, 12), (9, 13), (1, 1), (3, 5)] {  // 96 px (12 → 6 → 3 → 2), 72×104 px, ...
            let latents = Tensor(shape: [1, 4, height, width], repeating: 0.5)
            let out = unet(latents, timestep: 500, context: context)
            XCTAssertEqual(out.shape, [1, 4, height, width])
            XCTAssertTrue(out.data.allSatisfy(\.isFinite))
        }
    }

    /// A cancel that comes inside the last level's attention, after the UNet's last check between
    /// blocks, stops that attention early; the call must then throw rather than return the
    /// unfinished prediction. The calls of the watched condition are counted in a clean run first:
    /// the last one is the check after the UNet, the one before it a poll of the last attention.
    func testACancelInsideTheLastAttentionThrowsInsteadOfReturningItsOutput() throws {
        let unet = try TinySD15Fixture.unet(TinySD15Fixture.checkpoint(.diffusersFP32))
        let references = try TinySD15Fixture.references(for: .diffusersFP32)
        let latents = try references.tensor("unet/square/sample"), context = try references.tensor("unet/square/encoder_hidden_states")
        final class Calls: @unchecked Sendable {
            let lock = NSLock(); var count = 0
            func next() -> Int { lock.lock(); defer { lock.unlock() }; count += 1; return count }
        }
        let clean = Calls(), token = CancellationToken()
        let whole = try token.watching({ _ = clean.next(); return false }) {
            try unet(latents, timestep: 500, context: context, cancellation: token)
        }
        XCTAssertEqual(whole.data, unet(latents, timestep: 500, context: context).data, "nothing cancelled: the whole prediction")
        let blockChecks = unet.downBlocks.count + 1 + unet.upBlocks.count
        XCTAssertGreaterThan(clean.count, blockChecks + 1, "the attentions poll the token besides the checks between blocks")

        let calls = Calls(), cancelled = CancellationToken()
        XCTAssertThrowsError(try cancelled.watching({ calls.next() >= clean.count - 1 }) {
            try unet(latents, timestep: 500, context: context, cancellation: cancelled)
        }) { error in
            XCTAssertEqual(error as? PipelineError, .cancelled)
        }
    }
}
