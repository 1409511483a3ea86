import Diffusion
import Foundation
import Imaging
import TestSupport
import XCTest
@testable import SDScript

/// `set deepcache N|off`: the request's interval, its one-line errors, and `load` of an A1111-style
/// infotext that carries only `DeepCache: N`.
final class DeepCacheSettingTests: XCTestCase {
    func testTheIntervalReachesTheRequestAndOffClearsIt() throws {
        let loader = CountingLoader()
        let session = makeSession(loader: loader)
        XCTAssertEqual(SettingKey.named("deepcache")?.show(session.settings), "off", "off by default")
        for line in ["prompt a fox", "set deepcache 3", "gen", "set deepcache off", "gen", "set deepcache 2", "unset deepcache", "gen"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
        XCTAssertEqual(loader.generator.requests.map(\.deepCache), [3, nil, nil])
        for (value, message) in [
            ("1", "set deepcache: an interval of 1 runs every step whole and caches nothing: use 2 or more (3 is usual) or off, got '1'"),
            ("1001", "set deepcache: expected an interval from 2 to 1000 (3 is usual), or off, got '1001'"),
            ("of", "set deepcache: expected an interval from 2 to 1000 (3 is usual), or off, got 'of' (did you mean 'off'?)"),
        ] {
            guard case .failed(let diagnostic) = session.execute("set deepcache \(value)") else { return XCTFail("accepted \(value)") }
            XCTAssertEqual(diagnostic.description, message)
        }
        XCTAssertEqual(session.execute("set deepcache 0"), .ok)
        XCTAssertNil(session.settings.request.deepCache)
    }

    func testLoadReadsTheInfotextKeyAndClearsWhatTheRecipeDoesNotHave() throws {
        let folder = TemporaryFolder()
        func png(_ parameters: String) throws -> String {
            let path = folder.path + "/\(UUID().uuidString).png"
            let bytes = try PNGFile.encode(try RGBImage(width: 8, height: 8, pixels: Array(repeating: 0, count: 192)),
                                           chunks: [PNGTextChunk(kind: .tEXt, keyword: "parameters", text: parameters)])
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return path
        }
        let io = BufferIO()
        let session = makeSession(io: io)
        let cached = try png("a castle\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 5, Size: 64x64, DeepCache: 3, RNG: CPU")
        XCTAssertEqual(session.execute("load \(cached)"), .ok)
        XCTAssertEqual(session.settings.request.deepCache, 3)
        XCTAssertEqual(io.diagnostics, [], "DeepCache is reproduced, not reported")
        let plain = try png("a castle\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 5, Size: 64x64, RNG: CPU")
        XCTAssertEqual(session.execute("load \(plain)"), .ok)
        XCTAssertNil(session.settings.request.deepCache, "a recipe without it was made without it")
    }
}
