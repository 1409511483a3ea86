import Foundation
import TestSupport
import XCTest

/// A session that ends from outside, on a pseudo-terminal: an SSH link dropping (SIGHUP), `kill`
/// (SIGTERM), Ctrl-\ (SIGQUIT), or the reader of its output gone (`sdrepl | head`).
final class EndingSignalTests: XCTestCase {
    private let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path

    /// The generation under way stops as after Ctrl-C, the transcript records the images already
    /// saved, and the process leaves with 128 + the signal; before, the process died and the
    /// transcript had no trace of images on disk.
    func testASignalDuringGenRecordsTheFinishedImagesThenLeaves() throws {
        for (signal, name) in [(SIGHUP, "SIGHUP"), (SIGTERM, "SIGTERM"), (SIGQUIT, "SIGQUIT")] {
            let sandbox = Sandbox()
            let terminal = try PseudoTerminal(["--model", model], in: sandbox, da1Reply: "\u{1B}[?62;22c")
            terminal.expect("sd> ")
            terminal.type("set size 256x256\rset steps 20\rseed 1\rgen 3\r")
            XCTAssertTrue(terminal.expect("image 1: seed 1", timeout: 60), name)
            kill(terminal.pid, signal)
            XCTAssertEqual(terminal.waitForExit(timeout: 60), 128 + signal, name)
            XCTAssertFalse(terminal.transcript.contains("crashed"), "\(name): \(terminal.transcript)")
            let transcripts = sandbox.files(in: "sessions")
            XCTAssertEqual(transcripts.count, 1, name)
            let text = try String(contentsOfFile: sandbox.path + "/sessions/" + (transcripts.first ?? ""), encoding: .utf8)
            let saved = sandbox.files(in: "generated_images").filter { $0.hasSuffix(".png") }
            XCTAssertFalse(saved.isEmpty, name)
            XCTAssertTrue(text.contains("# gen 3, stopped: gen: cancelled (\(saved.count) of 3 images finished)"), "\(name): \(text)")
            for png in saved { XCTAssertTrue(text.contains("#=> saved") && text.contains(png), "\(name): \(png) not in \(text)") }
        }
    }

    /// `sdrepl | head -1`: once the reader has gone, a write fails with EPIPE. Foundation's FileHandle
    /// trapped on it ("Fatal error: 'try!' expression unexpectedly raised an error"); the session now
    /// ends there, its transcript whole, with the status a SIGPIPE would give.
    func testAReaderThatLeavesEndsTheSessionQuietly() throws {
        let sandbox = Sandbox()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)  // else sdrepl itself holds the read end open
        let terminal = try PseudoTerminal(["--model", model], in: sandbox, stdoutPipe: fds[1], da1Reply: "\u{1B}[?62;22c")
        close(fds[1])
        // The banner, up to its last line, then the reader leaves.
        var banner = "", buffer = [UInt8](repeating: 0, count: 256)
        while !banner.contains(".sdscript\n") {
            let count = read(fds[0], &buffer, buffer.count)
            guard count > 0 else { return XCTFail("the banner ended early: \(banner)") }
            banner += String(decoding: buffer.prefix(count), as: UTF8.self)
        }
        close(fds[0])
        terminal.type("prompt a fox\r")
        terminal.settle(0.5)
        terminal.type("set\r")
        XCTAssertEqual(terminal.waitForExit(timeout: 30), 128 + SIGPIPE)
        XCTAssertFalse(terminal.transcript.contains("Fatal error"), terminal.transcript)
        let transcripts = sandbox.files(in: "sessions")
        let text = try String(contentsOfFile: sandbox.path + "/sessions/" + (transcripts.first ?? ""), encoding: .utf8)
        XCTAssertTrue(text.hasSuffix("prompt a fox\nset\n"), text)
    }
}
