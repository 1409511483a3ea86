import Foundation
import TestSupport
import XCTest
@testable import NN

/// Mutates the torch.save fixtures at random (fixed seed, so a failure repeats) and checks that
/// opening and reading every tensor either succeeds or throws a `TorchFileError`: never a trap, a
/// hang or another error type. The libFuzzer target (`Fuzz/run.sh pickle`) does this at length.
final class TorchFileFuzzTests: XCTestCase {
    func testRandomMutationsOnlyEverThrowTypedErrors() throws {
        let dir = try makeWeightsTestDirectory(self)
        var rng = WeightsTestRNG(seed: 0x70_1C_4E)
        let seeds = try ["state_dict.ckpt", "protocol4.pt", "embedding.pt", "params_ema.pth"].map { try Fixture.bytes("pickle/\($0)") }
        let url = dir.appendingPathComponent("fuzz.ckpt")
        let iterations = 3_000
        var opened = 0, typedErrors = 0, tensorsRead = 0

        for iteration in 0..<iterations {
            let mutated = mutate(seeds[iteration % seeds.count], rng: &rng)
            try Data(mutated).write(to: url)
            do {
                let file = try TorchFile(url: url, pickles: .read)
                opened += 1
                for info in file.tensorInfos where info.dtype.isReadableAsFloat {
                    XCTAssertEqual(try file.tensor(info.name).count, info.elementCount)
                    tensorsRead += 1
                }
            } catch is TorchFileError {
                typedErrors += 1
            } catch {
                XCTFail("iteration \(iteration): untyped error \(error)")
            }
        }
        // The mutations must exercise both outcomes, or the test proves nothing.
        XCTAssertGreaterThan(opened, iterations / 20, "too few mutants opened")
        XCTAssertGreaterThan(typedErrors, iterations / 4, "too few mutants were refused")
        XCTAssertGreaterThan(tensorsRead, 0)
    }

    /// One random mutation, aimed mostly at data.pkl (which starts at byte 64 in torch's layout) and
    /// the central directory: bit flips, a changed pickle byte, truncation, junk at the end.
    private func mutate(_ original: [UInt8], rng: inout WeightsTestRNG) -> [UInt8] {
        var bytes = original
        let pickleEnd = min(bytes.count, 64 + 2_000)
        switch Int.random(in: 0..<5, using: &rng) {
        case 0:  // flip bits anywhere
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
            }
        case 1, 2:  // a pickle byte set to a random or an opcode-like value (the CRC then fails, so also skip it)
            let i = Int.random(in: 64..<pickleEnd, using: &rng)
            bytes[i] = Bool.random(using: &rng) ? UInt8.random(in: 0...255, using: &rng)
                                               : Array("()tRQqhKMJX}]ue.sa".utf8).randomElement(using: &rng)!
        case 3:  // truncate
            bytes.removeLast(Int.random(in: 1...bytes.count, using: &rng))
        default:  // a central-directory number (sizes, offsets, lengths) changed near the end
            let i = Int.random(in: max(0, bytes.count - 800)..<bytes.count, using: &rng)
            bytes[i] = UInt8.random(in: 0...255, using: &rng)
        }
        return bytes
    }
}
