import CBF16
import COpenBLAS
import Foundation

/// The number format a matrix product takes its inputs in; the sum is fp32 either way.
public enum MatmulPrecision: String, Sendable, Codable, CaseIterable {
    /// fp32 inputs: the engine's pixels, the same as diffusers' fp32 ones.
    case fp32
    /// Inputs rounded to bfloat16 (8 significant bits), summed in fp32: twice the throughput on CPUs
    /// with bf16 instructions (AVX512_BF16, AMX), slightly other pixels.
    case bf16
}

/// Where bf16 products run on this machine, found once.
///
/// `SDREPL_BF16=off` hides the CPU's bf16 (to see what a machine without it says);
/// `SDREPL_BF16=emulate` rounds the inputs to bf16 and multiplies them with the fp32 sgemm, which sums
/// as the bf16 instructions do: the same numbers at fp32 speed, for checking bf16 on a CPU without it.
public enum BF16Support {
    public enum Backend: String, Sendable {
        /// oneDNN's matmul on the CPU's bf16 instructions.
        case oneDNN
        /// Rounded inputs through the fp32 sgemm.
        case emulated
    }

    /// The backend bf16 products use, or why there is none (tests set it to try a backend).
    nonisolated(unsafe) public internal(set) static var detected: Result<Backend, Unavailable> =
        detect(environment: ProcessInfo.processInfo.environment)

    public struct Unavailable: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// The backend, or nil when this machine has none.
    public static var backend: Backend? { try? detected.get() }

    /// What bf16 images' exact bits depend on here, for a transcript: oneDNN sums in another order
    /// than the emulation, and its AMX kernels in another than its AVX512_BF16 ones. nil without bf16.
    public static var numerics: String? {
        switch backend {
        case .oneDNN?: "oneDNN on \(String(cString: sd_dnnl_bf16_isa()))"
        case .emulated?: "emulated (inputs rounded to bf16, OpenBLAS's fp32 sgemm)"
        case nil: nil
        }
    }

    /// Runs `body` with bf16 products emulated, whatever the machine has: to measure bf16's error
    /// where the CPU has no bf16 (the benchmark's accuracy figure).
    public static func emulating<R>(_ body: () throws -> R) rethrows -> R {
        let saved = detected
        detected = .success(.emulated)
        defer { detected = saved }
        return try body()
    }

    static func detect(environment: [String: String]) -> Result<Backend, Unavailable> {
        switch environment["SDREPL_BF16"]?.lowercased() {
        case "off": return .failure(Unavailable(description: "bf16 is turned off (SDREPL_BF16=off)"))
        case "emulate": return .success(.emulated)
        default:
            var reason: UnsafePointer<CChar>?
            if sd_dnnl_bf16_available(&reason) != 0 { return .success(.oneDNN) }
            return .failure(Unavailable(description: reason.map { String(cString: $0) } ?? "oneDNN has no bf16 matmul here"))
        }
    }
}

extension BLAS {
    /// The precision `sgemm` multiplies in now; `withPrecision` sets it for a stretch of work.
    nonisolated(unsafe) public private(set) static var precision: MatmulPrecision = .fp32

    /// Runs `body` with every `sgemm` in it (from any thread) taking bf16 or fp32 inputs.
    ///
    /// One precision holds for the whole process while `body` runs: the engine runs one generation
    /// at a time, and what runs beside it (a preview decode) may as well share it.
    /// - Precondition: bf16 only where `BF16Support.backend` is not nil.
    public static func withPrecision<R>(_ precision: MatmulPrecision, _ body: () throws -> R) rethrows -> R {
        precondition(precision == .fp32 || BF16Support.backend != nil, "bf16 asked for where this machine has none")
        let saved = self.precision
        self.precision = precision
        defer { self.precision = saved }
        return try body()
    }

