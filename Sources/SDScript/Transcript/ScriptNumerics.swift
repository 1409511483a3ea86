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

    /// The engine numerics a transcript's line asks for, or nil for a line that says nothing of them.
    /// A recorded or merged transcript's first line (`# sdrepl 0.1.0 session, started …`, `# sdrepl
    /// merge of …`) asks for version 1, which every sdrepl used before the `# numerics:` line named
    /// versions; its `# numerics:` line, a few lines on, names the version or, by naming none,
    /// version 1 again. A version this sdrepl does not have (a newer one's) gets the current one,
    /// and `run --check`'s note says the hashes will differ. A script written by hand has neither
    /// line and runs with the current version.
    static func engineNumerics(asked line: String) -> EngineNumerics? {
        if line.hasPrefix("# sdrepl "), line.contains(", started ") || line.hasPrefix("# sdrepl merge of ") { return .v1 }
        guard line.hasPrefix(prefix) else { return nil }
        guard let version = namedVersion(in: line) else { return .v1 }
        return EngineNumerics(rawValue: version) ?? .current
    }

    /// The engine numerics version a `# numerics:` text names (`engine numerics 2`), if any.
    static func namedVersion(in text: String) -> Int? {
        guard let range = text.range(of: EngineNumerics.label) else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
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
        if let version = namedVersion(in: recorded), EngineNumerics(rawValue: version) == nil {
            return "\(location): check: recorded with engine numerics \(version), a newer sdrepl's (this one has 1 to "
                + "\(EngineNumerics.current.rawValue)): the hashes are expected to differ; check it with the sdrepl that recorded it"
        }
        return "\(location): check: recorded with \(recorded), replayed with \(current): the hashes are expected to differ "
            + "(OpenBLAS sums in another order); OPENBLAS_NUM_THREADS and taskset give a replay the recorded thread and core counts"
    }
}
