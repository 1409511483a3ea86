import XCTest

@testable import Imaging

final class ImageWriterTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sdrepl-imaging-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func writer(_ subdirectory: String = "out") -> ImageWriter {
        ImageWriter(directory: directory.appendingPathComponent(subdirectory), timeZone: TimeZone(secondsFromGMT: 0) ?? .current)
    }

    private func contents(_ url: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
    }

    func testFileStemAndSlug() {
        XCTAssertEqual(
            ImageWriter.fileStem(
                timestamp: Date(timeIntervalSince1970: 1_795_576_522), seed: 1234, prompt: "A red fox, in snow!",
                timeZone: TimeZone(secondsFromGMT: 0) ?? .current),
            "20261125-031522_s1234_a-red-fox-in-snow")
        XCTAssertEqual(ImageWriter.slug("Café — crème brûlée"), "cafe-creme-brulee")
        XCTAssertEqual(ImageWriter.slug("狐狸"), "image")
        XCTAssertEqual(ImageWriter.slug("a red fox <lora:ink_v2:0.8>, snow"), "a-red-fox-snow")
        XCTAssertEqual(ImageWriter.slug("one two three four five six seven eight nine ten"), "one-two-three-four-five-six-seven-eight")
        XCTAssertEqual(ImageWriter.slug(String(repeating: "x", count: 60)).count, 40)
    }

    func testSavesPNGAndJPEGWithSharedNameAndReadableRecipes() throws {
        let urls = try writer().save(makeTestImage(), metadata: sampleMetadata())
        XCTAssertEqual(urls.map(\.lastPathComponent), [
            "20261125-031522_s1234_a-red-fox-in-snow.png", "20261125-031522_s1234_a-red-fox-in-snow.jpg",
        ])
        XCTAssertEqual(contents(writer().directory), urls.map(\.lastPathComponent).sorted(), "no temporary files left")
        XCTAssertEqual(try PNGFile.decode([UInt8](Data(contentsOf: urls[0]))).image, makeTestImage())
        XCTAssertEqual(try JPEGFile.decode([UInt8](Data(contentsOf: urls[1]))).userComment, sampleMetadata().infotext)
    }

    func testNameCollisionsGetNumberedSuffixes() throws {
        let w = writer()
        let first = try w.save(makeTestImage(), metadata: sampleMetadata())
        let second = try w.save(makeTestImage(), metadata: sampleMetadata())
        // Only a JPEG of the third name exists: both formats move on to -4 so they stay paired.
        let stem = "20261125-031522_s1234_a-red-fox-in-snow"
        try Data("occupied".utf8).write(to: w.directory.appendingPathComponent("\(stem)-3.jpg"))
        let third = try w.save(makeTestImage(), metadata: sampleMetadata())
        XCTAssertEqual(first.map(\.lastPathComponent), ["\(stem).png", "\(stem).jpg"])
        XCTAssertEqual(second.map(\.lastPathComponent), ["\(stem)-2.png", "\(stem)-2.jpg"])
        XCTAssertEqual(third.map(\.lastPathComponent), ["\(stem)-4.png", "\(stem)-4.jpg"])
        XCTAssertEqual(try String(contentsOf: w.directory.appendingPathComponent("\(stem)-3.jpg"), encoding: .utf8), "occupied")
    }

    func testInjectedFailureLeavesNoPartialFile() throws {
        let sizes = try ImageFormat.allCases.map { try writer().encode(makeTestImage(), metadata: sampleMetadata(), as: $0).count }
        let smaller = try XCTUnwrap(sizes.min())
        for limit in [0, 1, 100, smaller - 1] {
            var w = writer("fail-\(limit)")
            w.failAfterBytes = limit
            XCTAssertThrowsError(try w.save(makeTestImage(), metadata: sampleMetadata())) { error in
                guard case ImagingError.writeFailed(_, _, errno: ENOSPC?) = error else { return XCTFail("\(error)") }
                XCTAssertTrue("\(error)".contains("disk is full"), "\(error)")
            }
            XCTAssertEqual(contents(w.directory), [], "after failing at byte \(limit)")
        }
        // The smaller file is written, then the larger one fails: all or nothing, so the first
        // one is removed too.
        var w = writer("fail-second")
        w.formats = zip(ImageFormat.allCases, sizes).sorted { $0.1 < $1.1 }.map(\.0)
        w.failAfterBytes = smaller
        XCTAssertNotEqual(sizes[0], sizes[1])
        XCTAssertThrowsError(try w.save(makeTestImage(), metadata: sampleMetadata()))
        XCTAssertEqual(contents(w.directory), [])
        // Without the hook the same save succeeds, so the failure above was the injected one.
        w.failAfterBytes = nil
        XCTAssertEqual(try w.save(makeTestImage(), metadata: sampleMetadata()).count, 2)
    }

    func testUnwritableDirectoryIsAClearError() throws {
        // chmod does not stop root, so use places no one can create files in: a directory below
        // a regular file, and /proc.
        let file = directory.appendingPathComponent("a-file")
        try Data().write(to: file)
        let below = ImageWriter(directory: file.appendingPathComponent("images"))
        XCTAssertThrowsError(try below.save(makeTestImage(), metadata: sampleMetadata())) { error in
            guard case ImagingError.cannotCreateDirectory(let path, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, file.appendingPathComponent("images").path)
            XCTAssertTrue("\(error)".contains("set outdir"))
        }
        let fileAsDirectory = ImageWriter(directory: file)
        XCTAssertThrowsError(try fileAsDirectory.save(makeTestImage(), metadata: sampleMetadata()))

        #if os(Linux)
            let proc = ImageWriter(directory: URL(fileURLWithPath: "/proc"))
            XCTAssertThrowsError(try proc.save(makeTestImage(), metadata: sampleMetadata())) { error in
                guard case ImagingError.writeFailed(let path, _, _) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(path.hasPrefix("/proc/"))
            }
        #endif
    }

    /// A path without an extension: both formats under it, all or nothing.
    func testAStemWritesEveryFormatOrNone() throws {
        let stem = directory.appendingPathComponent("shots/fox")
        let urls = try writer().save(makeTestImage(), metadata: sampleMetadata(), stem: stem)
        XCTAssertEqual(urls.map(\.lastPathComponent), ["fox.png", "fox.jpg"])
        XCTAssertEqual(try PNGFile.decode([UInt8](Data(contentsOf: urls[0]))).image, makeTestImage())
        try FileManager.default.removeItem(at: urls[0])
        XCTAssertThrowsError(try writer().save(makeTestImage(), metadata: sampleMetadata(), stem: stem)) { error in
            XCTAssertEqual(error as? ImagingError, .fileExists(path: urls[1].path))
        }
        XCTAssertEqual(contents(stem.deletingLastPathComponent()), ["fox.jpg"], "the PNG was not written either")
    }

    /// A prompt too long for one JPEG segment (a 1 MB prompt) does not cost the PNG: the PNG keeps
    /// the whole infotext, the JPEG's UserComment keeps the start of the prompt and the whole
    /// parameters line (what `load` needs), through libpng and libjpeg.
    func testAPromptTooLongForEXIFKeepsThePNGAndCutsTheJPEGComment() throws {
        let prompt = String(repeating: "a fox in the snow, ", count: 55_000)  // 1,045,000 characters
        let metadata = sampleMetadata(prompt: prompt)
        XCTAssertTrue(metadata.jpegUserCommentIsCut)
        XCTAssertFalse(sampleMetadata().jpegUserCommentIsCut)
        let urls = try writer().save(makeTestImage(), metadata: metadata)
        XCTAssertEqual(urls.map(\.pathExtension), ["png", "jpg"])

        let png = try PNGFile.decode([UInt8](Data(contentsOf: urls[0])))
        XCTAssertEqual(png.text("parameters"), metadata.infotext)
        XCTAssertEqual(png.text("Prompt"), prompt)
        let jpeg = try JPEGFile.decode([UInt8](Data(contentsOf: urls[1])))
        XCTAssertEqual(jpeg.image.width, 64)
        let comment = try XCTUnwrap(jpeg.userComment)
        let parameters = try XCTUnwrap(metadata.infotext.split(separator: "\n").last)
        XCTAssertTrue(comment.hasPrefix(String(prompt.prefix(20_000))), String(comment.prefix(100)))
        XCTAssertTrue(comment.hasSuffix("\nNegative prompt: blurry\n" + parameters), String(comment.suffix(300)))
        XCTAssertGreaterThan(comment.utf16.count, 32_000, "as much of the prompt as fits")
        let recipe = Infotext.parse(comment)
        XCTAssertEqual(recipe.seed, 1234)
        XCTAssertEqual(recipe.steps, 25)
        XCTAssertEqual(recipe.negativePrompt, "blurry")
    }

    func testExplicitPathWritesExactlyThatFileAndNeverOverwrites() throws {
        let target = directory.appendingPathComponent("sub/dir/fox.jpeg")
        try writer().save(makeTestImage(), metadata: sampleMetadata(), to: target)
        XCTAssertEqual(contents(target.deletingLastPathComponent()), ["fox.jpeg"])
        XCTAssertNotNil(try JPEGFile.decode([UInt8](Data(contentsOf: target))).userComment)

        let before = try Data(contentsOf: target)
        XCTAssertThrowsError(try writer().save(makeTestImage(width: 8, height: 8), metadata: sampleMetadata(), to: target)) { error in
            XCTAssertEqual(error as? ImagingError, .fileExists(path: target.path))
        }
        XCTAssertEqual(try Data(contentsOf: target), before)
        XCTAssertThrowsError(try writer().save(makeTestImage(), metadata: sampleMetadata(), to: directory.appendingPathComponent("x.gif"))) { error in
            XCTAssertEqual(error as? ImagingError, .unsupportedFormat(path: directory.appendingPathComponent("x.gif").path))
        }
    }
}
