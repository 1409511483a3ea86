import COpenBLAS
import Foundation

/// The one place sdrepl calls BLAS. Every matrix product in the engine goes through
/// `BLAS.sgemm`, so swapping the library, counting FLOPs, changing threading or the inputs'
/// precision (`withPrecision`) happens here.
///
/// Matrices are row-major; `lda`, `ldb`, `ldc` are row strides in elements, which lets a caller
/// multiply a strided sub-matrix (one attention head inside `[tokens, heads * dim]`, one band of
/// output rows inside a feature map) without copying it.
public enum BLAS {
    /// `C = alpha * op(A) · op(B) + beta * C`, row-major, where `op(X)` is `X` or `Xᵀ`.
    ///
    /// - Parameters:
    ///   - transA: use `Aᵀ`; `A` is then stored `[k, m]`.
    ///   - transB: use `Bᵀ`; `B` is then stored `[n, k]` (PyTorch `Linear` weights are `[out, in]`).
    ///   - m, n, k: `op(A)` is `[m, k]`, `op(B)` is `[k, n]`, `C` is `[m, n]`.
    ///   - lda, ldb, ldc: row strides of the stored matrices.
    ///   - beta: 0 overwrites `C` (its old contents are ignored, even NaN), 1 accumulates.
    ///   - inputs: the inputs' precision; nil: `precision`, as `withPrecision` set it (pass `.fp32`
    ///     for arithmetic on weights themselves, such as merging a LoRA, which bf16 must not round).
    @inline(__always)
    public static func sgemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        inputs: MatmulPrecision? = nil
    ) {
        if m == 0 || n == 0 { return }
        if (inputs ?? precision) == .bf16 && k > 0 {
            bf16gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                     beta: beta, c: c, ldc: ldc)
            return
        }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// The number of threads OpenBLAS uses for one call (it defaults to the core count, or
    /// `OPENBLAS_NUM_THREADS`).
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// What an image's exact bits depend on besides its recipe, for a transcript's header:
    /// OpenBLAS's kernel for this CPU and its thread count, and the engine's worker count, since
    /// OpenBLAS sums the same product in another order with another thread count or kernel
    /// (measured: every thread count from 1 to 4 gives other bits), and the engine's own kernels'
    /// version (`EngineNumerics`). Replays where all four are the same give the same hashes.
    public static var numerics: String {
        let core = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
        let blas = "OpenBLAS \(core) kernels, \(threads) BLAS thread\(threads == 1 ? "" : "s"), \(Parallel.workers) core\(Parallel.workers == 1 ? "" : "s")"
        return Tensor.numerics.numericsToken.map { blas + ", " + $0 } ?? blas
    }

    private static let threadLock = NSLock()
    nonisolated(unsafe) private static var singleThreadDepth = 0
    nonisolated(unsafe) private static var savedThreads = 1

    /// Runs `body` with OpenBLAS limited to one thread, for code that calls `sgemm` from several
    /// of our own workers at once (each worker's small GEMM on one core, instead of every worker
    /// asking OpenBLAS for every core and oversubscribing the machine).
    ///
    /// Nested and concurrent uses are counted; the previous thread count comes back when the
    /// last one ends.
    public static func withSingleThread<R>(_ body: () throws -> R) rethrows -> R {
        threadLock.lock()
        if singleThreadDepth == 0 {
            savedThreads = Int(openblas_get_num_threads())
            if savedThreads != 1 { openblas_set_num_threads(1) }
        }
        singleThreadDepth += 1
        threadLock.unlock()
        defer {
            threadLock.lock()
            singleThreadDepth -= 1
            if singleThreadDepth == 0 && savedThreads != 1 { openblas_set_num_threads(Int32(savedThreads)) }
            threadLock.unlock()
        }
        return try body()
    }
}
