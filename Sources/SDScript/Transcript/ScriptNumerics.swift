import Diffusion

/// A transcript's `# numerics:` header line: what the images' exact bits depend on besides their
/// recipes (`BLAS.numerics`). OpenBLAS sums a product in another order with another thread count or
/// CPU kernel, so a transcript checked under other numerics gets other hashes, though the pictures
/// look alike; `run --check` says so before its first mismatch rather than after.
public enum ScriptNumerics {
    /// The comment's text before the numerics (`recordComment` adds the "# ").
    public static let label = "numerics: "
    static let prefix = "# " + label

    /// The comment before a `set precision bf16` line: where its bf16 products ran (`BF16Support.numerics`).
    public static let bf16Label = "bf16 numerics: "
    static let bf16Prefix = "# " + bf16Label

    /// The comment line for this process's bf16 products, when it has bf16.
    static var bf16Comment: String? { BF16Support.numerics.map { bf16Prefix + $0 } }

    /// The Winograd products a transcript's line asks for, or nil for a line that says nothing of them.
    /// A recorded transcript's first line (`# sdrepl 0.1.0 session, started …`) asks for OpenBLAS's,
    /// which every sdrepl used before the `# numerics:` line named them; its `# numerics:` line, a
    /// few lines on, names the products or, by saying nothing of them, OpenBLAS's again. A script
    /// written by hand has neither line and runs with this sdrepl's products.
    static func winogradProducts(asked line: String) -> WinogradProducts? {
        if line.hasPrefix("# sdrepl "), line.contains(", started ") { return .openBLAS }
        guard line.hasPrefix(prefix) else { return nil }
        return WinogradProducts.allCases.first { $0.numericsToken.map(line.contains) ?? false } ?? .openBLAS
    }

    /// The note for a `# numerics:` or `# bf16 numerics:` line that differs from this process's, or nil.
    static func note(_ line: String, at location: SourceLocation) -> String? {
        if line.hasPrefix(bf16Prefix) {
            let recorded = String(line.dropFirst(bf16Prefix.count))
            // Without bf16 here the `set precision bf16` line after it stops the replay, saying so.
            guard let current = BF16Support.numerics, recorded != current else { return nil }
            return "\(location): check: bf16 products recorded \(recorded), replayed \(current): the hashes of bf16 images are expected to differ "
                + "(they sum in another order)"
        }
        guard line.hasPrefix(prefix) else { return nil }
        let recorded = String(line.dropFirst(prefix.count)), current = BLAS.numerics
        guard recorded != current else { return nil }
        return "\(location): check: recorded with \(recorded), replayed with \(current): the hashes are expected to differ "
            + "(OpenBLAS sums in another order); OPENBLAS_NUM_THREADS and taskset give a replay the recorded thread and core counts"
    }
}
