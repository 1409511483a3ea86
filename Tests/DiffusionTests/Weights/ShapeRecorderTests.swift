import Foundation
import XCTest
@testable import Diffusion
@testable import NN

/// `ShapeRecorder` lists SD1.5's tensors from the models themselves (the benchmark's synthetic
/// checkpoint is made from this list): it must equal diffusers' meta-device listing, and the
/// single-file names found by inverting `KeyMap` must equal those of diffusers' own converter tables
/// (`DiffusersToLDM`, written independently of `KeyMap`).
final class ShapeRecorderTests: XCTestCase {
    func testRecordedTensorsEqualDiffusersListingWithoutEncoder() throws {
        let recorded = try ShapeRecorder.checkpointTensors()
        let listing = try ShapeOnlySource.sd15()
        let expected = listing.keys.filter { !$0.hasPrefix("vae.encoder.") && !$0.hasPrefix("vae.quant_conv.") }
        XCTAssertEqual(Set(recorded.map(\.key)), Set(expected))
        XCTAssertEqual(recorded.count, expected.count)
        for (key, shape) in recorded { XCTAssertEqual(shape, listing.shape(of: key), key) }
    }

    func testSingleFileNamesEqualTheConverterTables() throws {
        let tensors = try ShapeRecorder.checkpointTensors()
        let names = try XCTUnwrap(ShapeRecorder.singleFileNames(for: tensors))
        for ((key, shape), found) in zip(tensors, names) {
            if key.hasPrefix("unet.") {
                XCTAssertEqual(found.name, DiffusersToLDM.unet(String(key.dropFirst(5))))
                XCTAssertEqual(found.shape, shape)
            } else if key.hasPrefix("vae.") {
                let (name, flattened) = DiffusersToLDM.vae(String(key.dropFirst(4)))
                XCTAssertEqual(found.name, name)
                XCTAssertEqual(found.shape, flattened ? shape + [1, 1] : shape, key)
            } else {
                XCTAssertEqual(found.name, DiffusersToLDM.textEncoder(String(key.dropFirst("text_encoder.".count))))
            }
        }
        XCTAssertNil(ShapeRecorder.singleFileName(for: "unet.no_such_layer.weight", shape: [1]))
    }
}
