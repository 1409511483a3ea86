import Foundation
import Imaging
import TestSupport
import XCTest

/// `set deepcache N` through the real binary on the tiny model, against the paper's
/// `DeepCacheSDHelper` on diffusers (`deepcache/manifest.json` holds the Python): the picture, the
/// saved recipe, `load`, and the transcript's replay.
final class DeepCacheEndToEndTests: XCTestCase {
    private let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path

    private func pixels(_ path: String) throws -> [Float] {
        try PNGFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), path: path).image.pixels.map { Float($0) / 255 }
    }

    private func settings(_ stored: StoredRecipe) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((stored.settingsJSON ?? "").utf8)) as? [String: Any])
    }

    func testDeepCacheIsSavedLoadedAndReplayed() throws {
        let sandbox = Sandbox()
        sandbox.write("d.sdscript", """
            model \(model)
            prompt a red fox in the snow
            negative blurry
            seed 21
            set size 64x64
            set steps 10
            set cfg 4
            set sampler dpmpp-2m
            set autosave off
            set deepcache 3
            gen
            save cached.png
            set deepcache off
            gen
            save plain.png
            load cached.png
            gen
            save again.png
            set deepcache 1
            set deepcache fast

            """)
        let session = try PipeRun(["run", "--keep-going", "d.sdscript"], in: sandbox)
        // make_deepcache_fixtures.py's case dpmpp-2m_3: the helper with cache_interval=3 on diffusers.
        let cached = try pixels(sandbox.path + "/cached.png")
        assertClose(cached, try Fixture.tensors("deepcache/dpmpp-2m_3.safetensors").tensor("image").data,
                    tolerance: 2.0 / 255, "set deepcache 3 through the REPL")
        XCTAssertGreaterThan(maxAbsDifference(cached, try pixels(sandbox.path + "/plain.png")), 10.0 / 255, "off is another picture")

        let stored = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/cached.png"))
        XCTAssertEqual(stored.recipe.extra("DeepCache"), "3")
        XCTAssertEqual(try settings(stored)["deepcache"] as? Int, 3)
        let plain = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/plain.png"))
        XCTAssertNil(plain.recipe.extra("DeepCache"))
        XCTAssertNil(try settings(plain)["deepcache"])
        // `load` restores the interval (and does not call it something gen will not reproduce).
        XCTAssertEqual(try pixels(sandbox.path + "/again.png"), cached, "load restores DeepCache")
        XCTAssertFalse(session.stderr.contains("will not reproduce"), session.stderr)

        for line in ["d.sdscript:19: set deepcache: an interval of 1 runs every step whole and caches nothing: use 2 or more (3 is usual) or off, got '1'",
                     "d.sdscript:20: set deepcache: expected an interval from 2 to 1000 (3 is usual), or off, got 'fast'"] {
            XCTAssertTrue(session.stderr.contains(line), "\(line)\n\(session.stderr)")
        }

        // The one-shot form records a transcript, which replays the same picture.
        let oneShot = try PipeRun(["gen", "a red fox in the snow", "--model", model, "--negative", "blurry", "--seed", "21",
                                   "--size", "64x64", "--steps", "10", "--cfg", "4", "--sampler", "dpmpp-2m", "--deepcache", "3",
                                   "-o", "one.png"], in: sandbox)
        XCTAssertEqual(oneShot.status, 0, oneShot.stderr)
        XCTAssertEqual(try pixels(sandbox.path + "/one.png"), cached)
        let transcripts = sandbox.files(in: "sessions")
        XCTAssertEqual(transcripts.count, 1)
        let path = "sessions/" + (transcripts.first ?? "")
        XCTAssertTrue(try String(contentsOfFile: sandbox.path + "/" + path, encoding: .utf8).contains("\nset deepcache 3\n"))
        let check = try PipeRun(["run", "--check", path], in: sandbox)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stderr.contains("check: 1 image matched, 0 mismatched"), check.stderr)
    }
}
