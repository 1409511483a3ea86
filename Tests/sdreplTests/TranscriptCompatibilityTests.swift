import Foundation
import TestSupport
import XCTest

/// Transcripts recorded by earlier versions keep replaying: `recorded-by-0.1.0.sdscript` is an
/// interactive session recorded by sdrepl 0.1.0 (before the session was split into parts) on the
/// tiny fixture model, kept byte for byte.
final class TranscriptCompatibilityTests: XCTestCase {
    func testATranscriptRecordedBy010StillChecks() throws {
        let sandbox = Sandbox()
        var text = try String(contentsOf: Fixture.url("transcripts/recorded-by-0.1.0.sdscript"), encoding: .utf8)
        // The session recorded the model's absolute path on the machine that made it.
        let recordedModel = "/work/main/Tests/Fixtures/models/tiny-sd15-diffusers"
        XCTAssertTrue(text.contains("model \(recordedModel)\n"))
        text = text.replacingOccurrences(of: recordedModel, with: Fixture.tinySD15Folder.path)
        let path = sandbox.write("old.sdscript", text)
        let check = try PipeRun(["run", "--check", path], in: sandbox)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stderr.contains("check: 4 images matched, 0 mismatched"), check.stderr)

        // The control: without its header the same lines are a script written by hand, replayed
        // with the current engine numerics, and its images come out other bits.
        let unheaded = sandbox.write("unheaded.sdscript", text.split(separator: "\n", omittingEmptySubsequences: false).dropFirst()
            .joined(separator: "\n"))
        let control = try PipeRun(["run", "--check", unheaded], in: sandbox)
        XCTAssertEqual(control.status, 1, control.stderr)
        XCTAssertTrue(control.stderr.contains("differs: sha256 recorded"), control.stderr)
    }

    /// An old transcript run inside a session replays with its engine numerics, and the session's
    /// own transcript, where the file's lines are inlined, names the numerics again after them, so
    /// that it checks too: the old file's images and one made after it.
    func testAnOldTranscriptRunInASessionKeepsBothNumerics() throws {
        let sandbox = Sandbox()
        let text = try String(contentsOf: Fixture.url("transcripts/recorded-by-0.1.0.sdscript"), encoding: .utf8)
            .replacingOccurrences(of: "/work/main/Tests/Fixtures/models/tiny-sd15-diffusers", with: Fixture.tinySD15Folder.path)
        _ = sandbox.write("old.sdscript", text)
        let typed = ["run old.sdscript", "set size 64x64", "seed 11", "gen"]
        let (path, recorded) = try recordedSession(typing: typed, in: sandbox, timeout: 120)
        let numerics = recorded.split(separator: "\n").filter { $0.hasPrefix("# numerics: ") }
        XCTAssertEqual(numerics.count, 2, recorded)
        XCTAssertTrue(numerics.allSatisfy { $0.hasSuffix(", engine numerics 2") }, recorded)
        XCTAssertTrue(recorded.contains("\n# sdrepl 0.1.0 session, started "), "the old header is inlined:\n\(recorded)")

        let check = try PipeRun(["run", "--check", path], in: sandbox)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stderr.contains("check: 5 images matched, 0 mismatched"), check.stderr)
    }
}
