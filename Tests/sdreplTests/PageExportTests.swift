import Foundation
import TestSupport
import XCTest

/// `export FILE.html` in a script and `sdrepl export TRANSCRIPT -o FILE.html`, through the real
/// binary on the fixture model; the page is loaded in headless Chromium (Debian's `chromium`, which
/// `make test` installs), which must decode every image. A screenshot of the page is left in
/// `.build/test-logs/` (or `$SDREPL_TEST_LOGS`).
final class PageExportTests: XCTestCase {
    private let model = FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path
    private let prompt = #"a <b>fox</b> & "its" den's <script>alert(1)</script>"#

    func testExportedPageShowsEveryCommandAndDecodesEveryImageInChromium() throws {
        let sandbox = Sandbox()
        sandbox.write("tour.sdscript", """
            prompt \(prompt)
            set size 64x64
            set steps 4
            seed 42
            gen 2
            set stpes 3
            negative blurry
            seed 7
            gen
            show 1
            export page.html
            export notes.md
            export page.txt
            """)
        let run = try PipeRun(["run", "--keep-going", "--model", model, "tour.sdscript"], in: sandbox)
        // The misspelt setting and the unknown page format are errors; the run goes on past both.
        XCTAssertEqual(run.status, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("tour.sdscript:6: set: unknown setting 'stpes' (did you mean 'steps'?)"), run.stderr)
        XCTAssertTrue(run.stderr.contains("tour.sdscript:13: export: expected a page ending in .html or .md (Markdown), got 'page.txt'"), run.stderr)
        XCTAssertTrue(run.stdout.contains("exported 10 commands and 3 images to page.html (images in page_files/)"), run.stdout)
        XCTAssertTrue(run.stdout.contains("exported 11 commands and 3 images to notes.md (images in notes_files/)"), run.stdout)
        XCTAssertEqual(sandbox.files(in: "page_files"), [".page", "image-1.png", "image-2.png", "image-3.png"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: sandbox.path + "/page.txt"))

        // The images beside the page carry their recipes: `sdrepl info` (as `load`) reads them.
        let info = try PipeRun(["info", "page_files/image-2.png"], in: sandbox)
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertTrue(info.stdout.contains("Seed: 43"), info.stdout)

        let html = try String(contentsOfFile: sandbox.path + "/page.html", encoding: .utf8)
        // User text is escaped wherever it appears; nothing of it is markup.
        XCTAssertFalse(html.contains("<b>fox</b>") || html.contains("<script>alert"), html)
        XCTAssertTrue(html.contains("prompt a &lt;b&gt;fox&lt;/b&gt; &amp; &quot;its&quot; den&#39;s &lt;script&gt;alert(1)&lt;/script&gt;"), html)
        XCTAssertTrue(html.contains("tour.sdscript:6: set: unknown setting &#39;stpes&#39; (did you mean &#39;steps&#39;?)"), html)
        // The full A1111 recipe, as the PNG holds it, beside its copy button.
        XCTAssertTrue(html.contains("<button type=\"button\" class=\"copy\" data-copy=\"recipe-3\">"), html)
        XCTAssertTrue(html.contains("Negative prompt: blurry\nSteps: 4, Sampler: PLMS"), html)
        XCTAssertTrue(html.contains("Seed: 7, Size: 64x64"), html)

        let markdown = try String(contentsOfFile: sandbox.path + "/notes.md", encoding: .utf8)
        XCTAssertTrue(markdown.contains("![image 3](notes_files/image-3.png)"), markdown)
        XCTAssertTrue(markdown.contains("```text\nprompt \(prompt)\n```"), markdown)

        let dom = try Chromium.decodedImages(page: sandbox.path + "/page.html", sandbox: sandbox)
        XCTAssertEqual(dom.commands, 10)
        XCTAssertEqual(dom.imageWidths, [64, 64, 64], "every <img> decoded, at its size")
        try Chromium.screenshot(page: sandbox.path + "/page.html", to: "page-export.png", sandbox: sandbox)
    }

    /// A recorded session (`sdrepl gen` records one) replayed into a page with the real engine: the
    /// hash check passes, and the page's image is the recorded one.
    func testExportOfARecordedTranscript() throws {
        let sandbox = Sandbox()
        let gen = try PipeRun(["gen", prompt, "--model", model, "--size", "64x64", "--steps", "3", "--seed", "5",
                               "--sessions", "rec"], in: sandbox)
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let transcripts = sandbox.files(in: "rec")
        XCTAssertEqual(transcripts.count, 1)
        // The image folder cannot be made where a file is in the way: one line, no page.
        sandbox.write("blocker", "")
        let blocked = try PipeRun(["export", "rec/" + transcripts[0], "-o", "blocker/replay.html"], in: sandbox)
        XCTAssertEqual(blocked.status, 1)
        XCTAssertEqual(blocked.stderr, "export: blocker/replay_files: a part of the path is a file, not a folder\n")

        let again = try PipeRun(["export", "rec/" + transcripts[0], "-o", "out/replay.html"], in: sandbox)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("exported 6 commands and 1 image to "), again.stdout)
        XCTAssertEqual(imageHashes(again.stdout), imageHashes(gen.stdout), "the replay has the recorded image")
        // The PNG `gen` autosaved still has the recorded pixels and settings: it is used, not generated again.
        XCTAssertTrue(again.stdout.contains("reused 1 image saved by the recorded run"), again.stdout)
        let dom = try Chromium.decodedImages(page: sandbox.path + "/out/replay.html", sandbox: sandbox)
        XCTAssertEqual(dom.commands, 6)
        XCTAssertEqual(dom.imageWidths, [64])

