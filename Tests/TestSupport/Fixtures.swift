import Foundation

/// Where the committed reference fixtures live (`Tests/Fixtures`).
public enum FixturePaths {
    /// `Tests/Fixtures`, found from this source file's location so tests run from any directory.
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The repository's top directory.
    public static let repoRoot: URL = root.deletingLastPathComponent().deletingLastPathComponent()
}
