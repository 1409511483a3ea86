import CKernels
import Foundation
import XCTest
@testable import NN
import Diffusion

/// Winograd F(4×4, 3×3) convolution (Tensor+Winograd.swift) against direct convolution in Double.
///
/// Tolerance: max abs error ≤ 2e-5 × √(9·Cin) on inputs and weights uniform in [−1, 1] (outputs
/// of order √(9·Cin)/3). Winograd's transforms in Float32 cost more than direct convolution's
/// rounding (measured worst here: 1.0e-5 × √(9·Cin), 2.3e-4 on outputs of ±18 with 64 channels),
/// still five times under `TensorGEMMTests`' 1e-4 × √(9·Cin), while an indexing mistake gives
/// errors of order 1.
final class WinogradTests: XCTestCase {
    private func check(n: Int, cin: Int, cout: Int, h: Int, w: Int, bias: Bool, seed: UInt64,
                       file: StaticString = #filePath, line: UInt = #line) {
        let x = Tensor.random([n, cin, h, w], seed: seed)
        let weight = Tensor.random([cout, cin, 3, 3], seed: seed + 1)
        let b = bias ? Tensor.random([cout], seed: seed + 2) : nil
        let want = TensorGEMMTests.referenceConv(x, weight, b, stride: 1, padding: 1)
        // Both numerics: the engine's own products, and OpenBLAS's, which replays of older transcripts use.
        defer { Tensor.numerics = .current }
        for numerics in EngineNumerics.allCases {
            Tensor.numerics = numerics
            let got = x.conv2d(weight: weight, bias: b, stride: 1, padding: 1, strategy: .winograd)
            assertClose(got, want, tolerance: 2e-5 * Float(9 * cin).squareRoot(), "\(n)×\(cin)×\(h)×\(w) → \(cout), numerics \(numerics.rawValue)",
                        file: file, line: line)
        }
    }

    /// Sizes around the 4-pixel tiles and the 8-tile vector groups: one pixel, partial tiles,
    /// exactly one group (32 px), a group and a ragged one (33, 67 px), non-square, batch 2.
    func testMatchesDirectConvolutionAtEveryEdge() {
        for (i, (h, w)) in [(1, 1), (3, 5), (4, 4), (5, 8), (8, 32), (13, 33), (6, 67), (36, 9)].enumerated() {
            check(n: 1 + i % 2, cin: 3 + i, cout: 2 + 2 * i, h: h, w: w, bias: i % 3 != 0, seed: 300 + UInt64(10 * i))
        }
    }

    /// Enough tiles for many blocks of tile rows over both images of a batch (a 67-px map has 17
    /// tiles a row, so a block holds 7 rows and 34 rows make 5 blocks, split over the workers),
    /// with channel counts that are not multiples of the 8 lanes of the weight transform.
    func testManyBlocksAcrossTheBatch() {
        check(n: 2, cin: 19, cout: 21, h: 67, w: 67, bias: true, seed: 400)
        check(n: 1, cin: 64, cout: 32, h: 48, w: 64, bias: false, seed: 410)
    }

    /// Kernels whose transformed weights exceed `winogradWeightBudget` (here 768 × 640 × 36 floats,
    /// 70 MB) run in slices of output channels (606 and 34), each written into its place.
    func testWideKernelsRunInSlicesOfOutputChannels() {
        XCTAssertGreaterThan(36 * 768 * 640, Tensor.winogradWeightBudget)
        check(n: 1, cin: 768, cout: 640, h: 5, w: 6, bias: true, seed: 430)
    }

    /// The weight transform alone: U = G·g·Gᵀ for a kernel whose transform is known in closed form.
    /// A kernel of all ones gives U[a][b] = (G·1)[a]·(G·1)[b] with G·1 = (1/4, −1/2, −1/6, 7/24, 1/8, 1).
    func testWeightTransformOfAKernelOfOnes() {
        let u = Tensor.winogradWeights(Tensor(shape: [1, 1, 3, 3], repeating: 1))
        let g1: [Float] = [0.25, -0.5, -1.0 / 6, 7.0 / 24, 1.0 / 8, 1]
        for a in 0..<6 { for b in 0..<6 {
            XCTAssertEqual(u[6 * a + b], g1[a] * g1[b], accuracy: 1e-6, "U[\(a)][\(b)]")
        } }
    }

    /// The convolutions leave their scratch (V, M, patch matrices, padded bands) and their output
    /// unfilled and write every element they read: with the allocator's free blocks full of NaN
    /// first, every strategy still gives the direct result, partial tile groups and bands included.
    func testUnfilledScratchNeverReachesTheOutput() {
        // As the programs run: freed blocks of any size stay in the heap for reuse, poison included.
        MemoryMode.keepFreedBlocksForReuse()
        let x = Tensor.random([2, 12, 33, 37], seed: 700), weight = Tensor.random([10, 12, 3, 3], seed: 701)
        let b = Tensor.random([10], seed: 702)
        let want = TensorGEMMTests.referenceConv(x, weight, b, stride: 1, padding: 1)
        for strategy in [Tensor.ConvStrategy.winograd, .shifted, .im2col] {
            for _ in 0..<3 {
                // Blocks of many sizes, freed: the allocator hands them out again to the convolution.
                var poison: [[Float]] = []
                for size in stride(from: 1 << 10, through: 1 << 20, by: 1 << 14) { poison.append([Float](repeating: .nan, count: size)) }
                poison.removeAll()
                let got = x.conv2d(weight: weight, bias: b, stride: 1, padding: 1, columnBudget: 4096, strategy: strategy)
                XCTAssertFalse(got.data.contains { $0.isNaN }, "\(strategy)")
                assertClose(got, want, tolerance: 2e-5 * Float(9 * 12).squareRoot(), "\(strategy)")
            }
        }
    }

