import Diffusion
import Foundation
import XCTest
@testable import SDScript

/// The explicit draft settings the transcript records read back as written.
final class DraftPresetTests: XCTestCase {
    func testTheRecordedWordsReadBackAndAVAEPathMayHoldBlanks() throws {
        let preset = DraftPreset(lora: "lcm-lora-sdv1-5", sampler: .lcm, steps: 4, cfg: 1, spacing: .trailing,
                                 vae: "/home/a b/models/VAE-taesd/taesd_decoder.safetensors")
        XCTAssertEqual(preset.words, "lora=lcm-lora-sdv1-5:1 sampler=lcm steps=4 cfg=1 spacing=trailing "
                       + "vae=/home/a b/models/VAE-taesd/taesd_decoder.safetensors")
        let read = try DraftPreset(words: preset.words.split(separator: " ").map(String.init))
        XCTAssertEqual(read.words, preset.words)
        XCTAssertEqual(read.vae, preset.vae)
    }
}
