import Foundation
import XCTest
import NN

/// A fresh temporary directory, removed when the test case ends.
/// It lives in /dev/shm when there is one: the fuzz test writes thousands of small files, which on
/// the CI machine's disk costs ~9 ms each and in tmpfs next to nothing.
public func makeWeightsTestDirectory(_ testCase: XCTestCase) throws -> URL {
    var isDirectory: ObjCBool = false
    let shm = FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory) && isDirectory.boolValue
        && FileManager.default.isWritableFile(atPath: "/dev/shm")
    let base = shm ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
    let dir = base
        .appendingPathComponent("sdrepl-\(type(of: testCase))-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    testCase.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    return dir
}

/// The bytes of a safetensors file with the given header text (not padded) and data section.
public func safetensorsBytes(header: [UInt8], data: [UInt8] = []) -> [UInt8] {
    var out: [UInt8] = []
    withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
    return out + header + data
}

public func safetensorsBytes(header: String, data: [UInt8] = []) -> [UInt8] {
    safetensorsBytes(header: Array(header.utf8), data: data)
}

/// Writes `bytes` to `name` in `dir`.
@discardableResult
public func writeTestFile(_ bytes: [UInt8], _ name: String, in dir: URL) throws -> URL {
    let url = dir.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url
}

/// Writes a safetensors file with the writer: each tensor's values are given as Float32 and
/// converted to its dtype (F32, F16, BF16, or I32/I64 by value).
@discardableResult
public func writeSafetensors(_ url: URL, _ tensors: [(name: String, dtype: SafetensorsDType, shape: [Int], values: [Float])],
                      metadata: [String: String] = [:]) throws -> URL {
    let writer = try SafetensorsWriter(url: url, tensors: tensors.map { .init(name: $0.name, dtype: $0.dtype, shape: $0.shape) },
                                       metadata: metadata)
    for t in tensors {
        switch t.dtype {
        case .i64: try t.values.map { Int64($0).littleEndian }.withUnsafeBytes { try writer.appendRaw($0) }
        case .i32: try t.values.map { Int32($0).littleEndian }.withUnsafeBytes { try writer.appendRaw($0) }
        default: try writer.append(t.values)
        }
    }
    try writer.finish()
    return url
}

/// A small deterministic generator (WeightsTestRNG) so that fuzzing and random data repeat exactly.
public struct WeightsTestRNG: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs `body` and returns the `SafetensorsError` it throws, failing the test if it throws nothing
/// or something else.
public func safetensorsError(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> SafetensorsError? {
    do {
        try body()
        XCTFail("expected a SafetensorsError, but nothing was thrown", file: file, line: line)
    } catch let e as SafetensorsError {
        return e
    } catch {
        XCTFail("expected a SafetensorsError, got \(error)", file: file, line: line)
    }
    return nil
}

/// Writes a copy of `source` in which the tensors `retype` gives a type for are stored in that type,
/// as a file saved from the wrong tensors or quantised would hold them: integers and BOOL hold the
/// values truncated (as torch's `.to(torch.int8)`), F8_E5M2 the top byte of each fp16 value, the other
/// types sdrepl cannot read zeros. The rest keep their bytes.
@discardableResult
public func writeRetyped(_ source: SafetensorsFile, to url: URL, retype: (SafetensorsTensorInfo) -> SafetensorsDType?) throws -> URL {
    let writer = try SafetensorsWriter(url: url, tensors: source.tensors.map { .init(name: $0.name, dtype: retype($0) ?? $0.dtype, shape: $0.shape) })
    for info in source.tensors {
        guard let dtype = retype(info), dtype != info.dtype else {
            try source.withRawBytes(of: info.name) { try writer.appendRaw($0) }
            continue
        }
        let values = try source.tensor(info.name).data
        func raw<T>(_ converted: [T]) throws { try converted.withUnsafeBytes { try writer.appendRaw($0) } }
        switch dtype {
        case .f32, .f16, .bf16: try writer.append(values)
        case .f64: try raw(values.map { Double($0).bitPattern.littleEndian })
        case .i64: try raw(values.map { Int64($0).littleEndian })
        case .i32: try raw(values.map { Int32(clamping: Int64($0)).littleEndian })
        case .i16: try raw(values.map { Int16(clamping: Int64($0)).littleEndian })
        case .i8: try raw(values.map { Int8(clamping: Int64($0)) })
        case .u8: try raw(values.map { UInt8(clamping: Int64($0)) })
        case .bool: try raw(values.map { $0 != 0 ? UInt8(1) : 0 })
        case .f8e5m2: try raw(values.map { UInt8(truncatingIfNeeded: Float16($0).bitPattern >> 8) })
        default: try raw([UInt8](repeating: 0, count: info.elementCount * dtype.bitWidth / 8))
        }
    }
    try writer.finish()
    return url
}
