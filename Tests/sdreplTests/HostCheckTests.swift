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

    /// This machine runs the test suite's release build, so it must pass the check itself.
    func testThisMachinePasses() throws {
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        XCTAssertEqual(HostCheck.missingFlags(cpuinfo: cpuinfo), [])
    }
}
