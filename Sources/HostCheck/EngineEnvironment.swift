#if canImport(Glibc)
import Glibc
#endif

/// Settings of the libraries under the engine that are read from the environment when the library
/// loads, before `main` runs, so a program can only give them to itself by starting again.
public enum EngineEnvironment {
    /// `OPENBLAS_THREAD_TIMEOUT=4`: OpenBLAS's worker threads wait 2⁴ cycles, not its default of
    /// 2²⁸ (~0.1 s), spinning for new work after a threaded sgemm before they sleep.
    ///
    /// The engine alternates OpenBLAS's threads (linear layers, 1×1 convolutions) with its own
    /// (attention, Winograd, norms), each using every core. With the default, an OpenBLAS thread
    /// still spins on a core while the engine's next kernel wants both (what it saves: README
    /// "Performance").
    public static let settings: [(name: String, value: String)] = [("OPENBLAS_THREAD_TIMEOUT", "4")]

    /// Puts every setting the environment does not have yet into it and, if one was missing, starts
    /// this program again in its place (`execv` of `/proc/self/exe` with the same arguments; same
    /// process, same terminal). A value the user set is kept. If the restart fails, the program
    /// goes on with the libraries' defaults: slower, never wrong.
    public static func restartWithEngineSettingsIfNeeded() {
        #if os(Linux)
        var missing = false
        for setting in settings where getenv(setting.name) == nil {
            setenv(setting.name, setting.value, 1)
            missing = true
        }
        guard missing else { return }
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        #endif
    }
}
