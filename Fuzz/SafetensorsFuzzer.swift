// libFuzzer harness: arbitrary bytes opened as a safetensors file, and every tensor of a header
// that validates read back. Built by Fuzz/run.sh together with Sources/NN/Weights/{Safetensors,
// MappedFile,HeaderJSON,SafetensorsError,FloatConversion,Parameter,ShapeRecorder,WeightsError}.swift and
// Sources/NN/Tensor/{Tensor,Profiler}.swift.
//
// `SafetensorsFile` promises that a hostile file ends in a `SafetensorsError` and that, once the
// header validated, no read goes out of bounds; both are checked here (AddressSanitizer watches the
// reads, including those from the mapping, which ends exactly at the end of the file).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The reader maps a file, so each input is written to one: in /dev/shm when there is one (no disk
/// writes at tens of thousands of files a second), named after the process so parallel jobs differ.
private let scratchPath: String = {
    var isDirectory: ObjCBool = false
    let shm = FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory) && isDirectory.boolValue
    let base = shm ? "/dev/shm" : NSTemporaryDirectory()
    return base + "/sdrepl-fuzz-safetensors-\(getpid()).safetensors"
}()

/// Removes the scratch file when libFuzzer exits normally (after a crash it stays, one input in size).
private let removeScratchAtExit: Void = { atexit { unlink(scratchPath) } }()

/// At most this many tensors of one file are read: a header may list thousands of empty tensors,
/// and reading each of them again teaches the fuzzer nothing.
private let tensorsRead = 64

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    removeScratchAtExit
    writeScratch(data, size)
    do {
        let file = try SafetensorsFile(url: URL(fileURLWithPath: scratchPath))
        check(file, fileSize: size)
    } catch let error as SafetensorsError {
        _ = error.description
    } catch {
        preconditionFailure("SafetensorsFile threw \(type(of: error)), not a SafetensorsError: \(error)")
    }
    return 0
}

private func writeScratch(_ data: UnsafePointer<UInt8>, _ size: Int) {
    let fd = open(scratchPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    precondition(fd >= 0, "cannot write \(scratchPath): \(String(cString: strerror(errno)))")
    defer { close(fd) }
    var written = 0
    while written < size {
        let n = write(fd, data + written, size - written)
        precondition(n > 0 || errno == EINTR, "cannot write the scratch file: \(String(cString: strerror(errno)))")
        if n > 0 { written += n }
    }
}

private func check(_ file: SafetensorsFile, fileSize: Int) {
    var end = file.dataStart
    for info in file.tensors {
        // The tensors tile the data section in order, inside the file.
        precondition(info.fileRange.lowerBound == end && info.fileRange.upperBound <= fileSize, "\(info) does not follow \(end)")
        precondition(info.fileRange == (file.dataStart + info.dataOffsets.lowerBound)..<(file.dataStart + info.dataOffsets.upperBound))
        end = info.fileRange.upperBound
        precondition(file.info(info.name) == info && file.shape(of: info.name) == info.shape)
    }
    precondition(end == fileSize, "the tensors end at \(end), the file at \(fileSize)")

    for info in file.tensors.prefix(tensorsRead) {
        do {
            // Touch every byte, so that AddressSanitizer sees a read outside the mapping.
            let count = try file.withRawBytes(of: info.name) { bytes in
                _ = bytes.reduce(0 as UInt8, &+)
                return bytes.count
            }
            precondition(count == info.fileRange.count)
            var floats = [Float](repeating: .nan, count: info.elementCount)
            if info.dtype.isReadableAsFloat {
                try floats.withUnsafeMutableBufferPointer { try file.read(info.name, into: $0) }
                let tensor = try file.tensor(info.name)
                precondition(tensor.shape == info.shape && tensor.count == info.elementCount)
                // Equal bit for bit, NaN payloads included: both reads convert the same bytes.
                precondition(zip(tensor.data, floats).allSatisfy { $0.bitPattern == $1.bitPattern })
            } else {
                expect(.unsupportedDtype(path: file.url.path, tensor: info.name, dtype: info.dtype.rawValue)) {
                    try floats.withUnsafeMutableBufferPointer { try file.read(info.name, into: $0) }
                }
            }
            var wrongSize = [Float](repeating: 0, count: info.elementCount + 1)
            expect(.bufferSizeMismatch(path: file.url.path, tensor: info.name, elements: info.elementCount, bufferCount: wrongSize.count)) {
                try wrongSize.withUnsafeMutableBufferPointer { try file.read(info.name, into: $0) }
            }
            file.releasePages(of: info.name)
        } catch {
            preconditionFailure("reading \(info.name), which validated, threw \(error)")
        }
    }
    let missing = "\u{0}not a tensor"
    expect(.noSuchTensor(path: file.url.path, tensor: missing)) { _ = try file.tensor(missing) }
    _ = file.metadata.count
}

private func expect(_ expected: SafetensorsError, _ body: () throws -> Void) {
    do {
        try body()
        preconditionFailure("expected \(expected), nothing was thrown")
    } catch let error as SafetensorsError {
        precondition(error == expected, "expected \(expected), got \(error)")
    } catch {
        preconditionFailure("expected \(expected), got \(error)")
    }
}
