/// The engine's numerics version: which kernels sum in which order. Kernels of two versions give
/// the same pictures but not the same last bits, so a transcript names its version (`BLAS.numerics`)
/// and a replay of an older transcript goes back to that version's kernels for its length.
public enum EngineNumerics: Int, Sendable, CaseIterable, Comparable {
    /// sdrepl 0.1.0's, and every transcript's before versions were named: Winograd's 36 products on
    /// OpenBLAS's sgemm.
    case v1 = 1
    /// sdrepl 0.2.0's: Winograd's products on the engine's panel kernel (`sd_sgemm_panels`).
    case v2 = 2

    /// What new work runs with.
    public static let current = EngineNumerics.v2

    /// What a transcript's `# numerics:` line says of it (`engine numerics 2`). Version 1 says nothing,
    /// as the transcripts recorded before versions existed.
    public var numericsToken: String? { self == .v1 ? nil : Self.label + String(rawValue) }

    /// The words before the version in `numericsToken`.
    public static let label = "engine numerics "

    public static func < (a: EngineNumerics, b: EngineNumerics) -> Bool { a.rawValue < b.rawValue }
}

extension Tensor {
    /// The numerics the kernels use; replays of older transcripts set theirs for their length.
    nonisolated(unsafe) public static var numerics = EngineNumerics.current
}
