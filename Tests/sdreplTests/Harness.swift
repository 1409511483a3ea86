import Foundation
import Glibc
import XCTest

/// The `sdrepl` executable built next to this test bundle (`swift build --build-tests` builds both).
func sdreplBinary(file: StaticString = #filePath, line: UInt = #line) throws -> String {
    var folders: [URL] = []
    if let path = ProcessInfo.processInfo.environment["SDREPL_BINARY"] { return path }
    if let executable = Bundle.main.executableURL { folders.append(executable.deletingLastPathComponent()) }
    folders.append(Bundle.main.bundleURL.deletingLastPathComponent())
    folders.append(Bundle.main.bundleURL)
    folders.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
    for folder in folders {
        var candidate = folder
        // On Linux the test bundle is `sdreplPackageTests.xctest` in the build folder; be lenient.
        for _ in 0..<3 {
            let binary = candidate.appendingPathComponent("sdrepl").path
            if FileManager.default.isExecutableFile(atPath: binary) { return binary }
            candidate = candidate.deletingLastPathComponent()
        }
    }
    XCTFail("the sdrepl executable is not next to the tests (looked in \(folders.map(\.path))); run 'swift build --build-tests' first",
            file: file, line: line)
    throw XCTSkip("no sdrepl binary")
}

/// coreutils' `sha256sum FILE`, 64 hex digits: an independent reference for the hashes sdrepl records.
func sha256sum(_ path: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    process.arguments = [path]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(String(decoding: data, as: UTF8.self).prefix(64))
}

/// The 16-hex-digit hash prefixes of the `image N: … sha256 X…` lines, in order.
func imageHashes(_ stdout: String) -> [String] {
    stdout.split(separator: "\n").compactMap { line -> String? in
        guard line.hasPrefix("image "), let range = line.range(of: "sha256 ") else { return nil }
        return String(line[range.upperBound...].prefix(16))
    }
}

/// A scratch folder that is also the child's HOME, XDG_STATE_HOME root and current directory.
final class Sandbox {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "sdrepl-tests-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Added to (or replacing) `environment`'s variables.
    var extraEnvironment: [String: String] = [:]

    /// A clean environment: nothing from the user's HOME, config, caches, Hugging Face cache or history.
    var environment: [String: String] {
        ["PATH": "/usr/bin:/bin", "HOME": path + "/home", "XDG_STATE_HOME": path + "/state",
         "XDG_CACHE_HOME": path + "/cache", "XDG_CONFIG_HOME": path + "/config", "HF_HOME": path + "/hf",
         "TERM": "xterm", "LANG": "C.UTF-8"].merging(extraEnvironment) { $1 }
    }

    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        let file = path + "/" + name
        _ = FileManager.default.createFile(atPath: file, contents: Data(text.utf8))
        return file
    }

    func files(in folder: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: path + "/" + folder))?.sorted() ?? []
    }
}

/// Runs `sdrepl` with pipes (no terminal anywhere) and collects its output.
struct PipeRun {
    var status: Int32
    var stdout: String
    var stderr: String

    init(_ arguments: [String], stdin: String = "", in sandbox: Sandbox) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try sdreplBinary())
        process.arguments = arguments
        process.environment = sandbox.environment
        process.currentDirectoryURL = URL(fileURLWithPath: sandbox.path)
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        status = process.terminationStatus
        stdout = String(decoding: out, as: UTF8.self)
        stderr = String(decoding: err, as: UTF8.self)
    }
}

/// Types `lines` into an interactive session on a pseudo-terminal, each after the prompt, then quits,
/// and returns the one transcript the session recorded (its path under the sandbox, and its text).
func recordedSession(typing lines: [String], in sandbox: Sandbox, da1Reply: String? = nil, timeout: Double = 60,
                     file: StaticString = #filePath, line: UInt = #line) throws -> (path: String, text: String) {
    let terminal = try PseudoTerminal([], in: sandbox, da1Reply: da1Reply)
    terminal.expect("sd> ", file: file, line: line)
    for typed in lines {
        terminal.type(typed + "\r")
        terminal.expect("sd> ", timeout: timeout, file: file, line: line)
    }
    terminal.type("quit\r")
    XCTAssertEqual(terminal.waitForExit(file: file, line: line), 0, file: file, line: line)
    let transcripts = sandbox.files(in: "sessions")
    XCTAssertEqual(transcripts.count, 1, file: file, line: line)
    let path = "sessions/" + (transcripts.first ?? "")
    return (path, try String(contentsOfFile: sandbox.path + "/" + path, encoding: .utf8))
}

