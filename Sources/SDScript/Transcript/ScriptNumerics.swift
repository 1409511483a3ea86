import Diffusion

/// A transcript's `# numerics:` header line: what the images' exact bits depend on besides their
/// recipes (`BLAS.numerics`). OpenBLAS sums a product in another order with another thread count or
/// CPU kernel, so a transcript checked under other numerics gets other hashes, though the pictures
/// look alike; `run --check` says so before its first mismatch rather than after.
public enum ScriptNumerics {
    /// The comment's text before the numerics (`recordComment` adds the "# ").
    public static let label = "numerics: "
    static let prefix = "# " + label

    /// The note for a `# numerics:` line that differs from this process's, or nil.
    static func note(_ line: String, at location: SourceLocation) -> String? {
        guard line.hasPrefix(prefix) else { return nil }
        let recorded = String(line.dropFirst(prefix.count)), current = BLAS.numerics
        guard recorded != current else { return nil }
        return "\(location): check: recorded with \(recorded), replayed with \(current): the hashes are expected to differ "
            + "(OpenBLAS sums in another order); OPENBLAS_NUM_THREADS and taskset give a replay the recorded thread and core counts"
    }
}
