#if canImport(Glibc)
import Glibc
#endif

/// Checks, before any engine code runs, that this CPU has the instructions the engine was compiled
/// for. Release builds of the engine target AVX2 + FMA (x86-64-v3, `-target-cpu haswell`), and on an
/// older CPU the first engine call would die with SIGILL; this says what is wrong instead.
///
/// This module is compiled for the baseline CPU on purpose: it must run everywhere.
public enum HostCheck {
    /// The `/proc/cpuinfo` flags the engine's release build needs on x86-64.
    public static let requiredX86Flags = ["avx", "avx2", "fma", "f16c", "bmi2"]

    /// The required flags missing from `cpuinfo` (the text of `/proc/cpuinfo`); empty when all are there,
    /// or when the flags cannot be read (then we let the program try).
    public static func missingFlags(cpuinfo: String) -> [String] {
        guard let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        let flags = Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        return requiredX86Flags.filter { !flags.contains($0) }
    }

    /// Exits with a message on stderr when the CPU lacks what the engine needs (x86-64 only).
    public static func exitIfUnsupported(program: String) {
        #if arch(x86_64) && os(Linux)
        guard let file = fopen("/proc/cpuinfo", "r") else { return }
        defer { fclose(file) }
        var text = ""
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(cString: buffer)
            text += line
            if line.hasPrefix("flags") { break }
        }
        exitIfAddressSpaceTooSmall(program: program)
        let missing = missingFlags(cpuinfo: text)
        guard !missing.isEmpty else { return }
        fputs("\(program): this build needs an x86-64 CPU with AVX2 and FMA (x86-64-v3); this one lacks \(missing.joined(separator: ", ")).\n"
              + "Build for this CPU with `swift build -c debug`, or remove the -target-cpu setting in Package.swift and rebuild.\n", stderr)
        exit(1)
        #endif
    }

    /// The least address space (`ulimit -v`) sdrepl starts with. Below about 800 MB OpenBLAS cannot
    /// reserve its buffers and its threads retry forever, at full CPU and deaf to Ctrl-C; a real
    /// model's mapped checkpoint needs gigabytes more, which the loader reports as such.
    public static let minimumAddressSpace: UInt64 = 1 << 30

    /// The message for an address-space limit of `limit` bytes, or nil when it is enough.
    public static func addressSpaceProblem(limit: UInt64, program: String) -> String? {
        guard limit < minimumAddressSpace else { return nil }
        return "\(program): the address-space limit (ulimit -v) is \(limit >> 20) MB, and sdrepl needs at least "
            + "\(minimumAddressSpace >> 20) MB of address space to start (a model's file is mapped into it too, so "
            + "more for a real checkpoint); raise it with 'ulimit -v unlimited' or ask your administrator.\n"
    }

    private static func exitIfAddressSpaceTooSmall(program: String) {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max,
              let problem = addressSpaceProblem(limit: UInt64(limit.rlim_cur), program: program) else { return }
        fputs(problem, stderr)
        exit(1)
    }
}