/// `sdrepl` on a pseudo-terminal: the test types into the master side and reads what the program
/// draws. It can answer the terminal queries (DA1, `ESC [ 14 t`) the way a terminal would.
final class PseudoTerminal {
    let master: Int32
    let pid: pid_t
    /// Everything read from the terminal so far.
    private(set) var transcript = ""
    /// What to answer to `ESC [ c`, or nil to stay silent like a terminal that knows no DA1.
    var da1Reply: String?
    /// Seconds the terminal takes to answer, as over a slow link (0: at once).
    var da1Delay: Double = 0
    private var replyDue: Date?
    /// How many DA1 queries the program sent.
    private(set) var da1Queries = 0
    private var scanned = 0

    /// Starts `sdrepl ARGUMENTS` with the terminal as its stdin, stdout and stderr (or stdout on a pipe).
    /// - Parameters:
    ///   - stdoutPipe: when given, stdout goes there instead of the terminal.
    ///   - da1Reply: the terminal's answer to DA1 (`ESC [ ? 62 ; 4 c` has sixel), nil for none.
    ///   - shellSetup: shell commands run before `sdrepl` replaces the shell (`ulimit -f 0` to make
    ///     every file write fail as on a full disk), or nil to start `sdrepl` directly.
    init(_ arguments: [String] = [], in sandbox: Sandbox, stdoutPipe: Int32? = nil, da1Reply: String? = nil,
         shellSetup: String? = nil) throws {
        self.da1Reply = da1Reply
        let sdrepl = try sdreplBinary()
        var binary = sdrepl
        var arguments = arguments
        if let shellSetup {
            binary = "/bin/sh"
            arguments = ["-c", shellSetup + "; exec \"$0\" \"$@\"", sdrepl] + arguments
        }
        master = PTYCalls.openpt(O_RDWR | O_NOCTTY)
        var name = [CChar](repeating: 0, count: 128)
        guard master >= 0, PTYCalls.grantpt(master) == 0, PTYCalls.unlockpt(master) == 0,
              PTYCalls.ptsname_r(master, &name, name.count) == 0 else {
            throw POSIXError(.ENOTTY)
        }
        let slavePath = String(cString: name)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // After setsid, opening the slave makes it the child's controlling terminal (for /dev/tty).
        posix_spawn_file_actions_addopen(&actions, 0, slavePath, O_RDWR, 0)
        if let stdoutPipe {
            posix_spawn_file_actions_adddup2(&actions, stdoutPipe, 1)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 0, 1)
        }
        posix_spawn_file_actions_adddup2(&actions, 0, 2)
        posix_spawn_file_actions_addclose(&actions, master)
        _ = PTYCalls.addchdir(&actions, sandbox.path)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, PTYCalls.setsidFlag)

        let argv = ([binary] + arguments).map { strdup($0) } + [nil]
        let envp = sandbox.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let result = posix_spawn(&child, binary, &actions, &attributes, argv, envp)
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EINVAL) }
        pid = child
    }

    deinit {
        if !exited {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        close(master)
    }

    private var exited = false
    private(set) var exitStatus: Int32?

    /// Types `text` (use "\u{1B}[D" for the left arrow, "\u{7F}" for backspace, "\t" for tab…).
    /// Types `text` key by key, as a person does: one write per key (an escape sequence such as
    /// `ESC [ D` is one key), a few milliseconds apart. A single write of a whole line would test
    /// a burst no keyboard sends, and races with the line editor's tty setup on a loaded machine.
    func type(_ text: String) {
        var keys: [[UInt8]] = []
        var bytes = Array(text.utf8)[...]
        while let first = bytes.first {
            var length = 1
            if first == 0x1B, bytes.count >= 3, bytes[bytes.startIndex + 1] == UInt8(ascii: "[") {
                length = 3  // CSI with one final byte: the arrow keys the tests use
            } else if first >= 0xC0 {
                length = first >= 0xF0 ? 4 : first >= 0xE0 ? 3 : 2  // one UTF-8 character
            }
            length = min(length, bytes.count)
            keys.append(Array(bytes.prefix(length)))
            bytes = bytes.dropFirst(length)
        }
        for key in keys {
            _ = key.withUnsafeBufferPointer { write(master, $0.baseAddress, $0.count) }
            usleep(3_000)
        }
    }

    /// Pastes `text`: one write of all of it, the burst a terminal sends for a paste.
    func paste(_ text: String) {
        _ = Array(text.utf8).withUnsafeBufferPointer { write(master, $0.baseAddress, $0.count) }
    }

    /// Reads until `text` has appeared after the last match, or fails after `timeout` seconds.
    @discardableResult
    func expect(_ text: String, timeout: Double = 30, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let range = transcript.range(of: text, range: transcript.index(transcript.startIndex, offsetBy: scanned)..<transcript.endIndex) {
                scanned = transcript.distance(from: transcript.startIndex, to: range.upperBound)
                return true
            }
            if Date() >= deadline || !pump(until: deadline) {
                XCTFail("expected \(text.debugDescription) on the terminal; got \(transcript.debugDescription)", file: file, line: line)
                return false
            }
        }
    }

    /// Reads what is there within `seconds`.
    func settle(_ seconds: Double = 0.3) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, pump(until: deadline) {}
    }

    /// Reads one chunk, answering DA1 queries; false when the deadline passed or the program closed
    /// the terminal.
    private func pump(until deadline: Date) -> Bool {
        if let due = replyDue, Date() >= due {
            replyDue = nil
            if let da1Reply { type(da1Reply) }
        }
        var poller = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
        let until = replyDue.map { min($0, deadline) } ?? deadline
        let wait = Int32(max(0, until.timeIntervalSinceNow * 1000))
        guard poll(&poller, 1, wait) > 0 else { return replyDue != nil && Date() < deadline }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = read(master, &buffer, buffer.count)
        guard count > 0 else { return false }
        transcript += String(decoding: buffer[0..<count], as: UTF8.self)
        let queries = transcript.components(separatedBy: "\u{1B}[c").count - 1
        while da1Queries < queries {
            da1Queries += 1
            if da1Delay > 0 {
                replyDue = Date().addingTimeInterval(da1Delay)
            } else if let da1Reply {
                type(da1Reply)
            }
        }
        return true
    }

    /// Waits for the program to end and returns its exit status (fails on timeout).
    func waitForExit(timeout: Double = 10, file: StaticString = #filePath, line: UInt = #line) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                exited = true
                // WIFEXITED / WEXITSTATUS, which Swift does not import.
                exitStatus = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
                return exitStatus
            }
            settle(0.05)
        }
        XCTFail("sdrepl did not exit; terminal: \(transcript.debugDescription)", file: file, line: line)
        return nil
    }
}

/// glibc calls the Swift Glibc module does not import (they need _XOPEN_SOURCE / _GNU_SOURCE), looked up
/// at run time.
enum PTYCalls {
    private static let handle = dlopen(nil, RTLD_NOW)

    private static func function<T>(_ name: String, as type: T.Type) -> T {
        guard let symbol = dlsym(handle, name) else { fatalError("glibc has no \(name)") }
        return unsafeBitCast(symbol, to: type)
    }

    static let openpt = function("posix_openpt", as: (@convention(c) (Int32) -> Int32).self)
    static let grantpt = function("grantpt", as: (@convention(c) (Int32) -> Int32).self)
    static let unlockpt = function("unlockpt", as: (@convention(c) (Int32) -> Int32).self)
    static let ptsname_r = function("ptsname_r", as: (@convention(c) (Int32, UnsafeMutablePointer<CChar>, Int) -> Int32).self)
    static let addchdir = function("posix_spawn_file_actions_addchdir_np",
                                   as: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self)
    /// POSIX_SPAWN_SETSID from <spawn.h>.
    static let setsidFlag: Int16 = 0x80
}
