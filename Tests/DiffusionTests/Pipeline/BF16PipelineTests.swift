import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// The pipeline with bf16 matrix products against diffusers' fp32 images: no farther from them than
/// diffusers' own bf16 run is (`Tests/Fixtures/bf16/manifest.json`, made by `make_bf16_fixtures.py`:
/// `pipe.to(torch.bfloat16)`, the same calls, `np.abs(bf16 - fp32).mean()` and `.max()`).
final class BF16PipelineTests: XCTestCase {
    struct Distance: Decodable {
        let name: String
        let mean_abs: Float
        let max_abs: Float
    }

    struct Manifest: Decodable {
        struct Overall: Decodable { let mean_abs: Float; let max_abs: Float }
        let overall: Overall
        let cases: [Distance]
    }

    /// Where this CPU has bf16 the test runs oneDNN; elsewhere the emulation, which rounds the same
    /// inputs and sums in fp32 as the bf16 instructions do.
    func testBF16ImagesAreNoFartherFromDiffusersFP32ThanItsOwnBF16() throws {
        let saved = BF16Support.detected
        if BF16Support.backend == nil { BF16Support.detected = .success(.emulated) }
        defer { BF16Support.detected = saved }
        let parity = PipelineTests(name: "bf16 helpers", testClosure: { _ in })
        let pipe = try parity.pipeline()
        let manifest = try Fixture.json(Manifest.self, "bf16/manifest.json")
        let cases = try parity.cases()
        XCTAssertEqual(Set(manifest.cases.map(\.name)), Set(cases.map(\.name)), "a distance for every pipeline fixture")
        var means: [Float] = []
        var maxima: [Float] = []
        for c in cases {
            let diffusers = try XCTUnwrap(manifest.cases.first { $0.name == c.name })
            let expected = try Fixture.tensors("pipeline/\(c.file)").tensor("image").data
            var request = try parity.request(c)
            let fp32 = try pipe.generate(request)[0].image
            request.precision = .bf16
            let bf16 = try pipe.generate(request)[0].image
            XCTAssertNotEqual(bf16.rgb, fp32.rgb, "\(c.name): bf16 changed the picture, so it ran")
            let ours = parity.pixels(bf16)
            let distances = zip(ours, expected).map { abs($0 - $1) }
            let mean = distances.reduce(0, +) / Float(distances.count)
            let maximum = distances.max() ?? 0
            means.append(mean)
            maxima.append(maximum)
            // Our bytes round diffusers' floats, which alone is up to 0.5/255 away: allowed on top.
            XCTAssertLessThanOrEqual(mean, 1.5 * diffusers.mean_abs + 0.5 / 255, "\(c.name): mean |sdrepl bf16 - diffusers fp32|")
            XCTAssertLessThanOrEqual(maximum, 1.5 * diffusers.max_abs + 0.5 / 255, "\(c.name): max |sdrepl bf16 - diffusers fp32|")
            print(String(format: "bf16 %@: mean %.3f/255 (diffusers' bf16 %.3f), max %.1f/255 (%.1f)", c.name,
                         mean * 255, diffusers.mean_abs * 255, maximum * 255, diffusers.max_abs * 255))
        }
        let mean = means.reduce(0, +) / Float(means.count)
        XCTAssertLessThanOrEqual(mean, 1.5 * manifest.overall.mean_abs, "mean over the fixtures")
        XCTAssertLessThanOrEqual(maxima.max() ?? 0, 1.5 * manifest.overall.max_abs, "max over the fixtures")
    }

    /// fp32 stays a request's default; a bf16 request where the machine has none fails validation
    /// (which `prepare` runs before any work), saying why.
    func testBF16IsRefusedWhereThisMachineHasNone() throws {
        let saved = BF16Support.detected
        BF16Support.detected = .failure(.init(description: "this CPU has no bf16 instructions (AVX512_BF16 or AMX)"))
        defer { BF16Support.detected = saved }
        var request = GenerationRequest(prompt: "a fox", seed: 1, steps: 2, width: 64, height: 64)
        XCTAssertEqual(request.precision, .fp32)
        request.precision = .bf16
        XCTAssertThrowsError(try request.validate()) { error in
            XCTAssertEqual(error as? PipelineError,
                           .invalidRequest("bf16 is not available here: this CPU has no bf16 instructions (AVX512_BF16 or AMX); use fp32"))
        }
    }
}
