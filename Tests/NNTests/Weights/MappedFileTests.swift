import Foundation
import XCTest
@testable import NN

/// `MappedFile`'s watch on the file it mapped, and the table the SIGBUS handler reads.
final class MappedFileTests: XCTestCase {
    private func temporaryFile(_ bytes: Data) -> String {
        let path = NSTemporaryDirectory() + "mapped-" + UUID().uuidString
        FileManager.default.createFile(atPath: path, contents: bytes)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// Rewritten in place (same inode), the file counts as changed, whether its size changed or only
    /// its modification time; replaced by a rename or deleted, the mapped inode is intact: unchanged.
    func testChangedOnlyWhenTheMappedInodeIsRewritten() throws {
        let bytes = Data((0..<4096).map { UInt8($0 & 0xFF) })
        let path = temporaryFile(bytes)
        let file = try MappedFile(path: path)
        XCTAssertFalse(file.changedSinceMapped)

        // The same bytes written again: only the modification time moves.
        usleep(10_000)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: bytes)
        try handle.close()
        XCTAssertTrue(file.changedSinceMapped)

        let other = try MappedFile(path: path)
        XCTAssertFalse(other.changedSinceMapped)
        try XCTUnwrap(FileHandle(forWritingAtPath: path)).truncate(atOffset: 100)
        XCTAssertTrue(other.changedSinceMapped)

        let replaced = try MappedFile(path: path)
        let newer = temporaryFile(Data(count: 10))
        XCTAssertEqual(rename(newer, path), 0)
        XCTAssertFalse(replaced.changedSinceMapped, "a new file under the name leaves the mapping as it was")
        XCTAssertEqual(unlink(path), 0)
        XCTAssertFalse(replaced.changedSinceMapped, "a deleted file's inode lives on in the mapping")
    }

    /// A mapped file's bytes are found by address while it is mapped, and only then.
    func testRegionsNameTheFileThatHoldsAnAddress() throws {
        let path = temporaryFile(Data(count: 10_000))
        var file: MappedFile? = try MappedFile(path: path)
        let base = UInt(bitPattern: try XCTUnwrap(file?.base))
        XCTAssertEqual(MappedRegions.path(containing: base).map { String(cString: $0) }, path)
        XCTAssertEqual(MappedRegions.path(containing: base + 9_999).map { String(cString: $0) }, path)
        XCTAssertNil(MappedRegions.path(containing: base + 10_000))
        XCTAssertNil(MappedRegions.path(containing: base &- 1))
        file = nil
        XCTAssertNil(MappedRegions.path(containing: base))
    }

    /// A safetensors file reports itself once rewritten in place, so its checkpoint is opened again.
    func testSafetensorsFileReportsARewrite() throws {
        let header = Data(#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.utf8)
        var bytes = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(header)
        bytes.append(Data(count: 8))
        let path = temporaryFile(bytes)
        let file = try SafetensorsFile(url: URL(fileURLWithPath: path))
        XCTAssertEqual(file.filesChangedOnDisk(), [])
        try XCTUnwrap(FileHandle(forWritingAtPath: path)).truncate(atOffset: 8)
        XCTAssertEqual(file.filesChangedOnDisk(), [path])
    }
}
