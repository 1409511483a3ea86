import Foundation
import HostCheck
import XCTest

/// The CPU check that runs before the engine (whose release build targets AVX2 + FMA).
final class HostCheckTests: XCTestCase {
    func testReportsTheMissingFlagsOfAnOldCPU() {
        // A Sandy Bridge: AVX but no AVX2, FMA, F16C (it has it? no: Ivy Bridge added it) or BMI2.
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i7-2600\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx\n"
        XCTAssertEqual(HostCheck.missingFlags(cpuinfo: cpuinfo), ["avx2", "fma", "f16c", "bmi2"])
    }

    func testAcceptsAnAVX2CPUAndUnreadableInput() {
        let cpuinfo = "flags\t\t: fpu sse2 avx f16c fma bmi1 bmi2 avx2 avx512f\n"
        XCTAssertEqual(HostCheck.missingFlags(cpuinfo: cpuinfo), [])
        XCTAssertEqual(HostCheck.missingFlags(cpuinfo: "no flags line here"), [], "unknown: let the program try")
    }

    /// Under `ulimit -v 600000` OpenBLAS's threads retried their buffer allocation forever, at full
    /// CPU; sdrepl now refuses to start below 1 GB of address space, saying so in one line.
    func testASmallAddressSpaceLimitIsRefusedInOneLine() throws {
        XCTAssertNil(HostCheck.addressSpaceProblem(limit: 1 << 30, program: "sdrepl"))
        let sandbox = Sandbox()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "ulimit -v 600000; exec \"$0\" --no-record gen 'a fox' --size 64x64", try sdreplBinary()]
        process.currentDirectoryURL = URL(fileURLWithPath: sandbox.path)
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1)
        XCTAssertEqual(text, "sdrepl: the address-space limit (ulimit -v) is 585 MB, and sdrepl needs at least 1024 MB of address space "
                       + "to start (a model's file is mapped into it too, so more for a real checkpoint); raise it with "
                       + "'ulimit -v unlimited' or ask your administrator.\n")
    }

    /// This machine runs the test suite's release build, so it must pass the check itself.
    func testThisMachinePasses() throws {
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        XCTAssertEqual(HostCheck.missingFlags(cpuinfo: cpuinfo), [])
    }

    /// `sdrepl` restarts itself once with `OPENBLAS_THREAD_TIMEOUT=4` (see `EngineEnvironment`):
    /// the environment of the running program (/proc/PID/environ, the one its last `execve` got)
    /// has it, and a value the user set is kept.
    func testTheProgramRunsWithOpenBLASsThreadTimeoutAndKeepsTheUsers() throws {
        for (given, expected) in [(nil, "4"), ("9", "9")] as [(String?, String)] {
            let sandbox = Sandbox()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try sdreplBinary())
            process.arguments = ["--no-record"]
            process.environment = sandbox.environment.merging(given.map { ["OPENBLAS_THREAD_TIMEOUT": $0] } ?? [:]) { $1 }
            process.currentDirectoryURL = URL(fileURLWithPath: sandbox.path)
            let input = Pipe(), output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = output
            try process.run()
            // It waits for commands on the open pipe; read its environment meanwhile.
            var found: [String] = []
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                let environ = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(process.processIdentifier)/environ"))) ?? Data()
                found = environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                    .filter { $0.hasPrefix("OPENBLAS_THREAD_TIMEOUT=") }
                if !found.isEmpty { break }
                Thread.sleep(forTimeInterval: 0.05)
            }
            try input.fileHandleForWriting.close()
            _ = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            XCTAssertEqual(found, ["OPENBLAS_THREAD_TIMEOUT=\(expected)"], "given \(given ?? "nothing")")
            XCTAssertEqual(process.terminationStatus, 0)
        }
    }
}
