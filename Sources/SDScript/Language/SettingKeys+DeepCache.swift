import Diffusion

extension SettingKey {
    /// `set deepcache N|off`: DeepCache's interval (the request's `deepCache`).
    static let deepCache = SettingKey(
        name: "deepcache", values: "N|off (DeepCache: the whole UNet every N steps, only its shallow part between; 3 is usual)",
        kind: .words, choices: { _ in ["off", "2", "3", "5"] }, completesPaths: false,
        apply: { session, value in session.settings.request.deepCache = try parseDeepCache(value) },
        show: { $0.request.deepCache.map(String.init) ?? "off" }, reset: { $0.request.deepCache = nil })
}

/// DeepCache's interval from `off` (also `0`, `none`) or a whole number in `RequestLimits.deepCache`.
/// - Returns: nil for off.
/// - Throws: `ScriptError.badArgument` naming `command`; 1 is refused with why.
func parseDeepCache(_ value: String, command: String = "set deepcache") throws -> Int? {
    let word = value.lowercased()
    if ["off", "0", "none"].contains(word) { return nil }
    guard let interval = Int(word), RequestLimits.deepCache.contains(interval) else {
        let reason = Int(word) == 1 ? "an interval of 1 runs every step whole and caches nothing: use 2 or more (3 is usual) or off, got"
            : "expected an interval from \(RequestLimits.deepCacheDescription), got"
        throw ScriptError.badArgument(command: command, argument: value, reason: reason,
                                      suggestion: Int(word) == nil ? closestWord(to: word, in: ["off"]) : nil)
    }
    return interval
}