    /// Blocks are split over the workers by a fixed partition, so results repeat bit for bit.
    func testBitIdenticalAcrossRuns() {
        let x = Tensor.random([2, 16, 40, 40], seed: 420), weight = Tensor.random([24, 16, 3, 3], seed: 421)
        let b = Tensor.random([24], seed: 422)
        let first = x.conv2d(weight: weight, bias: b, stride: 1, padding: 1, strategy: .winograd)
        for _ in 0..<3 { XCTAssertEqual(x.conv2d(weight: weight, bias: b, stride: 1, padding: 1, strategy: .winograd).data, first.data) }
    }

    /// The two products differ in their last bits (so transcripts name theirs), never by more than rounding.
    func testTheProductsDifferOnlyInRounding() {
        let x = Tensor.random([1, 64, 32, 32], seed: 440), weight = Tensor.random([64, 64, 3, 3], seed: 441)
        defer { Tensor.numerics = .current }
        Tensor.numerics = .v1
        let blas = x.conv2d(weight: weight, bias: nil, stride: 1, padding: 1, strategy: .winograd)
        Tensor.numerics = .v2
        let panels = x.conv2d(weight: weight, bias: nil, stride: 1, padding: 1, strategy: .winograd)
        XCTAssertNotEqual(blas.data, panels.data)
        assertClose(panels, blas, tolerance: 2e-5 * Float(9 * 64).squareRoot(), "panels against OpenBLAS")
    }

    /// `sd_sgemm_panels` sums each element as its header says, bit for bit: fused multiply-add chains
    /// over blocks of 256 values of k, in order, the blocks added in order; the portable C path (CPUs
    /// without AVX2) gives the same bits. Every row remainder of the 6-row kernel (m = 1 … 13), a
    /// partial last panel, one, two and three k blocks.
    func testThePanelProductSumsInItsStatedOrder() {
        var state: UInt64 = 7
        func random() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
        for m in 1...13 {
            let (n, k) = [(16, 3), (7, 64), (33, 300), (20, 256), (48, 600)][m % 5]
            let lda = k + 3, panels = (n + 15) / 16, ldc = 16 * panels + 5
            let a = (0..<(m * lda)).map { _ in random() }
            let b = (0..<(panels * 16 * k)).map { _ in random() }
            var c = [Float](repeating: .nan, count: m * ldc)
            sd_sgemm_panels(Int32(m), Int32(n), Int32(k), a, Int32(lda), b, &c, Int32(ldc))
            var portable = [Float](repeating: .nan, count: m * ldc)
            sd_sgemm_panels_portable(Int32(m), Int32(n), Int32(k), a, Int32(lda), b, &portable, Int32(ldc))
            for i in 0..<m {
                for col in 0..<(16 * panels) {
                    var total: Float = 0
                    for k0 in stride(from: 0, to: k, by: 256) {
                        var chain: Float = 0
                        for kk in k0..<min(k, k0 + 256) {
                            chain = chain.addingProduct(a[i * lda + kk], b[(col / 16) * 16 * k + kk * 16 + col % 16])
                        }
                        total = k0 == 0 ? chain : total + chain
                    }
                    XCTAssertEqual(c[i * ldc + col].bitPattern, total.bitPattern, "m \(m) n \(n) k \(k): C[\(i)][\(col)]")
                    XCTAssertEqual(portable[i * ldc + col].bitPattern, total.bitPattern, "portable, m \(m) n \(n) k \(k): C[\(i)][\(col)]")
                }
            }
        }
    }

    /// `conv2d` picks Winograd for SD1.5's 3×3 convolutions at 512×512 down to the UNet's 16×16
    /// level with guidance (32 tiles), and the older paths for small maps, strides of 2 and 1×1 kernels.
    func testStrategyByShape() {
        func strategy(n: Int, k: Int = 3, stride: Int = 1, padding: Int = 1, size: Int) -> Tensor.ConvStrategy {
            Tensor.convStrategy(kernel: k, stride: stride, padding: padding, batch: n, outHeight: size, outWidth: size)
        }
        XCTAssertEqual(strategy(n: 1, size: 512), .winograd)  // VAE's last level
        XCTAssertEqual(strategy(n: 1, size: 64), .winograd)   // VAE's first level: 256 tiles
        XCTAssertEqual(strategy(n: 2, size: 64), .winograd)
        XCTAssertEqual(strategy(n: 2, size: 32), .winograd)
        XCTAssertEqual(strategy(n: 2, size: 16), .winograd)   // 32 tiles
        XCTAssertNotEqual(strategy(n: 1, size: 16), .winograd)
        XCTAssertNotEqual(strategy(n: 2, size: 8), .winograd)
        XCTAssertNotEqual(strategy(n: 1, stride: 2, size: 32), .winograd)
        XCTAssertEqual(strategy(n: 2, k: 1, padding: 0, size: 64), .direct)
    }
}
