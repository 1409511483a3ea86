import Foundation
import Imaging
import ModelStore
import XCTest
@testable import SDScript

/// `save` and autosave with the real image writer (Imaging's PNG and JPEG) on the test generator.
final class SaveTests: XCTestCase {
    private var folder: TemporaryFolder!
    private var io: BufferIO!
    private var session: Session!

    override func setUp() {
        folder = TemporaryFolder()
        io = BufferIO()
        let saver = ImagingSaver(hashes: ModelHashCache(environment: ["XDG_CACHE_HOME": folder.path + "/cache"]))
        session = makeSession(io: io, saver: saver)
        for line in ["prompt a red fox", "seed 3", "set size 64x64", "set steps 1", "set outdir \(folder.path)/out"] {
            XCTAssertEqual(session.execute(line), .ok, line)
        }
    }

    private func files(_ subfolder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path + "/" + subfolder)) ?? []).sorted()
    }

    /// `save PATH` without an extension writes both formats, as `save` alone does.
    func testSaveWithoutAnExtensionWritesPNGAndJPEG() throws {
        XCTAssertEqual(session.execute("set autosave off"), .ok)
        XCTAssertEqual(session.execute("gen"), .ok)
        XCTAssertEqual(session.execute("save \(folder.path)/shots/x"), .ok)
        XCTAssertEqual(files("shots"), ["x.jpg", "x.png"])
        XCTAssertEqual(io.lines.last, "image 1: saved \(folder.path)/shots/x.png \(folder.path)/shots/x.jpg")
        XCTAssertEqual(try PNGFile.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: folder.path + "/shots/x.png")))).image,
                       session.images[0].pixels)
        XCTAssertNotNil(try JPEGFile.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: folder.path + "/shots/x.jpg")))).userComment)

        // Neither file is written when one of the names is taken.
        try FileManager.default.removeItem(atPath: folder.path + "/shots/x.jpg")
        XCTAssertEqual(session.execute("save \(folder.path)/shots/x"), .failed(Diagnostic(.imageNotSaved(
            command: "save", reason: "\(folder.path)/shots/x.png exists already and images are never overwritten: "
                + "give another name, or 'save' alone for a new one"), at: nil)))
        XCTAssertEqual(session.execute("save \(folder.path)/shots/z.gif"), .failed(Diagnostic(.imageNotSaved(
            command: "save", reason: "cannot tell the format of \(folder.path)/shots/z.gif: end the name in .png, .jpg or .jpeg, "
                + "or leave the extension out for both"), at: nil)))
        XCTAssertEqual(files("shots"), ["x.png"])

        XCTAssertEqual(session.execute("gen 2"), .ok)
        XCTAssertEqual(session.execute("save \(folder.path)/shots/y"), .ok)
        XCTAssertEqual(files("shots"), ["x.png", "y-1.jpg", "y-1.png", "y-2.jpg", "y-2.png"])
    }

    /// `save` right after an autosave says where the image is instead of writing a `-2` copy.
    func testSaveAfterAutosaveSaysWhereTheImageIs() {
        XCTAssertEqual(session.execute("gen"), .ok)
        let saved = session.images[0].savedPaths
        XCTAssertEqual(saved.count, 2)
        XCTAssertEqual(session.execute("save"), .ok)
        XCTAssertEqual(io.lines.last, "image 1: already saved as \(saved.joined(separator: " ")); 'save PATH' writes another copy")
        XCTAssertEqual(files("out").count, 2, "no copy: \(files("out"))")
        XCTAssertEqual(session.execute("save \(folder.path)/copy.png"), .ok)
        XCTAssertEqual(files(""), ["copy.png", "out"])
    }

    /// A failed save is one message, said once; a failed autosave is the `gen`'s.
    func testAFailedSaveIsOneMessageAndAnAutosaveFailureBelongsToGen() {
        // Fine when set (`set outdir` refuses a file in the way); a file takes the folder's place after.
        XCTAssertEqual(session.execute("set outdir \(folder.path)/blocked/images"), .ok)
        folder.write("blocked", "a file where the output folder should be")
        let cannot = "cannot create the folder \(folder.path)/blocked/images: a part of the path is a file, not a folder; "
            + "choose another with 'set outdir DIR', or 'save PATH'"
        XCTAssertEqual(session.execute("gen"), .failed(Diagnostic(.imageNotSaved(command: "gen", reason: "autosave: " + cannot), at: nil)))
        XCTAssertEqual(session.images.count, 1, "the image is kept")
        XCTAssertEqual(session.execute("save"), .failed(Diagnostic(.imageNotSaved(command: "save", reason: cannot), at: nil)))
        XCTAssertEqual(io.diagnostics, [
            "gen: autosave: \(cannot); the image stays in the session",
            "save: \(cannot); the image stays in the session",
        ])
        XCTAssertEqual(session.execute("save \(folder.path)/elsewhere.png"), .ok)
    }

    /// A 1 MB prompt: both files are written, and one warning says the JPEG's comment is cut.
    func testAPromptTooLongForTheJPEGSavesBothAndWarnsOnce() {
        XCTAssertEqual(session.execute("prompt " + String(repeating: "a fox in the snow, ", count: 55_000)), .ok)
        XCTAssertEqual(session.execute("gen"), .ok)
        let saved = session.images[0].savedPaths
        XCTAssertEqual(saved.map { ($0 as NSString).pathExtension }, ["png", "jpg"])
        XCTAssertEqual(io.diagnostics.count, 1, "\(io.diagnostics)")
        XCTAssertTrue(io.diagnostics[0].hasPrefix("warning: \(saved[1]): the prompt is too long for a JPEG's EXIF comment "), io.diagnostics[0])
        XCTAssertTrue(io.diagnostics[0].hasSuffix(" characters of it; \(saved[0]) has all of it"), io.diagnostics[0])
    }

    /// `info FILE` in the session prints what `sdrepl info` prints; the time the image took is shown
    /// after `gen` and kept in the PNG's `Parameters` (sdrepl's own key), which `info` shows.
    func testInfoInTheSessionAndTheTimeEachImageTook() throws {
        XCTAssertEqual(session.execute("gen"), .ok)
        let image = session.images[0]
        XCTAssertEqual(io.lines.last, "image 1: seed 3, 64x64, 0.25 s, sha256 \(image.sha256.prefix(16))…, saved \(image.savedPaths.joined(separator: " "))")
        let png = image.savedPaths[0]
        let stored = try ImageRecipeReader.read(URL(fileURLWithPath: png))
        let settings = try XCTUnwrap(JSONSerialization.jsonObject(with: Data((stored.settingsJSON ?? "").utf8)) as? [String: Any])
        XCTAssertEqual(settings["seconds"] as? Double, 0.25)

        io.lines = []
        XCTAssertEqual(session.execute("info \(png)"), .ok)
        XCTAssertEqual(io.lines, describeStoredRecipe(stored).components(separatedBy: "\n"))
        XCTAssertEqual(io.lines.first, "a red fox")
        XCTAssertTrue(io.lines.contains("Generation time: 0.25 s"), "\(io.lines)")
        XCTAssertTrue(io.lines.contains("Style: none"), "\(io.lines)")
        XCTAssertFalse(io.lines.contains { $0.hasPrefix("sdrepl: ") }, "no key of sdrepl's own sampling: \(io.lines)")

        // sdrepl's keys that decide the pixels without a place in A1111's line are shown.
        for line in ["set sampler tcd", "set eta 0.5", "set spacing trailing", "gen"] { XCTAssertEqual(session.execute(line), .ok, line) }
        io.lines = []
        XCTAssertEqual(session.execute("info \(session.images[1].savedPaths[0])"), .ok)
        XCTAssertTrue(io.lines.contains("sdrepl: spacing trailing, eta 0.5"), "\(io.lines)")
        XCTAssertEqual(session.execute("info \(folder.path)/nothing.png"), .failed(Diagnostic(.file(
            command: "info", path: "\(folder.path)/nothing.png", reason: "no such file or folder"), at: nil)))
        XCTAssertEqual(session.execute("info"), .failed(Diagnostic(.missingArgument(command: "info", usage: "info FILE"), at: nil)))
    }
}
