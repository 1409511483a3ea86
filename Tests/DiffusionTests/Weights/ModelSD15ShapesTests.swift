import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// The default configs describe Stable Diffusion 1.5 exactly: built over a source that has SD1.5's
/// 1130 tensors with their real shapes (and no values), the three models find every tensor they ask
/// for with the shape they expect, and use all of them except the VAE encoder's.
final class ModelSD15ShapesTests: XCTestCase {
    func testDefaultConfigsBuildAgainstSD15Shapes() throws {
        let source = try ShapeOnlySource.sd15()
        XCTAssertEqual(source.keys.count, 1130)
        let usage = WeightUsage()
        let weights = Weights(source: source, keepConverted: false, usage: usage)
        let textEncoder = try CLIPTextModel(weights: weights.scoped("text_encoder.text_model"))
        let unet = try UNet2DConditionModel(weights: weights.scoped("unet"))
        let vae = try AutoencoderDecoder(weights: weights.scoped("vae"))
        XCTAssertEqual(textEncoder.config.layerCount, 12)
        XCTAssertEqual(unet.config.blockOutChannels, [320, 640, 1280, 1280])
        XCTAssertEqual(vae.config.blockOutChannels, [128, 256, 512, 512])
        let unused = Set(source.keys).subtracting(usage.keys).filter { !$0.hasPrefix("vae.encoder.") && !$0.hasPrefix("vae.quant_conv.") }
        XCTAssertEqual(unused, [])
        XCTAssertEqual(usage.keys.count, 1130 - 2 - Set(source.keys).filter { $0.hasPrefix("vae.encoder.") }.count)
    }
}

/// A tensor source that knows only shapes: enough to build models and check their strictness.
/// Reading fills a deterministic pattern, so a forward pass runs (its numbers mean nothing).
final class ShapeOnlySource: TensorSource, @unchecked Sendable {
    private let shapes: [String: [Int]]
    var sourceDescription: String { "SD1.5 shape list" }
    var keys: [String] { shapes.keys.sorted() }

    struct BadLine: Error { let line: String }

    /// Reads lines `key d0,d1,…`.
    /// - Throws: `BadLine` for a line that is not a key, one space and its dimensions.
    init(_ listing: String) throws {
        var shapes: [String: [Int]] = [:]
        for line in listing.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { throw BadLine(line: String(line)) }
            shapes[String(parts[0])] = parts[1].split(separator: ",").compactMap { Int($0) }
        }
        self.shapes = shapes
    }

    func shape(of key: String) -> [Int]? { shapes[key] }

    func read(_ key: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        // Small values of either sign, scaled by fan-in so activations stay finite through 16 layers.
        let fanIn = Float(max(1, (shapes[key] ?? [1]).dropFirst().reduce(1, *)))
        for index in buffer.indices {
            buffer[index] = Float((index &* 2_654_435_761) % 2001 - 1000) / 1000 / fanIn.squareRoot()
        }
    }
}

extension ShapeOnlySource {
    /// Key and shape of every SD1.5 tensor in diffusers module names under the checkpoint prefixes
    /// (1130 lines `unet.conv_in.weight 320,4,3,3`), from diffusers 0.42.1 / transformers 5.23 modules
    /// built with SD1.5's configs on the meta device, not from a checkpoint file: the Python and the
    /// configs are in `Tests/Fixtures/README.md`, "7d. SD1.5 tensor shapes".
    static func sd15() throws -> ShapeOnlySource {
        try ShapeOnlySource(String(decoding: Gzip.decompress(Fixture.bytes("reference/sd15_shapes.txt.gz")), as: UTF8.self))
    }
}
