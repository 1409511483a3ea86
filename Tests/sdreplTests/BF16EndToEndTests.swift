import Foundation
import Imaging
import TestSupport
import XCTest

/// `set precision` through the real binary on the tiny model. `SDREPL_BF16=off` stands for a CPU
/// without bf16; `SDREPL_BF16=emulate` computes bf16's rounding on any CPU, so the saved recipe,
/// `load` and the transcript's replay are checked here too.
final class BF16EndToEndTests: XCTestCase {
    private let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path

    private func pixels(_ path: String) throws -> [Float] {
        try PNGFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), path: path).image.pixels.map { Float($0) / 255 }
    }

    private func settings(_ path: String) throws -> [String: Any] {
        let stored = try ImageRecipeReader.read(URL(fileURLWithPath: path))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((stored.settingsJSON ?? "").utf8)) as? [String: Any])
    }

    /// make_fixtures.py's pipeline case euler_cfg_96, as REPL lines.
    private var euler96: String {
        """
        model \(model)
        prompt a lighthouse in a storm, oil painting
        negative ugly
        seed 0
        set size 96x96
        set steps 10
        set cfg 5
        set sampler euler
        set autosave off
        """
    }

    func testWithoutBF16TheSessionSaysSoAndRendersFP32() throws {
        let sandbox = Sandbox()
        sandbox.extraEnvironment["SDREPL_BF16"] = "off"
        sandbox.write("p.sdscript", euler96 + "\nset precision bf16\ngen\nsave plain.png\n")
        let run = try PipeRun(["run", "--keep-going", "p.sdscript"], in: sandbox)
        XCTAssertTrue(run.stderr.contains("p.sdscript:10: set precision: bf16 is not available here: bf16 is turned off (SDREPL_BF16=off); keeping fp32"),
                      run.stderr)
        let reference = try Fixture.tensors("pipeline/euler_cfg_96.safetensors").tensor("image").data
        assertClose(try pixels(sandbox.path + "/plain.png"), reference, tolerance: 1.0 / 255 + 1e-6, "fp32 kept: diffusers' pixels")
        XCTAssertNil(try settings(sandbox.path + "/plain.png")["precision"])
    }

    func testBF16IsSavedLoadedAndReplayed() throws {
        let sandbox = Sandbox()
        sandbox.extraEnvironment["SDREPL_BF16"] = "emulate"
        sandbox.write("b.sdscript", euler96 + """

            set precision bf16
            gen
            save bf16.png
            set precision fp32
            gen
            save fp32.png
            load bf16.png
            gen
            save again.png

            """)
        let run = try PipeRun(["run", "b.sdscript"], in: sandbox)
        XCTAssertEqual(run.status, 0, run.stderr)
        let bf16 = try pixels(sandbox.path + "/bf16.png")
        let fp32 = try pixels(sandbox.path + "/fp32.png")
        // bf16/manifest.json: diffusers' own bf16 run is 6.7/255 at most from its fp32 run in this case.
        let reference = try Fixture.tensors("pipeline/euler_cfg_96.safetensors").tensor("image").data
        assertClose(bf16, reference, tolerance: 1.5 * 6.725 / 255 + 0.5 / 255, "bf16 against diffusers' fp32")
        XCTAssertGreaterThan(maxAbsDifference(bf16, fp32), 1.0 / 255, "bf16 is another picture than fp32")
        XCTAssertEqual(try settings(sandbox.path + "/bf16.png")["precision"] as? String, "bf16")
        XCTAssertNil(try settings(sandbox.path + "/fp32.png")["precision"])
        XCTAssertEqual(try pixels(sandbox.path + "/again.png"), bf16, "load restores bf16")

        let oneShot = try PipeRun(["gen", "a lighthouse in a storm, oil painting", "--model", model, "--negative", "ugly", "--seed", "0",
                                   "--size", "96x96", "--steps", "10", "--cfg", "5", "--sampler", "euler", "--precision", "bf16",
                                   "-o", "one.png"], in: sandbox)
        XCTAssertEqual(oneShot.status, 0, oneShot.stderr)
        XCTAssertEqual(try pixels(sandbox.path + "/one.png"), bf16)
        let transcripts = sandbox.files(in: "sessions")
        let path = "sessions/" + (try XCTUnwrap(transcripts.last))
        let recorded = try String(contentsOfFile: sandbox.path + "/" + path, encoding: .utf8)
        let emulated = "# bf16 numerics: emulated (inputs rounded to bf16, OpenBLAS's fp32 sgemm)"
        XCTAssertTrue(recorded.contains("\n\(emulated)\nset precision bf16\n"), recorded)
        let check = try PipeRun(["run", "--check", path], in: sandbox)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stderr.contains("check: 1 image matched, 0 mismatched"), check.stderr)
        XCTAssertFalse(check.stderr.contains("bf16 products recorded"), check.stderr)

        // Recorded where oneDNN ran the products: a replay on the emulation says first that bf16
        // hashes are expected to differ.
        sandbox.write("onednn.sdscript", recorded.replacingOccurrences(of: emulated, with: "# bf16 numerics: oneDNN on AVX512_BF16"))
        let other = try PipeRun(["run", "--check", "onednn.sdscript"], in: sandbox)
        XCTAssertTrue(other.stderr.contains("check: bf16 products recorded oneDNN on AVX512_BF16, replayed emulated (inputs rounded to bf16, "
                                            + "OpenBLAS's fp32 sgemm): the hashes of bf16 images are expected to differ"), other.stderr)

        // The same transcript on a machine without bf16: refused at its line, not a silent fp32 picture.
        sandbox.extraEnvironment["SDREPL_BF16"] = "off"
        let elsewhere = try PipeRun(["run", "--check", path], in: sandbox)
        XCTAssertNotEqual(elsewhere.status, 0)
        XCTAssertTrue(elsewhere.stderr.contains("bf16 is not available here"), elsewhere.stderr)

        // Loading the bf16 picture there says what it cannot restore, as for any other part of a recipe.
        sandbox.write("l.sdscript", "load bf16.png\nshow\n")
        let loaded = try PipeRun(["run", "l.sdscript"], in: sandbox)
        XCTAssertTrue((loaded.stdout + loaded.stderr).contains("bf16 precision (bf16 is turned off (SDREPL_BF16=off); fp32 instead)"),
                      loaded.stdout + loaded.stderr)
    }
}
