import Foundation
import XCTest
@testable import SDScript

/// The page model built from a session's events (`SessionPageRecorder`) and its writers' escaping,
/// on the test doubles. The real binary and a browser are in sdreplTests.PageExportTests.
final class SessionPageTests: XCTestCase {
    func testEachCommandKeepsWhatItShowedWithNestedRunsIndented() throws {
        let folder = TemporaryFolder()
        let script = folder.write("inner.sdscript", "seed 5\ngen\nshow 9\n")
        let session = makeSession(saver: RecordingSaver())
        for line in ["prompt a <fox>", "set size 64x64", "", "# a comment", "gen 2", "set stpes 3", "run \(script)"] {
            _ = session.execute(line)
        }
        let page = session.page.page
        XCTAssertEqual(page.entries.map(\.line), ["prompt a <fox>", "set size 64x64", "gen 2", "set stpes 3", "run \(script)",
                                                  "seed 5", "gen", "show 9"], "commands only, as typed, in order")
        XCTAssertEqual(page.entries.map(\.depth), [0, 0, 0, 0, 0, 1, 1, 1])
        XCTAssertEqual(page.entries.map(\.failed), [false, false, false, true, true, false, false, true])
        XCTAssertEqual(page.entries[5].location, SourceLocation(file: script, line: 1))
        XCTAssertNil(page.entries[0].location)
        XCTAssertTrue(page.entries.allSatisfy { $0.seconds != nil }, "every command finished")
        XCTAssertEqual(page.images.map(\.index), [1, 2, 3])
        XCTAssertEqual(page.images.map(\.request.engine.seed), [1234, 1235, 5])
        guard case .error(let message)? = page.entries[3].items.first else { return XCTFail("\(page.entries[3].items)") }
        XCTAssertEqual(message, "set: unknown setting 'stpes' (did you mean 'steps'?)")
        guard case .error(let nested)? = page.entries[7].items.first else { return XCTFail("\(page.entries[7].items)") }
        XCTAssertEqual(nested, "\(script):3: show: expected an image number from 1 to 3, got '9'", "where it happened")
    }

    func testExportLeavesItselfOutAndNeedsAPageExtension() throws {
        let session = makeSession(saver: RecordingSaver())
        _ = session.execute("gen")
        XCTAssertEqual(session.execute("export notes.pdf"), .failed(Diagnostic(.badArgument(
            command: "export", argument: "notes.pdf", reason: "expected a page ending in .html or .md (Markdown), got"), at: nil)))
        XCTAssertEqual(session.execute("export"), .failed(Diagnostic(.missingArgument(command: "export", usage: "export FILE.html | FILE.md"), at: nil)))
        session.io.emit(.command("export x.html", at: nil))
        XCTAssertEqual(session.page.pageBeforeCurrentCommand.entries.map(\.line), ["gen", "export notes.pdf", "export"])
    }

    /// An export replaces only its own earlier page: a file of the user's by that name, or a folder
    /// of theirs where the images would go, is refused and left as it was.
    func testExportReplacesOnlyAPageItExported() throws {
        let folder = TemporaryFolder()
        let session = makeSession()
        XCTAssertEqual(session.execute("prompt a fox"), .ok)
        for name in ["page.html", "page.md"] {
            let path = folder.path + "/" + name
            XCTAssertEqual(session.execute("export \(path)"), .ok, name)
            XCTAssertEqual(session.execute("export \(path)"), .ok, "\(name): its own page, again")
        }
        let notes = folder.write("README.md", "# my notes\n\nmade by sdrepl 0.1.0, and more\n")
        XCTAssertEqual(session.execute("export \(notes)").failure?.description,
                       "export: \(notes): exists and is not a page sdrepl exported; export to another name, or remove it first")
        XCTAssertEqual(try String(contentsOfFile: notes, encoding: .utf8), "# my notes\n\nmade by sdrepl 0.1.0, and more\n")
        folder.write("album_files/image-1.png", "a picture of the user's")
        XCTAssertEqual(session.execute("export \(folder.path)/album.html").failure?.description,
                       "export: \(folder.path)/album_files: exists and is not a page's image folder (it has no .page naming the page); "
                       + "export to another name, or remove album_files/ first")
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.path + "/album.html"))
    }

    func testExportCompletesPaths() {
        let folder = TemporaryFolder()
        folder.write("pages/old.html", "")
        let session = makeSession()
        XCTAssertEqual(session.complete("exp").candidates, ["export"])
        XCTAssertEqual(session.complete("export \(folder.path)/pa").candidates, ["\(folder.path)/pages/"])
        XCTAssertEqual(session.complete("export \(folder.path)/pages/o").candidates, ["\(folder.path)/pages/old.html"])
    }

    func testUserTextIsEscapedInHTMLAndFencedInMarkdown() {
        XCTAssertEqual(PageHTML.escape(#"<b a="1">'&'</b>"#), "&lt;b a=&quot;1&quot;&gt;&#39;&amp;&#39;&lt;/b&gt;")
        XCTAssertEqual(PageMarkdown.fenced("a ``` b"), "````text\na ``` b\n````\n", "a fence longer than any run inside")
        XCTAssertEqual(PageMarkdown.fenced("plain"), "```text\nplain\n```\n")
    }
}
