import Foundation
import XCTest
@testable import NN
import TestSupport

/// Fast mode keeps an fp16 or bf16 file's large weights in two bytes and widens them on each use;
/// the widened values must be exactly the Float32 copy fast mode kept before, and weights that are
/// not exactly representable (an fp32 file, a merged LoRA) must stay Float32.
final class CompactWeightTests: XCTestCase {
    let count = CompactWeight.minimumCount + 7

    /// Spread-out finite fp16 values, subnormals and both zeros included.
    func halfValues() -> [Float] {
        (0..<count).map { Float(Float16(bitPattern: UInt16(truncatingIfNeeded: $0 &* 40_503) & 0xFBFF)) }
    }

    func testFP16ValuesAreKeptAsFP16AndWidenBitForBit() throws {
        let values = halfValues()
        let compact = try XCTUnwrap(values.withUnsafeBufferPointer { CompactWeight(exactly: $0) })
        XCTAssertEqual(compact.format, .f16)
        XCTAssertEqual(compact.byteCount, 2 * count)
        var out = [Float](repeating: .nan, count: count)
        out.withUnsafeMutableBufferPointer { compact.widen(into: $0) }
        XCTAssertEqual(out.map(\.bitPattern), values.map(\.bitPattern))
    }

    /// Values beyond fp16's range (65504) that are bf16 values are kept as bf16.
    func testBF16ValuesOutsideFP16RangeAreKeptAsBF16() throws {
        var rng = WeightsTestRNG(seed: 3)
        let values = (0..<count).map { _ in Float(bitPattern: UInt32(UInt16.random(in: 0x4800...0x7F00, using: &rng)) << 16) }
        let compact = try XCTUnwrap(values.withUnsafeBufferPointer { CompactWeight(exactly: $0) })
        XCTAssertEqual(compact.format, .bf16)
        var out = [Float](repeating: .nan, count: count)
        out.withUnsafeMutableBufferPointer { compact.widen(into: $0) }
        XCTAssertEqual(out, values)
    }

    func testInexactOrSmallWeightsAreNotCompacted() {
        var values = halfValues()
        values[count - 1] = 0.1  // neither fp16 nor bf16 holds 0.1 exactly
        XCTAssertNil(values.withUnsafeBufferPointer { CompactWeight(exactly: $0) })
        let small = Array(halfValues().prefix(CompactWeight.minimumCount - 1))
        XCTAssertNil(small.withUnsafeBufferPointer { CompactWeight(exactly: $0) })
    }

    /// Through a real file in fast mode: an fp16 tensor is held in two bytes per element and reads
    /// the same on every use; an fp32 tensor of values fp16 cannot hold stays Float32.
    func testFastModeParameterHoldsFP16FilesInHalfTheBytes() throws {
        let dir = try makeWeightsTestDirectory(self)
        let half = halfValues()
        let full = (0..<count).map { Float($0) * 0.1 + 0.01 }
        let url = try writeSafetensors(dir.appendingPathComponent("w.safetensors"),
                                       [("half", .f16, [count], half), ("full", .f32, [count], full)])
        let weights = Weights(source: try SafetensorsFile(url: url), keepConverted: true)
        let h = try weights.parameter("half", shape: [count]), f = try weights.parameter("full", shape: [count])
        XCTAssertEqual(h.heldBytes, 0, "nothing is held before first use")
        for _ in 0..<2 {
            XCTAssertEqual(h.value.data.map(\.bitPattern), half.map(\.bitPattern))
            XCTAssertEqual(f.value.data, full)
        }
        XCTAssertEqual(h.heldBytes, 2 * count)
        XCTAssertEqual(f.heldBytes, 4 * count)
        XCTAssertEqual(h.withValue { Array($0) }.map(\.bitPattern), half.map(\.bitPattern))
    }

    /// An fp16 or bf16 file's weight is kept where the file's mapping holds it, not copied: its pages
    /// can be dropped between uses (`releasePages`) and the next use reads the same values again.
    /// An fp32 file gives no two-byte view.
    func testFastModeKeepsAnFP16FilesWeightInTheFilesMapping() throws {
        let dir = try makeWeightsTestDirectory(self)
        let half = halfValues()
        let brain = half.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) * 65536 }  // bf16 values past fp16's range
        let url = try writeSafetensors(dir.appendingPathComponent("w.safetensors"),
                                       [("half", .f16, [count], half), ("brain", .bf16, [count], brain), ("full", .f32, [count], half)])
        let file = try SafetensorsFile(url: url)
        let stored = try XCTUnwrap(file.storedHalfElements("half"))
        XCTAssertEqual(stored.count, count)
        XCTAssertFalse(stored.isBF16)
        let info = try XCTUnwrap(file.info("half"))
        try file.withRawBytes(of: "half") { raw in
            XCTAssertEqual(UnsafeRawPointer(stored.bits), raw.baseAddress, "the file's own bytes, not a copy")
        }
        XCTAssertEqual(info.dtype, .f16)
        XCTAssertEqual(file.storedHalfElements("brain")?.isBF16, true)
        XCTAssertNil(file.storedHalfElements("full"), "fp32 is widened by nothing: no two-byte view")

        let weights = Weights(source: file, keepConverted: true)
        for (name, values) in [("half", half), ("brain", brain)] {
            let parameter = try weights.parameter(name, shape: [count])
            XCTAssertEqual(parameter.value.data.map(\.bitPattern), values.map(\.bitPattern), name)
            XCTAssertEqual(parameter.heldBytes, 2 * count, name)
            let kept = try XCTUnwrap(parameter.compactElements, name)
            try file.withRawBytes(of: name) { raw in
                XCTAssertEqual(kept, raw.baseAddress, "\(name): the parameter keeps the file's own bytes, not a copy")
            }
            file.releasePages(of: name)
            XCTAssertEqual(parameter.value.data.map(\.bitPattern), values.map(\.bitPattern), "\(name) after its pages were dropped")
        }
    }
}