    /// `sgemm` with both inputs rounded to bf16 and an fp32 sum, on `BF16Support.backend`.
    static func bf16gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                         a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                         beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        // As stored: `A` is [m, k] or [k, m], `B` is [k, n] or [n, k]; packing keeps the orientation.
        let (aRows, aCols) = transA ? (k, m) : (m, k)
        let (bRows, bCols) = transB ? (n, k) : (k, n)
        if BF16Support.backend == .oneDNN,
           dnnlGemm(bf16: true, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                    b: b, ldb: ldb, beta: beta, c: c, ldc: ldc) {
            return
        }
        // Emulated, or a shape oneDNN has no bf16 matmul for: the same rounding through the fp32 sgemm.
        let rounded = UnsafeMutablePointer<Float>.allocate(capacity: m * k + k * n)
        defer { rounded.deallocate() }
        sd_bf16_round(a, aRows, aCols, lda, rounded)
        sd_bf16_round(b, bRows, bCols, ldb, rounded + m * k)
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, rounded, Int32(aCols), rounded + m * k, Int32(bCols),
                    beta, c, Int32(ldc))
    }

    /// `sgemm` through oneDNN's matmul, the inputs packed (and rounded to bf16 when `bf16`).
    /// - Returns: false when oneDNN has no matmul for it here, or could not run it (no memory for its
    ///   scratchpad or stream; oneDNN checks a product's arguments before it writes anything): C is
    ///   untouched then, and the caller computes it another way.
    static func dnnlGemm(bf16: Bool, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                         a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                         beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        let key = DNNLMatmuls.Key(m: m, n: n, k: k, transA: transA, transB: transB, ldc: ldc, alpha: alpha, beta: beta, bf16: bf16)
        guard let matmul = DNNLMatmuls.shared.matmul(for: key) else { return false }
        let (aRows, aCols) = transA ? (k, m) : (m, k)
        let (bRows, bCols) = transB ? (n, k) : (k, n)
        let elementSize = bf16 ? 2 : 4
        let packed = UnsafeMutableRawPointer.allocate(byteCount: (m * k + k * n) * elementSize, alignment: 64)
        defer { packed.deallocate() }
        let packedB = packed + m * k * elementSize
        if bf16 {
            sd_bf16_pack(a, aRows, aCols, lda, packed.assumingMemoryBound(to: UInt16.self))
            sd_bf16_pack(b, bRows, bCols, ldb, packedB.assumingMemoryBound(to: UInt16.self))
        } else {
            for (source, rows, cols, ld, target) in [(a, aRows, aCols, lda, packed), (b, bRows, bCols, ldb, packedB)] {
                for row in 0..<rows {
                    (target + row * cols * 4).copyMemory(from: source + row * ld, byteCount: cols * 4)
                }
            }
        }
        return sd_dnnl_matmul_run(matmul, packed, packedB, c, Int32(threads)) == 0
    }
}

/// oneDNN matmuls made once per shape (making one compiles its kernel) and kept for the process, as
/// is oneDNN's refusal of a shape, so that its callers fall back without asking again on every call.
final class DNNLMatmuls: @unchecked Sendable {
    static let shared = DNNLMatmuls()

    struct Key: Hashable {
        var m, n, k: Int
        var transA, transB: Bool
        var ldc: Int
        var alpha, beta: Float
        /// bf16 inputs; otherwise fp32.
        var bf16: Bool
    }

    private let lock = NSLock()
    /// nil for a shape oneDNN has no matmul for.
    private var made: [Key: OpaquePointer?] = [:]

    /// The matmul for `key`, or nil when oneDNN has none for it.
    func matmul(for key: Key) -> OpaquePointer? {
        lock.lock()
        defer { lock.unlock() }
        if let found = made[key] { return found }
        var reason: UnsafePointer<CChar>?
        let matmul = sd_dnnl_matmul_create(key.m, key.n, key.k, key.transA ? 1 : 0, key.transB ? 1 : 0, key.ldc,
                                           key.alpha, key.beta, key.bf16 ? 1 : 0, &reason)
        made[key] = .some(matmul)
        return matmul
    }
}
