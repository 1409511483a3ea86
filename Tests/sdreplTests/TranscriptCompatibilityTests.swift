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
    }
}
