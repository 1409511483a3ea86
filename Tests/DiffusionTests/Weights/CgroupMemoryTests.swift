import Foundation
import XCTest

@testable import Diffusion

/// `set memory auto` inside a container: the cgroup's memory limit, read from a fake file-system
/// tree (the layouts of cgroup v2 and v1), and the machine's own /proc/self/cgroup.
final class CgroupMemoryTests: XCTestCase {
    private var root: URL!
    private let mib = 1 << 20

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroup-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: root)
    }

    private func write(_ path: String, _ text: String) throws {
        let url = root.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
    }

    /// cgroup v2 (a systemd machine, Docker/Podman with cgroupns): the process's group and its
    /// parents, "max" meaning no limit; usage less the inactive page cache, as the kernel can drop it.
    func testCgroupV2LimitOfTheGroupOrAParent() throws {
        try write("proc/self/cgroup", "0::/user.slice/app.scope\n")
        try write("proc/self/mountinfo", """
            24 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
            31 24 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate

            """)
        try write("sys/fs/cgroup/user.slice/memory.max", "max\n")
        try write("sys/fs/cgroup/user.slice/memory.current", "\(3000 * mib)\n")
        try write("sys/fs/cgroup/user.slice/app.scope/memory.max", "\(2048 * mib)\n")
        try write("sys/fs/cgroup/user.slice/app.scope/memory.current", "\(1024 * mib)\n")
        try write("sys/fs/cgroup/user.slice/app.scope/memory.stat", "anon \(700 * mib)\nfile \(324 * mib)\ninactive_file \(256 * mib)\nactive_file 0\n")
        let reader = CgroupMemory(root: root)
        XCTAssertEqual(try reader.availableBytes(), (2048 - 1024 + 256) * mib)

        // A tighter parent wins.
        try write("sys/fs/cgroup/user.slice/memory.max", "\(3500 * mib)\n")
        XCTAssertEqual(try reader.availableBytes(), 500 * mib)

        // "max" all the way up: no limit.
        try write("sys/fs/cgroup/user.slice/memory.max", "max\n")
        try write("sys/fs/cgroup/user.slice/app.scope/memory.max", "max\n")
        XCTAssertNil(try reader.availableBytes())
    }

    /// cgroup v1 (older Docker, this kind of hybrid host): the memory controller's own hierarchy,
    /// found through mountinfo, whose root field is the part of the path the mount hides; v1 says
    /// "unlimited" with a number near 2^63.
    func testCgroupV1LimitThroughMountinfo() throws {
        try write("proc/self/cgroup", "9:name=systemd:/docker/abc\n4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n0::/\n")
        try write("proc/self/mountinfo", """
            35 31 0:32 /docker /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
            36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw

            """)
        try write("sys/fs/cgroup/memory/abc/memory.limit_in_bytes", "\(512 * mib)\n")
        try write("sys/fs/cgroup/memory/abc/memory.usage_in_bytes", "\(200 * mib)\n")
        try write("sys/fs/cgroup/memory/abc/memory.stat", "cache 0\ninactive_file \(10 * mib)\ntotal_inactive_file \(40 * mib)\n")
        try write("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
        try write("sys/fs/cgroup/memory/memory.usage_in_bytes", "\(9000 * mib)\n")
        XCTAssertEqual(try CgroupMemory(root: root).availableBytes(), (512 - 200 + 40) * mib)

        try write("sys/fs/cgroup/memory/abc/memory.limit_in_bytes", "9223372036854771712\n")
        XCTAssertNil(try CgroupMemory(root: root).availableBytes())
    }

    /// Without mountinfo the usual mount point is used.
    func testTheUsualMountPointWithoutMountinfo() throws {
        try write("proc/self/cgroup", "0::/box\n")
        try write("sys/fs/cgroup/box/memory.max", "\(1024 * mib)\n")
        try write("sys/fs/cgroup/box/memory.current", "\(100 * mib)\n")
        XCTAssertEqual(try CgroupMemory(root: root).availableBytes(), 924 * mib)
    }

    func testNoCgroupsAndMalformedFiles() throws {
        XCTAssertNil(try CgroupMemory(root: root).availableBytes(), "no /proc/self/cgroup: not Linux")
        try write("proc/self/cgroup", "garbage\n")
        XCTAssertThrowsError(try CgroupMemory(root: root).availableBytes()) { error in
            XCTAssertEqual("\(error)", "\(self.root.path)/proc/self/cgroup: cannot read 'garbage' (expected ID:CONTROLLERS:PATH)")
        }
        try write("proc/self/cgroup", "0::/box\n")
        try write("sys/fs/cgroup/box/memory.max", "lots\n")
        XCTAssertThrowsError(try CgroupMemory(root: root).availableBytes()) { error in
            XCTAssertEqual("\(error)", "\(self.root.path)/sys/fs/cgroup/box/memory.max: cannot read 'lots' (expected a number of bytes or 'max')")
        }
    }

    /// What `auto` sees: the smaller of MemAvailable and the container's room.
    func testAutoUsesTheContainerLimit() throws {
        try write("proc/meminfo", "MemTotal:       24000000 kB\nMemAvailable:   22000000 kB\n")
        try write("proc/self/cgroup", "0::/box\n")
        try write("sys/fs/cgroup/box/memory.max", "\(2048 * mib)\n")
        try write("sys/fs/cgroup/box/memory.current", "\(48 * mib)\n")
        let usable = try XCTUnwrap(MemoryMode.usableMemoryBytes(root: root))
        XCTAssertEqual(usable, 2000 * mib)
        XCTAssertEqual(MemoryMode.auto.resolve(fastModeBytes: 4 << 30, availableBytes: usable), .low)
        try write("sys/fs/cgroup/box/memory.max", "max\n")
        XCTAssertEqual(MemoryMode.usableMemoryBytes(root: root), 22_000_000 * 1024)
    }

    /// This machine's own cgroups parse (whatever their version), and auto has a figure.
    func testThisMachinesCgroupsParse() throws {
        XCTAssertNoThrow(try CgroupMemory().availableBytes())
        XCTAssertNotNil(MemoryMode.usableMemoryBytes())
    }
}
