import Foundation
import TestSupport
import XCTest
@testable import NN
import Diffusion

/// Mutates valid files at random (fixed seed, so a failure repeats) and checks that opening and
/// reading every tensor either succeeds or throws a `SafetensorsError`: never a trap, a hang or
/// another error type. A crash here kills the test process, which XCTest reports as a failure.
final class SafetensorsFuzzTests: XCTestCase {
    func testRandomMutationsOnlyEverThrowTypedErrors() throws {
        let dir = try makeWeightsTestDirectory(self)
        var rng = WeightsTestRNG(seed: 0x5AFE_7E45)
        let seeds = try makeSeedFiles(in: dir, rng: &rng)
        let url = dir.appendingPathComponent("fuzz.safetensors")
        let iterations = 4_000
        var opened = 0, typedErrors = 0, tensorsRead = 0

        for iteration in 0..<iterations {
            let original = seeds[iteration % seeds.count]
            let mutated = mutate(original, rng: &rng)
            try Data(mutated).write(to: url)
            do {
                let file = try SafetensorsFile(url: url)
                opened += 1
                for info in file.tensors where info.dtype.isReadableAsFloat {
                    let values = try file.tensor(info.name)
                    XCTAssertEqual(values.count, info.elementCount)
                    tensorsRead += 1
                }
            } catch is SafetensorsError {
                typedErrors += 1
            } catch {
                XCTFail("iteration \(iteration): untyped error \(error)")
            }
        }
        // The mutations must exercise both outcomes, or the test proves nothing.
        XCTAssertGreaterThan(opened, iterations / 20, "too few mutants opened")
        XCTAssertGreaterThan(typedErrors, iterations / 2, "too few mutants were refused")
        XCTAssertGreaterThan(tensorsRead, 0)
    }

    private func makeSeedFiles(in dir: URL, rng: inout WeightsTestRNG) throws -> [[UInt8]] {
        func values(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -2...2, using: &rng) } }
        let a = try writeSafetensors(dir.appendingPathComponent("a.safetensors"), [
            ("model.diffusion_model.conv_in.weight", .f16, [4, 2, 3, 3], values(72)),
            ("model.diffusion_model.conv_in.bias", .f32, [4], values(4)),
            ("first_stage_model.post_quant_conv.weight", .bf16, [2, 2, 1, 1], values(4)),
            ("scalar", .f32, [], values(1)),
        ], metadata: ["format": "pt"])
        let b = try writeSafetensors(dir.appendingPathComponent("b.safetensors"), [
            ("x", .f32, [3], values(3)),
            ("empty", .f16, [0], []),
            ("y", .f16, [5], values(5)),
        ])
        // Unpadded header with an integer tensor.
        var data: [UInt8] = []
        for v: Int64 in [0, 1, 2] { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        let c = safetensorsBytes(header: #"{"position_ids":{"dtype":"I64","shape":[1,3],"data_offsets":[0,24]}}"#, data: data)
        return [Array(try Data(contentsOf: a)), Array(try Data(contentsOf: b)), c]
    }

    /// One random mutation: byte flips anywhere or in the header, a new header length, truncation,
    /// extension, or an edit of the header text aimed at its numbers and punctuation.
    private func mutate(_ original: [UInt8], rng: inout WeightsTestRNG) -> [UInt8] {
        var bytes = original
        let headerEnd = min(bytes.count, 8 + Int(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        switch Int.random(in: 0..<7, using: &rng) {
        case 0:  // flip a few random bits anywhere
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
            }
        case 1:  // replace header bytes with random bytes
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                bytes[Int.random(in: 8..<headerEnd, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
        case 2:  // a new header length: small shifts or anything at all
            let old = UInt64(headerEnd - 8)
            let new: UInt64 = Bool.random(using: &rng) ? old &+ UInt64(bitPattern: Int64.random(in: -16...16, using: &rng))
                                                       : UInt64.random(in: 0...UInt64.max, using: &rng)
            withUnsafeBytes(of: new.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        case 3:  // truncate
            bytes.removeLast(Int.random(in: 1...bytes.count, using: &rng))
        case 4:  // extend with junk
            bytes += (0..<Int.random(in: 1...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case 5:  // change a digit in the header (shapes and offsets)
            let digits = (8..<headerEnd).filter { (48...57).contains(bytes[$0]) }
            if let i = digits.randomElement(using: &rng) {
                bytes[i] = [UInt8](Array("0123456789-.e".utf8)).randomElement(using: &rng)!
            }
        default:  // replace a structural character in the header
            let structural = (8..<headerEnd).filter { Array("{}[]:,\"".utf8).contains(bytes[$0]) }
            if let i = structural.randomElement(using: &rng) {
                bytes[i] = Array("{}[]:,\" \\".utf8).randomElement(using: &rng)!
            }
        }
        return bytes
    }
}
