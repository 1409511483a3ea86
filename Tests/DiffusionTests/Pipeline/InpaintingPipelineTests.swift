import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// Inpainting against diffusers' `StableDiffusionInpaintPipeline` on the tiny models: a 9-channel
/// UNet (`models/tiny-sd15-inpainting`) and the ordinary 4-channel one (diffusers' latent blend), for
/// every sampler; Pillow's Lanczos resize and A1111's mask blur. The Python lines are in
/// `inpaint/manifest.json`, written by `make_inpaint_fixtures.py`.
final class InpaintingPipelineTests: XCTestCase {
    private struct Manifest: Decodable {
        struct Case: Decodable { let model: String; let sampler: String; let strength: Double; let mask: String; let file: String }
        let prompt: String
        let negative_prompt: String
        let seed: UInt64
        let steps: Int
        let guidance: Float
        let cases: [Case]
        let resize: [String]
        let blur: [Int]
    }

    private static let nine = Result { try StableDiffusionPipeline(url: Fixture.url("models/tiny-sd15-inpainting"), options: LoadOptions(memoryMode: .fast)) }
    private static let four = Result { try StableDiffusionPipeline(url: Fixture.tinySD15Folder, options: LoadOptions(memoryMode: .fast)) }

    private func initImage() throws -> PixelImage { try TinySD15Fixture.initImage() }

    private func mask() throws -> InpaintMask {
        let values = try Fixture.tensors("inpaint/blur").tensor("mask")  // [64, 64] uint8, 255 repaints
        return InpaintMask(width: values.shape[1], height: values.shape[0], values: values.data.map { UInt8($0) })
    }

    func testNineChannelCheckpointIsRecognised() throws {
        XCTAssertTrue(try Self.nine.get().isInpaintingModel)
        XCTAssertFalse(try Self.four.get().isInpaintingModel)
    }

    func testEverySamplerMatchesDiffusersForBothUNetKinds() throws {
        let manifest = try Fixture.json(Manifest.self, "inpaint/manifest.json")
        XCTAssertEqual(Set(manifest.cases.filter { $0.model == "nine" }.map(\.sampler)), Set(Sampler.allCases.map(\.rawValue)))
        let image = try initImage(), mask = try mask()
        for c in manifest.cases {
            let pipe = try (c.model == "nine" ? Self.nine : Self.four).get()
            // diffusers' pixels: the mask binarised as given (no blur) and nothing pasted back.
            let request = GenerationRequest(prompt: manifest.prompt, negativePrompt: manifest.negative_prompt, seed: manifest.seed,
                                            steps: manifest.steps, guidanceScale: manifest.guidance, width: 64, height: 64,
                                            sampler: try Sampler(name: c.sampler), initImage: image, strength: c.strength,
                                            mask: c.mask == "white" ? .full(width: 64, height: 64) : mask, maskBlur: 0, inpaintPaste: false)
            let result = try pipe.generate(request)[0].image
            let expected = try Fixture.tensors("inpaint/\(c.file)").tensor("image")  // [H, W, 3] in [0, 1], float16
            // The bound: within 2/255 of diffusers' float image.
            assertClose(result.rgb.map { Float($0) / 255 }, expected.data, tolerance: 2.0 / 255, "\(c.file): pixels")
        }
    }

    func testInpaintingCheckpointWithoutInitImageIsDiffusersWithAFullMask() throws {
        // diffusers with a white mask at strength 1 never looks at the picture: its masked image is black.
        let manifest = try Fixture.json(Manifest.self, "inpaint/manifest.json")
        let pipe = try Self.nine.get()
        let request = GenerationRequest(prompt: manifest.prompt, negativePrompt: manifest.negative_prompt, seed: manifest.seed,
                                        steps: manifest.steps, guidanceScale: manifest.guidance, width: 64, height: 64,
                                        sampler: .ddim, inpaintPaste: false)
        let result = try pipe.generate(request)[0].image
        let expected = try Fixture.tensors("inpaint/nine_ddim_1.0_white.safetensors").tensor("image")
        assertClose(result.rgb.map { Float($0) / 255 }, expected.data, tolerance: 2.0 / 255, "text to image on an inpainting checkpoint")
    }

