import Foundation

/// The XDG base directories of the freedesktop.org Base Directory Specification, the one rule for
/// every file sdrepl keeps outside the working folder: `$XDG_CONFIG_HOME`, `$XDG_CACHE_HOME` and
/// `$XDG_STATE_HOME` are used only when set to an absolute path (the specification calls a relative
/// one invalid, to be ignored), otherwise `~/.config`, `~/.cache` and `~/.local/state`.
public struct XDGDirectories: Sendable {
    public let environment: [String: String]
    /// `$HOME`, or the account's home folder when it is unset (or the folder given).
    public let home: String

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, home: String? = nil) {
        self.environment = environment
        self.home = home ?? environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
    }

    public var config: String { base("XDG_CONFIG_HOME", default: ".config") }
    public var cache: String { base("XDG_CACHE_HOME", default: ".cache") }
    public var state: String { base("XDG_STATE_HOME", default: ".local/state") }

    private func base(_ variable: String, default relative: String) -> String {
        if let value = environment[variable], value.hasPrefix("/") { return value }
        return home + "/" + relative
    }
}
