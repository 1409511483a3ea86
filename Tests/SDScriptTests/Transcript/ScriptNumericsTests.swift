import Diffusion
@testable import SDScript
import XCTest

/// A transcript's `# numerics:` line, and `run --check`'s note when a replay's differ.
final class ScriptNumericsTests: XCTestCase {
    func testACheckUnderOtherNumericsSaysTheHashesWillDiffer() {
        let at = SourceLocation(file: "s.sdscript", line: 3)
        XCTAssertNil(ScriptNumerics.note("# numerics: " + BLAS.numerics, at: at), "the same: nothing to say")
        XCTAssertNil(ScriptNumerics.note("# a comment", at: at))
        let other = "OpenBLAS Haswell kernels, 8 BLAS threads, 8 cores"
        XCTAssertEqual(ScriptNumerics.note("# numerics: " + other, at: at),
                       "s.sdscript:3: check: recorded with \(other), replayed with \(BLAS.numerics): the hashes are expected to differ "
                       + "(OpenBLAS sums in another order); OPENBLAS_NUM_THREADS and taskset give a replay the recorded thread and core counts")
    }

    /// A recorded transcript's header asks for the engine numerics it was made with: version 1
    /// before the `# numerics:` line named versions, then whatever that line names; a script written
    /// by hand has no header and runs with the current version, as does a version from a newer sdrepl.
    func testTranscriptsAskForTheEngineNumericsTheyWereRecordedWith() {
        XCTAssertEqual(ScriptNumerics.engineNumerics(asked: "# sdrepl 0.1.0 session, started 2026-12-06T22:55:47Z"), .v1)
        XCTAssertEqual(ScriptNumerics.engineNumerics(asked: "# sdrepl merge of 2 shard transcripts: a.sdscript, b.sdscript"), .v1)
        XCTAssertEqual(ScriptNumerics.engineNumerics(asked: "# numerics: OpenBLAS Zen kernels, 2 BLAS threads, 2 cores"), .v1)
        XCTAssertEqual(ScriptNumerics.engineNumerics(asked: "# numerics: OpenBLAS Zen kernels, 2 BLAS threads, 2 cores, engine numerics 2"), .v2)
        XCTAssertEqual(ScriptNumerics.engineNumerics(asked: "# numerics: OpenBLAS Zen kernels, 2 BLAS threads, 2 cores, engine numerics 9"), .current)
        for line in ["# a comment", "prompt a sdrepl session, started by hand", "gen", "# bf16 numerics: emulated"] {
            XCTAssertNil(ScriptNumerics.engineNumerics(asked: line), line)
        }
        let newer = "OpenBLAS Zen kernels, 2 BLAS threads, 2 cores, engine numerics 9"
        XCTAssertEqual(ScriptNumerics.note("# numerics: " + newer, at: SourceLocation(file: "s.sdscript", line: 2)),
                       "s.sdscript:2: check: recorded with engine numerics 9, a newer sdrepl's (this one has 1 to 2): "
                       + "the hashes are expected to differ; check it with the sdrepl that recorded it")
        XCTAssertEqual(Tensor.numerics, .current)
        XCTAssertTrue(BLAS.numerics.hasSuffix(", engine numerics \(EngineNumerics.current.rawValue)"), BLAS.numerics)
    }

    /// The header names this process's numerics, read from OpenBLAS itself.
    func testTheNumericsNameOpenBLASsKernelAndThreads() {
        XCTAssertTrue(BLAS.numerics.hasPrefix("OpenBLAS "), BLAS.numerics)
        XCTAssertTrue(BLAS.numerics.contains(" kernels, \(BLAS.threads) BLAS thread"), BLAS.numerics)
        XCTAssertFalse(BLAS.numerics.contains("unknown"), BLAS.numerics)
    }
}
