import Foundation
@testable import ModelStore
import TestSupport
import XCTest

/// The hashes A1111 writes into `Lora hashes`, by its rules (hashes.py, extensions-builtin/Lora/network.py).
final class FileHashTests: XCTestCase {
    /// For a `.safetensors` LoRA, the SHA-256 of the bytes after the header (kohya's "addnet" hash):
    /// `hashlib.sha256(b[8 + struct.unpack("<Q", b[:8])[0]:]).hexdigest()[:12]` is 3d755519d909 for the
    /// fixture, whose whole-file SHA-256 starts 5f1de8a1acc4.
    func testASafetensorsLoRAIsHashedAfterItsHeader() throws {
        let lora = Fixture.url("lora/tiny-lora.safetensors")
        XCTAssertEqual(String(try FileHash.loraHash(of: lora).prefix(12)), "3d755519d909")
        XCTAssertEqual(String(try FileHash.sha256(of: lora).prefix(12)), "5f1de8a1acc4")
    }

    /// The same tensors with other metadata hash alike; a file's own `sshs_model_hash` is taken when it
    /// is a hex digest, and ignored otherwise (it is written into every recipe); another format is
    /// hashed whole.
    func testMetadataHashOtherFormatsAndHostileMetadata() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdrepl-hash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let original = [UInt8](try Data(contentsOf: Fixture.url("lora/tiny-lora.safetensors")))
        let length = Int(original.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        var header = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(original[8..<8 + length])) as? [String: Any])
        func write(_ name: String, metadata: [String: String]) throws -> URL {
            header["__metadata__"] = metadata
            let json = try JSONSerialization.data(withJSONObject: header)
            let url = folder.appendingPathComponent(name)
            var bytes = withUnsafeBytes(of: UInt64(json.count).littleEndian) { [UInt8]($0) }
            bytes += json + original[(8 + length)...]
            try Data(bytes).write(to: url)
            return url
        }
        let retitled = try write("retitled.safetensors", metadata: ["ss_output_name": "another"])
        XCTAssertEqual(String(try FileHash.loraHash(of: retitled).prefix(12)), "3d755519d909")
        let hashed = try write("hashed.safetensors", metadata: ["sshs_model_hash": "ABCDEF0123456789ABCDEF"])
        XCTAssertEqual(try FileHash.loraHash(of: hashed), "abcdef0123456789abcdef")
        let hostile = try write("hostile.safetensors", metadata: ["sshs_model_hash": "x\", Steps: 1\nNegative prompt: y"])
        XCTAssertEqual(String(try FileHash.loraHash(of: hostile).prefix(12)), "3d755519d909")
        let pickle = folder.appendingPathComponent("old.pt")
        try Data(original).write(to: pickle)
        XCTAssertEqual(String(try FileHash.loraHash(of: pickle).prefix(12)), "5f1de8a1acc4")
    }
}