        // A damaged file is not used: the engine makes the image again, with the recorded hash.
        let saved = sandbox.files(in: "generated_images").filter { $0.hasSuffix(".png") }
        XCTAssertEqual(saved.count, 1)
        sandbox.write("generated_images/" + saved[0], "not a PNG any more")
        // What an export killed half-way left in the page's folder goes with the next export.
        try FileManager.default.createDirectory(atPath: sandbox.path + "/out/replay_files/.export-0A1B2C", withIntermediateDirectories: true)
        sandbox.write("out/replay_files/.export-0A1B2C/.image-1.png.tmp-x1y2z3", "half an image")
        // Written over the page exported before, images and all.
        let remade = try PipeRun(["export", "rec/" + transcripts[0], "-o", "out/replay.html"], in: sandbox)
        XCTAssertEqual(remade.status, 0, remade.stderr)
        XCTAssertTrue(remade.stdout.contains("reused 0 images saved by the recorded run"), remade.stdout)
        XCTAssertEqual(imageHashes(remade.stdout), imageHashes(gen.stdout))
        XCTAssertEqual(sandbox.files(in: "out/replay_files"), [".page", "image-1.png"], "no staging folder left, this export's or the killed one's")
        // The Markdown page of the same stem would share replay_files/ and replace the HTML page's images.
        let markdown = try PipeRun(["export", "rec/" + transcripts[0], "-o", "out/replay.md"], in: sandbox)
        XCTAssertEqual(markdown.status, 1)
        XCTAssertEqual(markdown.stderr.split(separator: "\n").last,
                       "export: out/replay_files: holds the images of the page replay.html; export to another name, or remove replay_files/ first")
        XCTAssertFalse(FileManager.default.fileExists(atPath: sandbox.path + "/out/replay.md"))

        let bad = try PipeRun(["export", "rec/" + transcripts[0], "-o", "page.pdf"], in: sandbox)
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.stderr, "export: expected a page ending in .html or .md (Markdown), got 'page.pdf'\n")
    }
}

/// Fails the test (never skips it): the page must be checked in a real browser.
struct ChromiumMissing: Error, CustomStringConvertible {
    var description: String { "chromium is not installed: 'make test' installs it (TEST_APT_PACKAGES), or 'apt-get install chromium'" }
}

/// Headless Chromium, as installed by `make test` (Debian's `chromium`).
enum Chromium {
    /// What the browser made of a page: the number of commands and each image's decoded width.
    struct Page {
        var commands: Int
        var imageWidths: [Int]
    }

    /// Loads a copy of `page` (beside it, so its image folder resolves) with a script that writes
    /// into the DOM what the browser decoded, and reads the DOM back (`--dump-dom`).
    static func decodedImages(page: String, sandbox: Sandbox) throws -> Page {
        let probe = (page as NSString).deletingPathExtension + ".probe.html"
        let html = try String(contentsOfFile: page, encoding: .utf8)
        let script = """
            <script>window.addEventListener("load", function () {
              var widths = Array.prototype.map.call(document.images, function (img) { return img.complete ? img.naturalWidth : 0; });
              document.body.setAttribute("data-probe", "commands=" + document.querySelectorAll("li.command").length + " widths=" + widths.join(","));
            });</script>
            """
        try html.replacingOccurrences(of: "</body>", with: script + "</body>").write(toFile: probe, atomically: true, encoding: .utf8)
        let dom = try run(["--virtual-time-budget=5000", "--dump-dom", URL(fileURLWithPath: probe).absoluteString], sandbox: sandbox)
        guard let range = dom.range(of: #"data-probe="commands=(\d+) widths=([0-9,]*)""#, options: .regularExpression) else {
            XCTFail("the probe did not run in Chromium; DOM: \(dom.prefix(2000))")
            return Page(commands: -1, imageWidths: [])
        }
        let found = dom[range].dropFirst("data-probe=\"commands=".count).dropLast()
        let parts = found.split(separator: " ", maxSplits: 1)
        let widths = parts.count > 1 ? parts[1].dropFirst("widths=".count).split(separator: ",").compactMap { Int($0) } : []
        return Page(commands: Int(parts[0]) ?? -1, imageWidths: widths)
    }

    /// Saves a screenshot of `page` as `name` in the test log folder and checks it is a PNG.
    static func screenshot(page: String, to name: String, sandbox: Sandbox) throws {
        let folder = ProcessInfo.processInfo.environment["SDREPL_TEST_LOGS"]
            ?? FixturePaths.repoRoot.appendingPathComponent(".build/test-logs").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let file = folder + "/" + name
        try? FileManager.default.removeItem(atPath: file)
        _ = try run(["--window-size=1000,1300", "--screenshot=\(file)", URL(fileURLWithPath: page).absoluteString], sandbox: sandbox)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "\(file) is a PNG")
        print("page screenshot: \(file)")
    }

    /// Runs chromium headless (at most two minutes) and returns its standard output.
    private static func run(_ arguments: [String], sandbox: Sandbox) throws -> String {
        guard let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: FileManager.default.isExecutableFile) else {
            throw ChromiumMissing()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = ["120", binary, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
                             "--no-first-run", "--hide-scrollbars", "--user-data-dir=\(sandbox.path)/chromium"] + arguments
        process.environment = sandbox.environment
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "chromium failed: \(errorText.suffix(2000))")
        return String(decoding: data, as: UTF8.self)
    }
}
