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
        let read = try DraftPreset(text: preset.words)
        XCTAssertEqual(read.words, preset.words)
        XCTAssertEqual(read.vae, preset.vae)
    }

    /// Each value runs to the next ` KEY=`: a LoRA name with blanks (and colons) reads back, and a
    /// key after `vae=` is a key, not part of the path.
    func testValuesRunToTheNextKey() throws {
        let read = try DraftPreset(text: "lora=LCM LoRA: SD15:0.5 vae=/a b/taesd eta=0.5 sampler=tcd")
        XCTAssertEqual(read.lora, "LCM LoRA: SD15")
        XCTAssertEqual(read.weight, 0.5)
        XCTAssertEqual(read.vae, "/a b/taesd")
        XCTAssertEqual(read.sampler, .tcd)
        XCTAssertEqual(read.eta, 0.5)
        XCTAssertEqual(try DraftPreset(text: read.words), read)
        XCTAssertEqual(try DraftPreset(text: "lora=plain").weight, 1)
        XCTAssertEqual(try DraftPreset(text: "lora=plain vae=NONE").vae, DraftPreset.modelVAE)
    }

    /// A prompt with the draft LoRA's tag already keeps it, at its own weight; another LoRA's tag
    /// does not count.
    func testTheTagIsAddedOnlyWhenThePromptLacksIt() throws {
        let preset = try DraftPreset(text: "lora=lcm-lora-sdv1-5:1")
        XCTAssertTrue(preset.isTagged(in: "a fox <lora:lcm-lora-sdv1-5:0.5>"))
        XCTAssertTrue(preset.isTagged(in: "a fox <lora:lcm-lora-sdv1-5>"))
        XCTAssertFalse(preset.isTagged(in: "a fox <lora:lcm-lora-sdv1-5-extra:1>"))
        XCTAssertFalse(preset.isTagged(in: "a fox"))
    }
}
