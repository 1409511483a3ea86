import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// RRDBNet and RealESRGANer's tiling against the PyTorch architecture (basicsr's `RRDBNet`, copied into
/// `Tests/Fixtures/make_esrgan_fixtures.py`) on tiny random models: 2 blocks, 8 features, growth 4.
/// `esrgan/reference.json` holds the Python line of each reference.
///
/// Tolerances: the bound is 1/255 on the output image; the network's own output is compared
/// at 1e-4 (Float32 convolutions, Winograd on the upsampled maps, against torch's), far inside it.
final class UpscalerTests: XCTestCase {
    let reference = try! Fixture.tensors("esrgan/reference")
    let networkTolerance: Float = 1e-4
    let imageTolerance: Float = 1 / 255

    func load(_ name: String) throws -> Upscaler { try Upscaler.load(Fixture.url("esrgan/\(name).safetensors")) }

    func testRealESRGANx4LayoutMatchesBasicsr() throws {
        let upscaler = try load("tiny-x4")
        XCTAssertEqual(upscaler.network.config, RRDBNetConfig(features: 8, growth: 4, blocks: 2, upsamplings: 2, unshuffle: 1))
        XCTAssertEqual(upscaler.network.layout, .realESRGAN)
        XCTAssertEqual(upscaler.scale, 4)
        // x4(image)
        let out = try upscaler.network(try reference.tensor("image"))
        assertClose(out, try reference.tensor("x4_net"), tolerance: networkTolerance, "x4 network")
    }

    func testRealESRGANx2UnshufflesItsInputAndReadsFP16() throws {
        let upscaler = try load("tiny-x2")
        XCTAssertEqual(upscaler.network.config.unshuffle, 2)
        XCTAssertEqual(upscaler.network.config.inputChannels, 12)
        XCTAssertEqual(upscaler.scale, 2)
        // x2(image), on the fp16 weights as stored
        let out = try upscaler.network(try reference.tensor("image"))
        assertClose(out, try reference.tensor("x2_net"), tolerance: networkTolerance, "x2 network")
    }

    func testRealESRGANsPthIsReadThroughThePickleReaderTakingTheEMAWeights() throws {
        // torch.save({'params_ema': ema, 'params': ema + 1}), as RealESRGAN_x4plus.pth is laid out
        let upscaler = try Upscaler.load(Fixture.url("esrgan/tiny-x4.pth"))
        XCTAssertEqual(upscaler.name, "tiny-x4")
        XCTAssertEqual(upscaler.network.config, try load("tiny-x4").network.config)
        let out = try upscaler.network(try reference.tensor("image"))
        assertClose(out, try reference.tensor("x4_net"), tolerance: networkTolerance, ".pth network")
        // A cautious session refuses every pickle before reading it.
        XCTAssertThrowsError(try Upscaler(source: openTensorFile(Fixture.url("esrgan/tiny-x4.pth"), pickles: .refuse), name: "x"))
    }

    func testOldESRGANLayoutIsTheSameNetwork() throws {
        let upscaler = try load("tiny-old-x4")
        XCTAssertEqual(upscaler.network.layout, .esrgan)
        XCTAssertEqual(upscaler.network.config, try load("tiny-x4").network.config)
        // the x4 weights renamed to model.N: x4(image)
        let out = try upscaler.network(try reference.tensor("image"))
        assertClose(out, try reference.tensor("x4_net"), tolerance: networkTolerance, "old-layout network")
    }

    func testTilingMatchesRealESRGANer() throws {
        // realesrganer(x4, image, 4, tile=8, tile_pad=3, pre_pad=0): 3×3 tiles, cropped and placed
        let x4 = try load("tiny-x4")
        let tiled = try x4.upscale(try reference.tensor("image"), tiling: TileOptions(tile: 8, tilePad: 3))
        assertClose(tiled, try reference.tensor("x4_tiled"), tolerance: networkTolerance, "x4 tiled")
        XCTAssertEqual(x4.tileCount(width: 24, height: 20, tiling: TileOptions(tile: 8, tilePad: 3)), 9)
        // realesrganer(x2, odd, 2, tile=6, tile_pad=2, pre_pad=2): 15×13 → reflect pre-pad and mod pad → 18×16
        let x2 = try load("tiny-x2")
        let odd = try x2.upscale(try reference.tensor("odd"), tiling: TileOptions(tile: 6, tilePad: 2, prePad: 2))
        assertClose(odd, try reference.tensor("x2_tiled_odd"), tolerance: networkTolerance, "x2 tiled, odd size")
    }

