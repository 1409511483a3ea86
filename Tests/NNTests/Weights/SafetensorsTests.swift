import Foundation
import XCTest
@testable import NN
import Diffusion
import TestSupport

final class SafetensorsTests: XCTestCase {
    /// Every one of the 65 536 half-precision values widens exactly as Swift's own `Float16`
    /// conversion does (bit for bit; NaNs keep sign and payload).
    func testHalfToFloatIsExactForEveryValue() {
        for bits in 0...UInt16.max {
            let ours = FloatConversion.halfToFloat(bits)
            let reference = Float(Float16(bitPattern: bits))
            if reference.isNaN {
                XCTAssertTrue(ours.isNaN, "bits \(bits)")
                XCTAssertEqual(ours.bitPattern & 0x803F_FFFF, reference.bitPattern & 0x803F_FFFF, "NaN payload of \(bits)")
            } else {
                XCTAssertEqual(ours.bitPattern, reference.bitPattern, "bits \(String(bits, radix: 16))")
            }
        }
        // Known values: the smallest subnormal 2^-24, the largest normal 65504, -0, inf.
        XCTAssertEqual(FloatConversion.halfToFloat(0x0001), 5.960464477539063e-08)
        XCTAssertEqual(FloatConversion.halfToFloat(0x7BFF), 65504)
        XCTAssertEqual(FloatConversion.halfToFloat(0x8000).bitPattern, (-0.0 as Float).bitPattern)
        XCTAssertEqual(FloatConversion.halfToFloat(0xFC00), -.infinity)
    }

    /// bfloat16 rounding matches torch: `torch.tensor([1.00390625, 1.01171875, -3.0]).to(torch.bfloat16)`
    /// gives 1.0 (tie to even), 1.015625 (tie to even, upward) and -3.0.
    func testFloatToBFloat16RoundsToNearestEven() {
        let f = { Float(bitPattern: UInt32(FloatConversion.floatToBFloat16($0)) << 16) }
        XCTAssertEqual(f(1.00390625), 1.0)
        XCTAssertEqual(f(1.01171875), 1.015625)
        XCTAssertEqual(f(-3.0), -3.0)
        XCTAssertTrue(f(.nan).isNaN)
        XCTAssertEqual(f(.infinity), .infinity)
    }

    /// A file written by the reference `safetensors.torch.save_file` (the RNG fixture):
    /// `torch.randn(3, generator=torch.Generator("cpu").manual_seed(0))` is
    /// `[1.5409960746765137, -0.293428897857666, -2.1787893772125244]`.
    func testReadsAFileWrittenByTheReferenceLibrary() throws {
        let file = try Fixture.tensors("rng/randn_small")
        XCTAssertEqual(file.tensors.count, 440)
        XCTAssertEqual(file.info("seed=0/n=3")?.dtype, .f32)
        XCTAssertEqual(try file.tensor("seed=0/n=3"), Tensor(shape: [3], data: [1.5409960746765137, -0.293428897857666, -2.1787893772125244]))
    }

