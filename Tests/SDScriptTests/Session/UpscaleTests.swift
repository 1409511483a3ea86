import Diffusion
import Foundation
import Imaging
import ModelStore
import TestSupport
import XCTest
@testable import SDScript

/// `upscale` and `upscalers` on the test generator's images with the tiny fixture upscalers
/// (`Tests/Fixtures/esrgan`; their parity with basicsr is `UpscalerTests`'s).
final class UpscaleTests: XCTestCase {
    private var folder: TemporaryFolder!
    private var io: BufferIO!
    private var session: Session!
    private let x4 = Fixture.url("esrgan/tiny-x4.safetensors").path
    private let x2 = Fixture.url("esrgan/tiny-x2.safetensors").path

    override func setUp() {
        folder = TemporaryFolder()
        io = BufferIO()
        let saver = ImagingSaver(hashes: ModelHashCache(environment: ["XDG_CACHE_HOME": folder.path + "/cache"]))
        session = makeSession(io: io, saver: saver)
        try? FileManager.default.createDirectory(atPath: folder.path + "/esrgan", withIntermediateDirectories: true)
        for line in ["prompt a red fox", "seed 3", "set size 64x64", "set steps 1", "set outdir \(folder.path)/out",
                     "set upscaler-dir \(folder.path)/esrgan", "gen"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
    }

    /// The engine's upscale of image 1, as `Upscaler` makes it with the default tiles.
    private func expected(_ path: String, image: Int = 1) throws -> [UInt8] {
        let source = session.images[image - 1].pixels
        return try Upscaler.load(URL(fileURLWithPath: path))
            .upscale(PixelImage(width: source.width, height: source.height, rgb: source.pixels)).rgb
    }

    func testUpscaleAddsTheImageAndSavesItWithA1111sExtrasKeys() throws {
        XCTAssertEqual(session.execute("upscale 1 \(x4)"), .ok)
        let image = try XCTUnwrap(session.images.last)
        XCTAssertEqual(image.index, 2)
        XCTAssertEqual([image.pixels.width, image.pixels.height], [256, 256])
        XCTAssertEqual(image.pixels.pixels, try expected(x4))
        XCTAssertEqual(image.upscale, UpscaleRecord(upscaler: "tiny-x4", factor: 4, source: 1, resize: nil))
        XCTAssertEqual(image.request, session.images[0].request)
        XCTAssertEqual(session.lastBatch, [1])
        XCTAssertTrue(io.lines.contains { $0.hasPrefix("image 2: seed 3, 256x256") }, "\(io.lines)")
        XCTAssertGreaterThan(io.progressCalls, 1)

        // Autosaved with the source's recipe and A1111's extras keys.
        let png = try XCTUnwrap(image.savedPaths.first { $0.hasSuffix(".png") })
        let stored = try ImageRecipeReader.read(URL(fileURLWithPath: png))
        XCTAssertEqual(stored.recipe.prompt, "a red fox")
        XCTAssertEqual(stored.recipe.seed, 3)
        XCTAssertEqual(stored.recipe.extra("Postprocess upscale by"), "4")
        XCTAssertEqual(stored.recipe.extra("Postprocess upscaler"), "tiny-x4")
        XCTAssertTrue(stored.infotext?.contains("Postprocess upscale by: 4, Postprocess upscaler: tiny-x4") ?? false, stored.infotext ?? "")

        XCTAssertEqual(session.execute("history"), .ok)
        XCTAssertTrue(io.lines.last?.contains("upscaled x4 from image 1 by tiny-x4 to 256x256") ?? false, io.lines.last ?? "")
    }

    /// `set upscale-tile` sets the tiles the network runs over: 16-pixel tiles give the engine's own
    /// 16-pixel tiling, which stays within one 8-bit level of the default tiles' result.
    func testTheTileSizeIsASetting() throws {
        XCTAssertEqual(session.execute("set upscale-tile 32"), .ok)
        XCTAssertEqual(session.execute("upscale 1 \(x4)"), .ok)
        let source = session.images[0].pixels
        let small = try Upscaler.load(URL(fileURLWithPath: x4))
            .upscale(PixelImage(width: source.width, height: source.height, rgb: source.pixels), tiling: TileOptions(tile: 32)).rgb
        let tiled = try XCTUnwrap(session.images.last).pixels.pixels
        XCTAssertEqual(tiled, small)
        XCTAssertLessThanOrEqual(zip(tiled, try expected(x4)).map { abs(Int($0) - Int($1)) }.max() ?? 99, 1)
        XCTAssertNotEqual(session.execute("set upscale-tile 16"), .ok)
        XCTAssertTrue(io.diagnostics.last?.contains("set upscale-tile: expected 0 (the whole image at once) or a side from 32 to 1024 pixels, got '16'") ?? false,
                      io.diagnostics.last ?? "")
        XCTAssertEqual(session.execute("set upscale-tile 0"), .ok)
        XCTAssertEqual(session.execute("upscale 1 \(x4)"), .ok)
        XCTAssertEqual(try XCTUnwrap(session.images.last).pixels.pixels, try Upscaler.load(URL(fileURLWithPath: x4))
            .upscale(PixelImage(width: source.width, height: source.height, rgb: source.pixels), tiling: .untiled).rgb)
    }

    func testNamesComeFromTheUpscalerFoldersAndAScaleResizesWithLanczos() throws {
        try FileManager.default.createSymbolicLink(atPath: folder.path + "/esrgan/RealESRGAN_x2plus.safetensors", withDestinationPath: x2)
        XCTAssertEqual(session.execute("upscalers"), .ok)
        XCTAssertTrue(io.lines.contains("RealESRGAN_x2plus  (x2, Real-ESRGAN RRDBNet, 2 blocks, 8 features)"), "\(io.lines)")
        XCTAssertEqual(session.complete("upscale 1 RealE").candidates, ["RealESRGAN_x2plus"])

        // The only upscaler found is used when none is named; x2 is its own scale.
        XCTAssertEqual(session.execute("upscale"), .ok)
        XCTAssertEqual(session.images.last?.pixels.pixels, try expected(x2))
        // x3 from a 2x model: two passes (64 -> 128 -> 256), then Lanczos down to 192, as A1111 does.
        XCTAssertEqual(session.execute("upscale 1 realesrgan_x2plus x3"), .ok)
        let three = try XCTUnwrap(session.images.last)
        XCTAssertEqual([three.pixels.width, three.pixels.height], [192, 192])
        XCTAssertEqual(three.upscale?.resize, "Lanczos")
        let twice = try Upscaler.load(URL(fileURLWithPath: x2))
        let source = session.images[0].pixels
        let passes = try twice.upscale(twice.upscale(PixelImage(width: 64, height: 64, rgb: source.pixels)))
        XCTAssertEqual(three.pixels.pixels, passes.resized(width: 192, height: 192).rgb)
    }

    func testBadInputIsOneLineAndTheSessionGoesOn() throws {
        _ = folder.write("esrgan/broken.safetensors", "abc")
        let fresh = makeSession(io: BufferIO())
        XCTAssertEqual(fresh.execute("upscale \(x4)"),
                       .failed(Diagnostic(.notReady(command: "upscale", reason: "no image yet; run 'gen' first, then upscale"), at: nil)))
        let cases: [(String, String)] = [
            ("upscale 3 \(x4)", "upscale: expected an image number from 1 to 1, got '3'"),
            ("upscale 1 \(x4) x9", "upscale: expected a scale from x1 to x8 (e.g. x4, x2.5), got 'x9'"),
            ("upscale 1 nosuch", "upscale: no such file, and no upscaler of that name in"),
            ("upscale 1 \(Fixture.url("lora/tiny-lora.safetensors").path)", "is not an RRDBNet (ESRGAN/Real-ESRGAN) upscaler: it has no 'conv_first.weight'"),
            ("upscale 1 broken", "broken.safetensors"),
            ("upscale 1 \(folder.path)", "is a folder; give the model file"),
        ]
        for (line, message) in cases {
            guard case .failed(let diagnostic) = session.execute(line) else { return XCTFail("\(line) did not fail") }
            XCTAssertTrue(diagnostic.description.contains(message), "\(line): \(diagnostic)")
            XCTAssertFalse(diagnostic.description.contains("\n"), diagnostic.description)
        }
        try FileManager.default.removeItem(atPath: folder.path + "/esrgan/broken.safetensors")
        guard case .failed(let none) = session.execute("upscale 1") else { return XCTFail("upscale without an upscaler ran") }
        XCTAssertTrue(none.description.hasPrefix("upscale: no upscaler found in"), none.description)
        // Too large a result is refused before any work: 2048 x 8 would be 16384 a side.
        for line in ["set size 2048x2048", "gen"] { XCTAssertEqual(session.execute(line), .ok, line) }
        let calls = io.progressCalls
        guard case .failed(let diagnostic) = session.execute("upscale 2 \(x4) x8") else { return XCTFail("not refused") }
        XCTAssertTrue(diagnostic.description.contains("would make 16384x16384, more than 8192 a side"), diagnostic.description)
        XCTAssertEqual(io.progressCalls, calls)
        XCTAssertEqual(session.images.count, 2)
        XCTAssertEqual(session.execute("upscale 1 \(x4)"), .ok)
    }

    func testCtrlCCancelsCleanly() throws {
        io.interruptAfter = io.progressCalls + 3
        guard case .failed(let diagnostic) = session.execute("upscale 1 \(x4)") else { return XCTFail("not cancelled") }
        XCTAssertTrue(diagnostic.description.hasPrefix("upscale: cancelled in tile 1 of 1"), diagnostic.description)
        XCTAssertEqual(session.images.count, 1)
        XCTAssertEqual(session.execute("upscale 1 \(x4)"), .ok)
    }

    func testTheTranscriptReplaysAndChecksTheUpscale() throws {
        let recorder = try TranscriptRecorder(directory: folder.path + "/sessions")
        let recorded = makeSession(transcript: recorder, seeds: [5])
        try FileManager.default.createDirectory(atPath: folder.path + "/scripts", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: folder.path + "/scripts/tiny.safetensors", withDestinationPath: x4)
        for line in ["set autosave off", "set size 64x64", "set steps 1", "gen", "upscale \(folder.path)/scripts/tiny.safetensors x2"] {
            XCTAssertEqual(recorded.execute(line), .ok, line)
        }
        let text = try String(contentsOfFile: recorder.path, encoding: .utf8)
        XCTAssertTrue(text.contains("upscale 1 \(folder.path)/scripts/tiny.safetensors x2\n#=> image 2 seed=5 size=128x128 sha256=\(recorded.images[1].sha256)"), text)
        let summary = makeSession(seeds: []).runScript(at: recorder.path, options: ScriptOptions(check: true))
        XCTAssertEqual(summary.errors, [])
        XCTAssertEqual(summary.checked, 2)
    }

    func testArgumentsAreImageModelAndScaleEachOptional() throws {
        func parsed(_ text: String) throws -> [String] {
            let a = try UpscaleArguments(text)
            return [a.image.map(String.init) ?? "-", a.model ?? "-", a.factor.map { formatNumber(Float($0)) } ?? "-"]
        }
        XCTAssertEqual(try parsed(""), ["-", "-", "-"])
        XCTAssertEqual(try parsed("2"), ["2", "-", "-"])
        XCTAssertEqual(try parsed("x2"), ["-", "-", "2"])
        XCTAssertEqual(try parsed("2 4x-UltraSharp x2.5"), ["2", "4x-UltraSharp", "2.5"])
        XCTAssertEqual(try parsed("x4plus"), ["-", "x4plus", "-"])
        XCTAssertEqual(try parsed("my models/an upscaler.safetensors X3"), ["-", "my models/an upscaler.safetensors", "3"])
        XCTAssertThrowsError(try parsed("1 x0.5"))
    }

    func testAPthUpscalerIsReadUnlessPicklesAreOff() throws {
        let pth = Fixture.url("esrgan/tiny-x4.pth").path
        XCTAssertEqual(session.execute("upscale 1 \(pth)"), .ok)
        XCTAssertEqual(session.images.last?.pixels.pixels, try expected(x4))
        XCTAssertEqual(session.images.last?.upscale?.upscaler, "tiny-x4")
        defer { _ = session.execute("unset pickles") }
        XCTAssertEqual(session.execute("set pickles off"), .ok)
        XCTAssertEqual(session.execute("upscale 1 \(x4)"), .ok)
        guard case .failed(let diagnostic) = session.execute("upscale 1 \(pth)") else { return XCTFail("a pickle was read with pickles off") }
        XCTAssertTrue(diagnostic.description.hasPrefix("upscale: "), diagnostic.description)
        XCTAssertFalse(diagnostic.description.contains("\n"), diagnostic.description)
    }
}
