// libFuzzer harness: arbitrary bytes opened as a PyTorch zip file (TorchFile: the zip reader, the
// weights-only pickle machine, the tensor listing), and every tensor of a file that opens read back.
// Built by Fuzz/run.sh together with Sources/NN/Weights/{TensorFile,MappedFile,Safetensors,HeaderJSON,
// SafetensorsError,FloatConversion,Parameter,ShapeRecorder,WeightsError}.swift, Sources/NN/Weights/Torch/*.swift
// and Sources/NN/Tensor/{Tensor,Profiler}.swift.
//
// Two modes, chosen by the first byte, so that the fuzzer reaches the pickle machine as well as the zip:
// - even (every zip starts with 'P', 0x50): the input is the file;
// - odd: the rest of the input is data.pkl, wrapped here in a valid archive (right checksum) with
//   storages "0" to "3" of 64 bytes each, so that mutations of the pickle are not all stopped by
//   the zip's CRC.
// `TorchFile` promises that a hostile file ends in a `TorchFileError` and that, once open, no read
// goes out of bounds; both are checked (AddressSanitizer watches the reads from the mapping).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

private let scratchPath: String = {
    var isDirectory: ObjCBool = false
    let shm = FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory) && isDirectory.boolValue
    let base = shm ? "/dev/shm" : NSTemporaryDirectory()
    return base + "/sdrepl-fuzz-pickle-\(getpid()).ckpt"
}()

private let removeScratchAtExit: Void = { atexit { unlink(scratchPath) } }()

/// At most this many tensors of one file are read.
private let tensorsRead = 64

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    removeScratchAtExit
    let input = UnsafeBufferPointer(start: data, count: size)
    let file: [UInt8]
    if let first = input.first, first & 1 == 1 {
        let storages = (0..<4).map { (String($0), [UInt8](repeating: UInt8($0 + 1), count: 64)) }
        file = archive(pickle: Array(input.dropFirst()), storages: storages)
    } else {
        file = Array(input)
    }
    writeScratch(file)
    do {
        let opened = try TorchFile(url: URL(fileURLWithPath: scratchPath), pickles: .read)
        check(opened)
    } catch let error as TorchFileError {
        precondition(!error.description.isEmpty && !error.description.contains("\n"), "a message is one line: \(error)")
    } catch {
        preconditionFailure("TorchFile threw \(type(of: error)), not a TorchFileError: \(error)")
    }
    return 0
}

private func check(_ file: TorchFile) {
    precondition(Set(file.names).count == file.names.count, "names repeat: \(file.names)")
    precondition(file.keys == file.names)
    for name in file.names.prefix(tensorsRead) {
        guard let info = file.tensorInfo(name) else { preconditionFailure("\(name) is listed without info") }
        precondition(file.shape(of: name) == info.shape && info.shape.allSatisfy { $0 >= 0 })
        do {
            var floats = [Float](repeating: .nan, count: info.elementCount)
            if info.dtype.isReadableAsFloat {
                try floats.withUnsafeMutableBufferPointer { try file.read(name, into: $0) }
                let tensor = try file.tensor(name)
                precondition(tensor.shape == info.shape && tensor.count == info.elementCount)
                precondition(zip(tensor.data, floats).allSatisfy { $0.bitPattern == $1.bitPattern })
            } else {
                expect(.unsupportedDtype(path: file.url.path, tensor: name, dtype: info.dtype.rawValue)) {
                    try floats.withUnsafeMutableBufferPointer { try file.read(name, into: $0) }
                }
            }
            var wrongSize = [Float](repeating: 0, count: info.elementCount + 1)
            expect(.bufferSizeMismatch(path: file.url.path, tensor: name, elements: info.elementCount, bufferCount: wrongSize.count)) {
                try wrongSize.withUnsafeMutableBufferPointer { try file.read(name, into: $0) }
            }
            file.releasePages(of: name)
        } catch {
            preconditionFailure("reading \(name), which validated, threw \(error)")
        }
    }
    let missing = "\u{0}not a tensor"
    expect(.noSuchTensor(path: file.url.path, tensor: missing)) { _ = try file.tensor(missing) }
}

private func expect(_ expected: TorchFileError, _ body: () throws -> Void) {
    do {
        try body()
        preconditionFailure("expected \(expected), nothing was thrown")
    } catch let error as TorchFileError {
        precondition(error == expected, "expected \(expected), got \(error)")
    } catch {
        preconditionFailure("expected \(expected), got \(error)")
    }
}

private func writeScratch(_ bytes: [UInt8]) {
    let fd = open(scratchPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    precondition(fd >= 0, "cannot write \(scratchPath): \(String(cString: strerror(errno)))")
    defer { close(fd) }
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
        precondition(n > 0 || errno == EINTR, "cannot write the scratch file: \(String(cString: strerror(errno)))")
        if n > 0 { written += n }
    }
}

/// A stored zip of `archive/data.pkl` and `archive/data/KEY`, as torch.save lays it out (without the
/// 64-byte alignment and the zip64 records, which the file mode covers).
private func archive(pickle: [UInt8], storages: [(String, [UInt8])]) -> [UInt8] {
    var out: [UInt8] = []
    func u16(_ v: Int) { out += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
    let entries = [("archive/data.pkl", pickle)] + storages.map { ("archive/data/\($0.0)", $0.1) }
    var offsets: [Int] = []
    for (name, data) in entries {
        offsets.append(out.count)
        u32(0x0403_4B50); u16(20); u16(0); u16(0); u16(0); u16(0)
        u32(crc32(data)); u32(UInt32(data.count)); u32(UInt32(data.count)); u16(name.utf8.count); u16(0)
        out += Array(name.utf8) + data
    }
    let directory = out.count
    for ((name, data), offset) in zip(entries, offsets) {
        u32(0x0201_4B50); u16(20); u16(20); u16(0); u16(0); u16(0); u16(0)
        u32(crc32(data)); u32(UInt32(data.count)); u32(UInt32(data.count)); u16(name.utf8.count)
        u16(0); u16(0); u16(0); u16(0); u32(0); u32(UInt32(offset))
        out += Array(name.utf8)
    }
    let size = out.count - directory
    u32(0x0605_4B50); u16(0); u16(0); u16(entries.count); u16(entries.count); u32(UInt32(size)); u32(UInt32(directory)); u16(0)
    return out
}

private func crc32(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        c ^= UInt32(b)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    }
    return c ^ 0xFFFF_FFFF
}