    func testRoundTripThroughWriterForEachFloatType() throws {
        let dir = try makeWeightsTestDirectory(self)
        var rng = WeightsTestRNG(seed: 7)
        let values = (0..<24).map { _ in Float.random(in: -4...4, using: &rng) }
        let special: [Float] = [0, -0.0, 1, -2.5, 65504, 6.103515625e-05, 5.960464477539063e-08, .infinity, -.infinity]
        let url = try writeSafetensors(dir.appendingPathComponent("a.safetensors"), [
            ("f32", .f32, [2, 3, 4], values),
            ("f16", .f16, [24], values),
            ("bf16", .bf16, [4, 6], values),
            ("special16", .f16, [special.count], special),
            ("scalar", .f32, [], [42]),
            ("empty", .f16, [0, 5], []),
        ], metadata: ["format": "pt", "note": "quote \" and\nnewline"])
        let file = try SafetensorsFile(url: url)

        XCTAssertEqual(file.metadata, ["format": "pt", "note": "quote \" and\nnewline"])
        XCTAssertEqual(Set(file.names), ["f32", "f16", "bf16", "special16", "scalar", "empty"])
        XCTAssertEqual(file.dataStart % 8, 0, "the writer pads the header so the data is aligned")

        XCTAssertEqual(try file.tensor("f32"), Tensor(shape: [2, 3, 4], data: values))
        XCTAssertEqual(try file.tensor("f16").data, values.map { Float(Float16($0)) })
        XCTAssertEqual(try file.tensor("bf16").data,
                       values.map { Float(bitPattern: UInt32(FloatConversion.floatToBFloat16($0)) << 16) })
        XCTAssertEqual(try file.tensor("special16").data, special)
        XCTAssertEqual(try file.tensor("scalar"), Tensor(shape: [], data: [42]))
        XCTAssertEqual(try file.tensor("empty").shape, [0, 5])

        let info = try XCTUnwrap(file.info("f16"))
        XCTAssertEqual(info.dtype, .f16)
        XCTAssertEqual(info.shape, [24])
        XCTAssertEqual(info.dataOffsets.count, 48)
        XCTAssertEqual(info.fileRange.lowerBound, file.dataStart + info.dataOffsets.lowerBound)
        XCTAssertEqual(file.shape(of: "bf16"), [4, 6])
        XCTAssertNil(file.shape(of: "nope"))
    }

    /// `readRows` converts just the rows asked for, in their order (repeats included), as `read`
    /// gives them: the file's own bytes for each dtype, and the protocol's default over `read`.
    func testReadRowsGivesTheRowsOfTheWholeTensor() throws {
        let dir = try makeWeightsTestDirectory(self)
        var rng = WeightsTestRNG(seed: 11)
        let values = (0..<(7 * 12)).map { _ in Float.random(in: -4...4, using: &rng) }
        let url = try writeSafetensors(dir.appendingPathComponent("rows.safetensors"),
                                       [("f32", .f32, [7, 12], values), ("f16", .f16, [7, 12], values), ("bf16", .bf16, [7, 12], values)])
        let file = try SafetensorsFile(url: url)
        final class Whole: TensorSource, @unchecked Sendable {  // only `read`: takes the default `readRows`
            let file: SafetensorsFile
            init(_ file: SafetensorsFile) { self.file = file }
            var sourceDescription: String { "whole" }
            var keys: [String] { file.keys }
            func shape(of key: String) -> [Int]? { file.shape(of: key) }
            func read(_ key: String, into buffer: UnsafeMutableBufferPointer<Float>) throws { try file.read(key, into: buffer) }
        }
        let rows = [6, 0, 3, 3]
        for source in [file, Whole(file)] as [TensorSource] {
            for name in ["f32", "f16", "bf16"] {
                let whole = try file.tensor(name).data
                var got = [Float](repeating: .nan, count: rows.count * 12)
                try got.withUnsafeMutableBufferPointer { try source.readRows(name, rows: rows, width: 12, into: $0) }
                XCTAssertEqual(got, rows.flatMap { whole[($0 * 12)..<(($0 + 1) * 12)] }, "\(source.sourceDescription) \(name)")
            }
        }
    }

