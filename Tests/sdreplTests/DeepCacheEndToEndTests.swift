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

    func testDeepCacheIsSavedLoadedAndReplayed() throws {
        let sandbox = Sandbox()
        let session = try PipeRun([], stdin: """
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

            """, in: sandbox)
        // make_deepcache_fixtures.py's case dpmpp-2m_3: the helper with cache_interval=3 on diffusers.
        let cached = try pixels(sandbox.path + "/cached.png")
        assertClose(cached, try Fixture.tensors("deepcache/dpmpp-2m_3.safetensors").tensor("image").data,
                    tolerance: 2.0 / 255, "set deepcache 3 through the REPL")
        XCTAssertGreaterThan(maxAbsDifference(cached, try pixels(sandbox.path + "/plain.png")), 10.0 / 255, "off is another picture")

        let stored = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/cached.png"))
        XCTAssertEqual(stored.recipe.extra("DeepCache"), "3")
        let own = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((stored.settingsJSON ?? "").utf8)) as? [String: Any])
        XCTAssertEqual(own["deepcache"] as? Int, 3)
        let plain = try ImageRecipeReader.read(URL(fileURLWithPath: sandbox.path + "/plain.png"))
        XCTAssertNil(plain.recipe.extra("DeepCache"))
        XCTAssertFalse(plain.settingsJSON?.contains("deepcache") ?? true)
        // `load` restores the interval (and does not call it something gen will not reproduce).
        XCTAssertEqual(try pixels(sandbox.path + "/again.png"), cached, "load restores DeepCache")
        XCTAssertFalse(session.stderr.contains("will not reproduce"), session.stderr)

        for line in ["set deepcache: an interval of 1 runs every step whole and caches nothing: use 2 or more (3 is usual) or off, got '1'",
                     "set deepcache: expected an interval from 2 to 1000 (3 is usual), or off, got 'fast'"] {
            XCTAssertTrue(session.stderr.contains(line), "\(line)\n\(session.stderr)")
        }

        // The transcript replays the same three pictures.
        let transcripts = sandbox.files(in: "sessions")
        XCTAssertEqual(transcripts.count, 1)
        let check = try PipeRun(["run", "--check", "sessions/" + (transcripts.first ?? "")], in: sandbox)
        XCTAssertTrue(check.stderr.contains("check: 3 images matched, 0 mismatched"), check.stderr)
    }
}
