import FileErrors
import Foundation
import XCTest

/// Each phrase from a real file operation where one can be made without privileges, and from the
/// error Foundation or the kernel gives otherwise (read-only file systems, permissions: the tests
/// may run as root).
final class FileErrorTextTests: XCTestCase {
    private var folder = ""

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "file-errors-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: folder)
    }

    private func reason(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> String? {
        do {
            try body()
            XCTFail("expected an error", file: file, line: line)
            return nil
        } catch {
            return FileErrorText.reason(error)
        }
    }

    func testRealFileOperations() throws {
        let binary = folder + "/binary.sdscript"
        XCTAssertTrue(FileManager.default.createFile(atPath: binary, contents: Data([0xFF, 0xFE, 0x00, 0x80])))
        // Foundation's NSCocoaErrorDomain 256 with EISDIR underneath: "The operation could not be completed."
        XCTAssertEqual(reason { _ = try Data(contentsOf: URL(fileURLWithPath: self.folder)) }, "is a folder, not a file")
        XCTAssertEqual(reason { _ = try String(contentsOfFile: self.folder, encoding: .utf8) }, "is a folder, not a file")
        XCTAssertEqual(reason { _ = try Data(contentsOf: URL(fileURLWithPath: self.folder + "/none.png")) }, "no such file or folder")
        XCTAssertEqual(reason { _ = try String(contentsOfFile: binary, encoding: .utf8) }, "not UTF-8 text")
        XCTAssertEqual(reason { try FileManager.default.createDirectory(atPath: binary + "/sub", withIntermediateDirectories: true) },
                       "a part of the path is a file, not a folder")
        XCTAssertEqual(reason { try Data([1, 2, 3]).write(to: URL(fileURLWithPath: "/dev/full")) }, "the disk is full")
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: "/dev/full"))
        XCTAssertEqual(reason { try handle.write(contentsOf: Data([1])) }, "the disk is full")
    }

    /// Where images will be saved: a folder to make under a writable one is fine; a file in the way
    /// is named. (A folder without write permission cannot be made here: the tests may run as root.)
    func testAnOutputFolderIsCheckedUpToThePartThatExists() throws {
        XCTAssertNil(FileErrorText.unwritableFolderReason(folder))
        XCTAssertNil(FileErrorText.unwritableFolderReason(folder + "/new/deeper/"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/new"), "nothing is made")
        let file = folder + "/taken.png"
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data([1])))
        XCTAssertEqual(FileErrorText.unwritableFolderReason(file), "\(file) is a file, not a folder")
        XCTAssertEqual(FileErrorText.unwritableFolderReason(file + "/sub/dir"), "\(file) is a file, not a folder")
        let long = folder + "/" + String(repeating: "x", count: 300) + "/y"
        XCTAssertEqual(FileErrorText.unwritableFolderReason(long), "\(long): the name is too long")
    }

    /// `~` is `$HOME` as the shell has it (Foundation's expansion reads the password database alone).
    func testATildeIsTheHomeTheEnvironmentGives() throws {
        let home = try XCTUnwrap(ProcessInfo.processInfo.environment["HOME"])
        XCTAssertEqual("~".expandingTilde, home)
        XCTAssertEqual("~/pictures/a b.png".expandingTilde, (home.hasSuffix("/") ? String(home.dropLast()) : home) + "/pictures/a b.png")
        XCTAssertEqual("/abs/~/x".expandingTilde, "/abs/~/x")
        XCTAssertEqual("rel/x".expandingTilde, "rel/x")
    }

    func testFoundationAndKernelErrors() {
        XCTAssertEqual(FileErrorText.reason(CocoaError(.fileWriteVolumeReadOnly)), "read-only file system")
        XCTAssertEqual(FileErrorText.reason(CocoaError(.fileReadNoPermission)), "permission denied")
        XCTAssertEqual(FileErrorText.reason(CocoaError(.fileWriteOutOfSpace)), "the disk is full")
        XCTAssertEqual(FileErrorText.reason(CocoaError(.fileWriteFileExists)), "exists already")
        XCTAssertEqual(FileErrorText.reason(CocoaError(.fileReadInapplicableStringEncoding)), "not UTF-8 text")
        XCTAssertEqual(FileErrorText.reason(POSIXError(.EACCES)), "permission denied")
        XCTAssertEqual(FileErrorText.reason(POSIXError(.EROFS)), "read-only file system")
        let readOnly = NSError(domain: NSCocoaErrorDomain, code: CocoaError.fileWriteNoPermission.rawValue,
                               userInfo: [NSUnderlyingErrorKey: NSError(domain: NSPOSIXErrorDomain, code: Int(EROFS))])
        XCTAssertEqual(FileErrorText.reason(readOnly), "read-only file system", "the kernel's reason wins over Foundation's guess")
        XCTAssertEqual(FileErrorText.reason(NSError(domain: NSCocoaErrorDomain, code: 256)), "could not be read")
        XCTAssertEqual(FileErrorText.reason(errno: ENOSPC), "the disk is full")
        XCTAssertEqual(FileErrorText.reason(errno: EDQUOT), "the disk quota is used up")
        XCTAssertEqual(FileErrorText.reason(errno: EFBIG), "the file is larger than this system allows")
        XCTAssertEqual(FileErrorText.reason(errno: ENOENT), "no such file or folder")
        XCTAssertEqual(FileErrorText.reason(errno: EIO), "input/output error")
    }

    /// An error of sdrepl's own (with a description that says what to do) is passed through.
    func testOwnErrorsKeepTheirDescription() {
        struct Refusal: Error, CustomStringConvertible { var description: String { "it is a pickle" } }
        XCTAssertEqual(FileErrorText.reason(Refusal()), "it is a pickle")
    }

    /// No phrase is Foundation's boilerplate or ends in a full stop (callers go on after it).
    func testNoPhraseIsFoundationsText() {
        for code in [4, 256, 257, 258, 259, 260, 261, 263, 264, 512, 513, 514, 516, 517, 640, 642] {
            let text = FileErrorText.reason(NSError(domain: NSCocoaErrorDomain, code: code))
            XCTAssertFalse(text.contains("NSCocoaErrorDomain") || text.contains("operation could not") || text.hasSuffix("."), "\(code): \(text)")
        }
        for code in 1...133 {
            let text = FileErrorText.reason(errno: Int32(code))
            let capitalised = text.first?.isUppercase == true && text.dropFirst().first?.isLowercase == true
            XCTAssertFalse(text.hasSuffix(".") || capitalised, "\(code): \(text)")
        }
    }
}
