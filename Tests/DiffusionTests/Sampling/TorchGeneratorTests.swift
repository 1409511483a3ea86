import Foundation
import XCTest
@testable import Diffusion
@testable import NN
import TestSupport

/// `TorchGenerator` against numbers torch 2.15 produced on an AVX2/AVX-512 x86 CPU
/// (`Tests/Fixtures/rng`, written by `Tests/Fixtures/make_fixtures.py`). Every comparison is
/// bit-exact: the initial latents of a seed must be the very same Float32 values as diffusers'.
final class TorchGeneratorTests: XCTestCase {
    /// `rng/manifest.json`: the seeds and sizes of each file's draws.
    private struct Manifest: Decodable {
        /// The sizes drawn from one seed in `randn_large.safetensors`.
        struct Large: Decodable {
            let seed: UInt64
            let sizes: [Int]
        }
        let seeds: [UInt64]
        let large: [Large]
        let sequenceSizes: [Int]
        let sequenceSeeds: [UInt64]
        enum CodingKeys: String, CodingKey {
            case seeds, large
            case sequenceSizes = "sequence_sizes"
            case sequenceSeeds = "sequence_seeds"
        }
    }

    private func manifest() throws -> Manifest {
        try Fixture.json(Manifest.self, "rng/manifest.json")
    }

    private func fixture(_ name: String) throws -> SafetensorsFile {
        try Fixture.tensors("rng/\(name)")
    }

    /// Fails on the first element whose bits differ, naming the key, the index and both values.
    private func assertBitExact(_ actual: [Float], _ expected: Tensor, _ key: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, "\(key): count", file: file, line: line)
        for (i, (a, e)) in zip(actual, expected.data).enumerated() where a.bitPattern != e.bitPattern {
            XCTFail("\(key)[\(i)]: got \(a) (0x\(String(a.bitPattern, radix: 16))), torch \(e) "
                    + "(0x\(String(e.bitPattern, radix: 16)))", file: file, line: line)
            return
        }
    }

    // torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed))  # n = 1...40
    // Below 16 elements torch takes the scalar Box–Muller path in Double, from 16 on the AVX2
    // block path with its last partial block recomputed: sizes 1...40 cover both and the seam.
    func testRandnSmallSizesAreBitExact() throws {
        let file = try fixture("randn_small.safetensors")
        let seeds = try manifest().seeds
        XCTAssertGreaterThanOrEqual(seeds.count, 8)
        for seed in seeds {
            for n in 1...40 {
                let key = "seed=\(seed)/n=\(n)"
                var generator = TorchGenerator(seed: seed)
                assertBitExact(generator.randn(count: n), try file.tensor(key), key)
            }
        }
    }

    // torch.rand(n, generator=torch.Generator("cpu").manual_seed(seed))  # n = 1...40
    func testRandSmallSizesAreBitExact() throws {
        let file = try fixture("rand_small.safetensors")
        for seed in try manifest().seeds {
            for n in 1...40 {
                let key = "seed=\(seed)/n=\(n)"
                var generator = TorchGenerator(seed: seed)
                assertBitExact(generator.rand(count: n), try file.tensor(key), key)
            }
        }
    }

    // torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed))
    // n = 24576 is torch.randn((1, 4, 64, 96)).flatten(), the latents of a 512×768 image.
    func testRandnLargeSizesAreBitExact() throws {
        let file = try fixture("randn_large.safetensors")
        let manifest = try manifest()
        XCTAssertTrue(manifest.large.contains { $0.sizes.contains(24576) })
        XCTAssertEqual(file.tensors.count, manifest.large.map(\.sizes.count).reduce(0, +), "the manifest lists every draw")
        for (seed, sizes) in manifest.large.map({ ($0.seed, $0.sizes) }) {
            for n in sizes {
                let key = "seed=\(seed)/n=\(n)"
                var generator = TorchGenerator(seed: seed)
                assertBitExact(generator.randn(count: n), try file.tensor(key), key)
            }
        }
    }

    // g = torch.Generator("cpu").manual_seed(seed); [torch.randn(n, generator=g) for n in sizes]
    // Successive draws share the engine and, on the scalar path, the cached second Box–Muller
    // value (sizes 5, 3, 1, 15 leave one behind or use it), as ancestral samplers do.
    func testSuccessiveDrawsAreBitExact() throws {
        let file = try fixture("randn_sequence.safetensors")
        let manifest = try manifest()
        for seed in manifest.sequenceSeeds {
            var generator = TorchGenerator(seed: seed)
            for (i, n) in manifest.sequenceSizes.enumerated() {
                let key = "seed=\(seed)/draw=\(i)/n=\(n)"
                assertBitExact(generator.randn(count: n), try file.tensor(key), key)
            }
        }
    }

    // Same, alternating torch.randn (even draws) and torch.rand (odd draws) on one generator.
    func testMixedRandnAndRandDrawsAreBitExact() throws {
        let file = try fixture("randn_sequence.safetensors")
        let manifest = try manifest()
        for seed in manifest.sequenceSeeds {
            var generator = TorchGenerator(seed: seed)
            for (i, n) in manifest.sequenceSizes.enumerated() {
                let key = "seed=\(seed)/mixed/draw=\(i)/n=\(n)"
                let values = i % 2 == 0 ? generator.randn(count: n) : generator.rand(count: n)
                assertBitExact(values, try file.tensor(key), key)
            }
        }
    }

    // torch.randn((1, 4, 64, 96), generator=g).flatten() equals torch.randn(24576, generator=g):
    // the shape only labels the data.
    func testShapedDrawEqualsFlatDraw() throws {
        var shaped = TorchGenerator(seed: 0)
        var flat = TorchGenerator(seed: 0)
        let tensor = shaped.randn([1, 4, 64, 96])
        XCTAssertEqual(tensor.shape, [1, 4, 64, 96])
        XCTAssertEqual(tensor.data, flat.randn(count: 24576))
        let expected = try fixture("randn_large.safetensors").tensor("seed=0/n=24576")
        assertBitExact(tensor.data, expected, "seed=0/n=24576")
    }

    // manual_seed keeps only the low 32 bits: 2^32 + s and s give the same numbers.
    func testSeedIsReducedToItsLow32Bits() {
        var a = TorchGenerator(seed: 7)
        var b = TorchGenerator(seed: (1 << 32) + 7)
        XCTAssertEqual(a.randn(count: 20), b.randn(count: 20))
    }
}
