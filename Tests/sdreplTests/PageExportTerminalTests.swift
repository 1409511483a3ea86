import Foundation
import TestSupport
import XCTest

/// `export` typed at the REPL on a terminal: Tab completes it and its path, the page holds the
/// session so far, and the transcript records the line.
final class PageExportTerminalTests: XCTestCase {
    func testExportTypedAtThePromptWritesTheSessionSoFar() throws {
        let sandbox = Sandbox()
        try FileManager.default.createDirectory(atPath: sandbox.path + "/pages", withIntermediateDirectories: true)
        let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path
        let terminal = try PseudoTerminal(["--model", model], in: sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.expect("sd> ")
        for line in ["prompt a heron & \"reeds\"", "set size 64x64", "set steps 2", "seed 3", "gen"] {
            terminal.type(line + "\r")
            terminal.expect("sd> ")
        }
        terminal.type("exp\t")
        terminal.expect("ort ")  // "exp" completed to "export "
        terminal.type("pag\t")
        terminal.expect("es/")  // "pag" completed to the folder "pages/"
        terminal.type("today.html\r")
        terminal.expect("exported 5 commands and 1 image to pages/today.html (images in pages/today_files/)")
        terminal.expect("sd> ")
        terminal.type("quit\r")
        XCTAssertEqual(terminal.waitForExit(), 0)

        XCTAssertEqual(sandbox.files(in: "pages/today_files"), [".page", "image-1.png"])
        let html = try String(contentsOfFile: sandbox.path + "/pages/today.html", encoding: .utf8)
        XCTAssertTrue(html.contains("<code>prompt a heron &amp; &quot;reeds&quot;</code>"), html)
        XCTAssertEqual(html.components(separatedBy: "<li class=\"command").count - 1, 5)
        let transcripts = sandbox.files(in: "sessions")
        XCTAssertEqual(transcripts.count, 1)
        let transcript = try String(contentsOfFile: sandbox.path + "/sessions/" + transcripts[0], encoding: .utf8)
        XCTAssertTrue(transcript.contains("\nexport pages/today.html\n"), transcript)
    }
}