    /// RealESRGANer's 10-pixel context on 16-pixel tiles against one pass over the whole image: the
    /// network's reach (each of its 32 low-resolution convolutions sees one more pixel) is longer than
    /// the context, so the tiles' edges differ, but by less than one 8-bit level here.
    func testTiledEqualsUntiledWithinOneLevel() throws {
        let x4 = try load("tiny-x4")
        var rng = WeightsTestRNG(seed: 9)
        let source = PixelImage(width: 48, height: 40, rgb: (0..<(48 * 40 * 3)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        var progress: [UpscaleProgress] = []
        let tiled = try x4.upscale(source, tiling: TileOptions(tile: 16, tilePad: 10)) { progress.append($0) }
        let whole = try x4.upscale(source, tiling: .untiled)
        XCTAssertEqual(progress.filter(\.tileFinished).map(\.tile), Array(1...9))
        XCTAssertEqual(progress.count, 9 * x4.network.stages)  // 2 blocks, 2 upsamplings, the last convolutions
        XCTAssertEqual(progress.last?.tiles, 9)
        XCTAssertEqual([tiled.width, tiled.height], [192, 160])
        let worst = zip(tiled.rgb, whole.rgb).map { abs(Int($0) - Int($1)) }.max() ?? 255
        XCTAssertLessThanOrEqual(worst, 1, "tiled vs untiled: \(worst) levels")
        XCTAssertNotEqual(tiled.rgb, PixelImage(width: 192, height: 160, rgb: [UInt8](repeating: 0, count: 192 * 160 * 3)).rgb)
    }

    func testCancellationStopsWithinATile() throws {
        let x4 = try load("tiny-x4")
        let token = CancellationToken()
        var seen: [UpscaleProgress] = []
        let image = PixelImage(width: 32, height: 32, rgb: [UInt8](repeating: 128, count: 32 * 32 * 3))
        let watch: (UpscaleProgress) -> Void = { progress in
            seen.append(progress)
            if progress.tile == 2 && progress.fraction > 0.3 { token.cancel() }  // after tile 2's second block
        }
        XCTAssertThrowsError(try x4.upscale(image, tiling: TileOptions(tile: 8, tilePad: 2), progress: watch, cancellation: token)) {
            XCTAssertEqual($0 as? PipelineError, .cancelled)
        }
        XCTAssertEqual(seen.last?.tile, 2)
        XCTAssertEqual(seen.last?.fraction ?? 0, 2.0 / 5, accuracy: 1e-9)
    }

    func testTooLargeAResultIsRefused() throws {
        let x4 = try load("tiny-x4")
        let wide = PixelImage(width: 2049, height: 8, rgb: [UInt8](repeating: 0, count: 2049 * 8 * 3))
        XCTAssertThrowsError(try x4.upscale(wide)) { XCTAssertEqual($0 as? UpscalerError, .tooLarge(width: 8196, height: 32)) }
    }

    // MARK: - Files that are not an RRDBNet

    func testOtherNetworksAreRefusedNamingTheKey() throws {
        let dir = try makeWeightsTestDirectory(self)
        let srvgg = try writeSafetensors(dir.appendingPathComponent("realesr-general-x4v3.safetensors"), [
            ("body.0.weight", .f32, [4, 3, 3, 3], [Float](repeating: 0, count: 108)),
            ("body.0.bias", .f32, [4], [0, 0, 0, 0]),
        ])
        XCTAssertThrowsError(try Upscaler.load(srvgg)) { error in
            guard case .notRRDBNet(_, let reason)? = error as? UpscalerError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("'body.0.weight'") && reason.contains("SRVGG"), reason)
        }
        let swin = try writeSafetensors(dir.appendingPathComponent("swinir.safetensors"), [
            ("patch_embed.norm.weight", .f32, [2], [1, 1]),
        ])
        XCTAssertThrowsError(try Upscaler.load(swin)) { error in
            XCTAssertTrue("\(error)".contains("'patch_embed.norm.weight' is a SwinIR"), "\(error)")
        }
        XCTAssertThrowsError(try Upscaler.load(Fixture.url("lora/tiny-lora.safetensors"))) { error in
            XCTAssertTrue("\(error)".contains("is not an RRDBNet (ESRGAN/Real-ESRGAN) upscaler: it has no 'conv_first.weight'"), "\(error)")
        }
    }

    func testAMissingOrExtraTensorIsNamed() throws {
        let dir = try makeWeightsTestDirectory(self)
        let source = try Fixture.tensors("esrgan/tiny-x4")
        func copy(dropping dropped: String? = nil, adding extra: String? = nil, prefix: String = "") throws -> URL {
            var tensors: [(name: String, dtype: SafetensorsDType, shape: [Int], values: [Float])] = []
            for name in source.names where name != dropped {
                tensors.append((prefix + name, .f32, source.shape(of: name)!, try source.tensor(name).data))
            }
            if let extra { tensors.append((prefix + extra, .f32, [2], [0, 0])) }
            return try writeSafetensors(dir.appendingPathComponent("\(UUID().uuidString).safetensors"), tensors)
        }
        XCTAssertThrowsError(try Upscaler.load(try copy(dropping: "conv_body.weight"))) { error in
            guard case .incompatible(_, .missingTensor(let key, _))? = error as? UpscalerError else { return XCTFail("\(error)") }
            XCTAssertEqual(key, "conv_body.weight")
        }
        XCTAssertThrowsError(try Upscaler.load(try copy(adding: "body.0.rdb1.conv1x1.weight"))) { error in
            XCTAssertEqual((error as? UpscalerError).map { if case .unexpectedTensors(_, let keys) = $0 { return keys } else { return [] } },
                           ["body.0.rdb1.conv1x1.weight"])
        }
        // Real-ESRGAN's training checkpoints nest the weights under params_ema (and params).
        let nested = try Upscaler.load(try copy(prefix: "params_ema."))
        assertClose(try nested.network(try reference.tensor("image")), try reference.tensor("x4_net"),
                    tolerance: networkTolerance, "params_ema. prefix")
    }

    func testNaNFromABrokenModelIsAnErrorNamingItNotATrapOrABlackPicture() throws {
        let dir = try makeWeightsTestDirectory(self)
        let source = try Fixture.tensors("esrgan/tiny-x4")
        let tensors = try source.names.map { name -> (name: String, dtype: SafetensorsDType, shape: [Int], values: [Float]) in
            let values = try source.tensor(name).data
            return (name, .f32, source.shape(of: name)!, name == "conv_last.bias" ? values.map { _ in .nan } : values)
        }
        let broken = try Upscaler.load(try writeSafetensors(dir.appendingPathComponent("nan.safetensors"), tensors))
        XCTAssertThrowsError(try broken.upscale(PixelImage(width: 8, height: 8, rgb: [UInt8](repeating: 77, count: 8 * 8 * 3)))) {
            XCTAssertEqual($0 as? UpscalerError, .nonFinite(name: "nan"))
            XCTAssertEqual("\($0)", "the upscaler 'nan' produced NaN or infinite pixels: its weights hold NaN or infinite values; use another upscaler file")
        }
    }

    func testFilesThatCannotBeReadSaySo() throws {
        let dir = try makeWeightsTestDirectory(self)
        XCTAssertThrowsError(try Upscaler.load(dir.appendingPathComponent("none.safetensors"))) {
            XCTAssertEqual($0 as? UpscalerError, .notFound(path: dir.appendingPathComponent("none.safetensors").path))
        }
        let pickle = try writeTestFile([0x50, 0x4B, 0x03, 0x04], "RealESRGAN_x4plus.pth", in: dir)
        XCTAssertThrowsError(try Upscaler.load(pickle)) { XCTAssertTrue($0 is TorchFileError, "\($0)") }
        let corrupt = try writeTestFile([1, 2, 3], "broken.safetensors", in: dir)
        XCTAssertThrowsError(try Upscaler.load(corrupt)) { XCTAssertTrue($0 is SafetensorsError, "\($0)") }
    }

    func testDetectionReadsTheFullSizeTopologies() throws {
        // The released files' sizes, from the shapes alone (a shape recorder stands in for the weights).
        for (config, layout) in [(RRDBNetConfig(), RRDBNetLayout.realESRGAN), (RRDBNetConfig(blocks: 6), .realESRGAN),
                                 (RRDBNetConfig(unshuffle: 2), .realESRGAN), (RRDBNetConfig(), .esrgan),
                                 (RRDBNetConfig(upsamplings: 3), .esrgan), (RRDBNetConfig(upsamplings: 0), .esrgan)] {
            let recorder = ShapeRecorder()
            _ = try RRDBNet(weights: Weights(source: recorder, keepConverted: false), config: config, layout: layout)
            let detected = try RRDBNetConfig.detect(in: recorder)
            XCTAssertEqual(detected.config, config, "\(layout) \(config)")
            XCTAssertEqual(detected.layout, layout)
        }
        XCTAssertEqual(RRDBNetConfig().flops(height: 512, width: 512) / 1e12, 9.399, accuracy: 0.005)  // 9.3988 TFLOP, summed by hand over the 351 convolutions
    }
}