    /// A hires fix on an inpainting checkpoint: its second pass gives the UNet the full mask and
    /// black masked image text to image gives it (A1111's image conditioning without a mask), by
    /// either kind of upscaler. It used to feed the 9-channel UNet 4 channels and stop the process.
    func testAHiresFixOnAnInpaintingCheckpointRuns() throws {
        let pipe = try Self.nine.get()
        for upscaler in [HiresUpscaler.latent, .lanczos] {
            let request = GenerationRequest(prompt: "a lighthouse", seed: 3, steps: 2, width: 64, height: 64, sampler: .ddim,
                                            hires: HiresFix(width: 96, height: 128, steps: 1, strength: 0.6, upscaler: upscaler))
            let first = try pipe.generate(request)[0].image
            XCTAssertEqual([first.width, first.height], [96, 128], "\(upscaler)")
            XCTAssertEqual(try pipe.generate(request)[0].image.rgb, first.rgb, "\(upscaler): the same seed, the same picture")
            var plain = request
            plain.hires = nil
            let base = try pipe.generate(plain)[0].image
            XCTAssertNotEqual(first.rgb, base.resized(width: 96, height: 128).rgb, "\(upscaler): the second pass repainted")
        }
    }

    func testPasteKeepsTheOriginalOutsideTheBlurredMask() throws {
        let pipe = try Self.four.get()
        let image = try initImage(), mask = try mask()
        var request = GenerationRequest(prompt: "a fox", seed: 3, steps: 3, guidanceScale: 4, width: 64, height: 64,
                                        sampler: .euler, initImage: image, strength: 0.75, mask: mask, maskBlur: 4, inpaintPaste: true)
        let pasted = try pipe.generate(request)[0].image
        request.inpaintPaste = false
        let raw = try pipe.generate(request)[0].image
        let blurred = mask.blurred(radius: 4)
        var checked = 0
        for i in 0..<(64 * 64) {
            for c in 0..<3 {
                let k = i * 3 + c
                switch blurred.values[i] {
                case 0: XCTAssertEqual(pasted.rgb[k], image.rgb[k], "kept pixel \(i)"); checked += 1
                case 255: XCTAssertEqual(pasted.rgb[k], raw.rgb[k], "repainted pixel \(i)")
                default:
                    let (lo, hi) = (min(image.rgb[k], raw.rgb[k]), max(image.rgb[k], raw.rgb[k]))
                    XCTAssertTrue((lo...hi).contains(pasted.rgb[k]), "edge pixel \(i) mixes the two")
                }
            }
        }
        XCTAssertGreaterThan(checked, 1000, "the mask keeps most of the picture")
        XCTAssertNotEqual(pasted, raw)
    }

    func testLanczosResizeIsPillows() throws {
        let manifest = try Fixture.json(Manifest.self, "inpaint/manifest.json")
        let reference = try Fixture.tensors("inpaint/resize")
        let image = try initImage()
        for size in manifest.resize {
            let parts = size.split(separator: "x").compactMap { Int($0) }
            let expected = try reference.tensor(size)  // [h, w, 3] uint8: Image.resize((w, h), Image.LANCZOS)
            let resized = image.resized(width: parts[0], height: parts[1])
            // Pillow's own fixed-point arithmetic: the same bytes.
            XCTAssertEqual(resized.rgb.map(Float.init), expected.data, size)
        }
    }

    func testMaskBlurIsA1111s() throws {
        let manifest = try Fixture.json(Manifest.self, "inpaint/manifest.json")
        let reference = try Fixture.tensors("inpaint/blur")
        let mask = try mask()
        for radius in manifest.blur {
            let expected = try reference.tensor("r\(radius)")  // cv2.GaussianBlur across, then down
            // OpenCV's fixed-point arithmetic: the same levels.
            XCTAssertEqual(mask.blurred(radius: radius).values.map(Float.init), expected.data, "blur \(radius)")
        }
    }

    func testBadInpaintingRequestsAreRefused() throws {
        let pipe = try Self.four.get()
        let image = try initImage()
        var request = GenerationRequest(prompt: "x", seed: 1, steps: 2, width: 64, height: 64,
                                        mask: InpaintMask.full(width: 64, height: 64))
        XCTAssertThrowsError(try pipe.generate(request)) {
            XCTAssertEqual($0 as? PipelineError, .invalidRequest("a mask needs an init image to repaint: set one with 'init FILE' or 'init N'"))
        }
        request.initImage = image
        request.mask = InpaintMask(width: 64, height: 64, values: [UInt8](repeating: 0, count: 64 * 64))
        XCTAssertThrowsError(try pipe.generate(request)) {
            XCTAssertEqual($0 as? PipelineError, .invalidRequest("the mask is all black: nothing to repaint (white marks what is repainted)"))
        }
        request.mask = InpaintMask.full(width: 32, height: 64)
        XCTAssertThrowsError(try pipe.generate(request)) {
            XCTAssertEqual($0 as? PipelineError, .invalidRequest("the mask is 32x64 but the request is 64x64: resize it first"))
        }
        request.mask = InpaintMask.full(width: 64, height: 64)
        request.maskBlur = 65
        XCTAssertThrowsError(try pipe.generate(request)) {
            XCTAssertEqual($0 as? PipelineError, .invalidRequest("mask blur 65 is not allowed: use 0 to 64 pixels (4 is A1111's default)"))
        }
    }
}