    /// A tensor larger than the parallel threshold converts identically to element-wise conversion.
    func testLargeTensorConvertsOnAllCoresIdentically() throws {
        let dir = try makeWeightsTestDirectory(self)
        let n = FloatConversion.parallelThreshold + 12_345
        // Spread-out fp16 bit patterns (subnormals included; bit 10 cleared, so never inf or NaN).
        let values = (0..<n).map { Float(Float16(bitPattern: UInt16(truncatingIfNeeded: $0 &* 40_503) & 0xFBFF)) }
        let url = try writeSafetensors(dir.appendingPathComponent("big.safetensors"), [("w", .f16, [n], values)])
        let file = try SafetensorsFile(url: url)
        let got = try file.tensor("w").data
        let expected = try file.withRawBytes(of: "w") { raw in
            (0..<n).map { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
        }
        XCTAssertEqual(got, expected)
    }

    /// Files from writers that do not pad the header leave the data unaligned; reads still work.
    func testUnalignedDataSection() throws {
        let dir = try makeWeightsTestDirectory(self)
        var data: [UInt8] = []
        for v: Float in [1.5, -2, 3.25] { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        for v: Int64 in [0, 1, 76] { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        for v: UInt16 in [0x3C00, 0xC000] { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"ids":{"dtype":"I64","shape":[1,3],"data_offsets":[12,36]},"h":{"dtype":"F16","shape":[2],"data_offsets":[36,40]}}"#
        XCTAssertNotEqual((8 + header.utf8.count) % 4, 0, "the test needs an unaligned data section")
        let url = try writeTestFile(safetensorsBytes(header: header, data: data), "u.safetensors", in: dir)
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(try file.tensor("a").data, [1.5, -2, 3.25])
        XCTAssertEqual(try file.tensor("ids").data, [0, 1, 76])
        XCTAssertEqual(try file.tensor("h").data, [1, -2])
    }

    func testWriterStreamsChunksAcrossTensorBoundaries() throws {
        let dir = try makeWeightsTestDirectory(self)
        let url = dir.appendingPathComponent("s.safetensors")
        let writer = try SafetensorsWriter(url: url, tensors: [
            .init(name: "a", dtype: .f32, shape: [3]),
            .init(name: "z", dtype: .f16, shape: [0]),
            .init(name: "b", dtype: .f16, shape: [2, 2]),
            .init(name: "ids", dtype: .i64, shape: [2]),
        ])
        XCTAssertEqual(writer.nextTensor, "a")
        try writer.append([1, 2])
        try writer.append([3, 4, 5])  // finishes a, skips the empty z, starts b
        XCTAssertEqual(writer.nextTensor, "b")
        try writer.append([6, 7])
        let ids: [Int64] = [5, 9]
        try ids.withUnsafeBytes { try writer.appendRaw($0) }
        XCTAssertNil(writer.nextTensor)
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path), "the file appears only at finish()")
        try writer.finish()
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(try file.tensor("a").data, [1, 2, 3])
        XCTAssertEqual(try file.tensor("b").data, [4, 5, 6, 7])
        XCTAssertEqual(try file.tensor("ids").data, [5, 9])
        XCTAssertEqual(file.names, ["a", "z", "b", "ids"])
    }

    func testReadErrorsNameTheTensor() throws {
        let dir = try makeWeightsTestDirectory(self)
        let url = try writeTestFile(safetensorsBytes(
            header: #"{"e":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]},"w":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#,
            data: [0, 0, 0, 0, 0, 0]), "r.safetensors", in: dir)
        let file = try SafetensorsFile(url: url)
        var two = [Float](repeating: 0, count: 2)
        XCTAssertEqual(safetensorsError { try two.withUnsafeMutableBufferPointer { try file.read("e", into: $0) } },
                       .unsupportedDtype(path: url.path, tensor: "e", dtype: "F8_E4M3"))
        XCTAssertEqual(safetensorsError { _ = try file.tensor("missing") }, .noSuchTensor(path: url.path, tensor: "missing"))
        XCTAssertEqual(safetensorsError { try two.withUnsafeMutableBufferPointer { try file.read("w", into: $0) } },
                       .bufferSizeMismatch(path: url.path, tensor: "w", elements: 1, bufferCount: 2))
        XCTAssertTrue(SafetensorsError.unsupportedDtype(path: "p", tensor: "e", dtype: "F8_E4M3").description.contains("'e'"))
    }

    /// Every dtype string of the format is accepted in a header, with its size rule.
    func testEveryDefinedDtypeIsAcceptedInTheHeader() throws {
        let dir = try makeWeightsTestDirectory(self)
        for dtype in SafetensorsDType.allCases {
            let bytes = 8 * dtype.bitWidth / 8  // 8 elements
            let url = try writeTestFile(safetensorsBytes(
                header: "{\"t\":{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[2,4],\"data_offsets\":[0,\(bytes)]}}",
                data: [UInt8](repeating: 0, count: bytes)), "\(dtype.rawValue).safetensors", in: dir)
            let file = try SafetensorsFile(url: url)
            XCTAssertEqual(file.info("t")?.dtype, dtype)
            XCTAssertEqual(file.info("t")?.elementCount, 8)
        }
    }
}
