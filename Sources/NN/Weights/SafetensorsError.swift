import Foundation

/// Everything that can be wrong with a safetensors file, or with a request to read from one.
///
/// Each case names the file and, where there is one, the tensor. `description` says what was wrong
/// and what the user can do about it. A hostile or damaged file always ends in one of these; the
/// reader never traps, hangs or allocates more than the header's size.
public enum SafetensorsError: Error, Equatable, CustomStringConvertible {
    // Opening the file.
    case cannotOpen(path: String, reason: String)
    case notARegularFile(path: String)
    case emptyFile(path: String)
    /// The file is shorter than the 8-byte header length that starts every safetensors file.
    case fileTooShort(path: String, size: Int)
    case headerTooLarge(path: String, declared: UInt64, limit: Int)
    /// The header length points past the end of the file.
    case headerBeyondFile(path: String, declared: UInt64, available: Int)

    // The header's JSON.
    case headerNotUTF8(path: String, offset: Int)
    case invalidJSON(path: String, offset: Int, reason: String)
    case headerNotObject(path: String, found: String)
    case duplicateName(path: String, name: String)
    /// A tensor entry is not an object, lacks a field, or has a field of the wrong type.
    case invalidEntry(path: String, tensor: String, reason: String)
    case invalidMetadata(path: String, reason: String)

    // One tensor's description.
    case unknownDtype(path: String, tensor: String, dtype: String)
    case invalidDimension(path: String, tensor: String, dimension: String)
    case sizeOverflow(path: String, tensor: String, shape: [Int])
    case reversedOffsets(path: String, tensor: String, begin: Int, end: Int)
    case offsetsOutOfRange(path: String, tensor: String, end: UInt64, dataLength: Int)
    case sizeMismatch(path: String, tensor: String, dtype: String, shape: [Int], expectedBytes: Int, actualBytes: Int)

    // The data section as a whole.
    case overlappingTensors(path: String, first: String, second: String)
    case gapInData(path: String, offset: Int, before: String)
    case unindexedTrailingData(path: String, indexedEnd: Int, dataLength: Int)

    // Reading.
    case noSuchTensor(path: String, tensor: String)
    case unsupportedDtype(path: String, tensor: String, dtype: String)
    case bufferSizeMismatch(path: String, tensor: String, elements: Int, bufferCount: Int)

    // Writing.
    case writeFailed(path: String, reason: String)
    /// The file is something else altogether by its first bytes (`what`: "a PNG image", "a Git LFS
    /// pointer", …), given where weights were expected.
    case notWeights(path: String, what: String)

    private static let damaged = "the file is damaged or is not a safetensors file; download or convert it again"

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "cannot open \(path): \(reason)"
        case let .notARegularFile(path):
            return "\(path) is not a regular file; give the path of a .safetensors file"
        case let .headerBeyondFile(path, declared, available):
            return "\(path) declares a \(declared)-byte header but only \(available) bytes follow; the file is truncated (an interrupted download?) or is not a safetensors file"
        case let .offsetsOutOfRange(path, tensor, end, dataLength):
            return "tensor '\(tensor)' in \(path) ends at byte \(end) of the data, but the file holds only \(dataLength) bytes of data; the file is truncated (an interrupted download?) or damaged"
        case let .noSuchTensor(path, tensor):
            return "\(path) has no tensor named '\(tensor)'"
        case let .unsupportedDtype(path, tensor, dtype):
            return "tensor '\(tensor)' in \(path) is \(dtype), which cannot be read as Float32 (F32, F16, BF16, F64 and the integer types can); convert the checkpoint to fp16 or fp32"
        case let .bufferSizeMismatch(path, tensor, elements, bufferCount):
            return "tensor '\(tensor)' in \(path) has \(elements) elements but the buffer given holds \(bufferCount)"
        case let .writeFailed(path, reason):
            return "cannot write \(path): \(reason)"
        case let .notWeights(path, what) where what.hasPrefix("an HTML"):
            return "\(path) is an HTML or XML page, not weights: a download saved a web page in its place; download the file again"
        case let .notWeights(path, what):
            let fix = what.contains("Git LFS") ? "the weights themselves were not downloaded: 'git lfs pull' in its repository, or download the file again"
                                               : "give a weights file (.safetensors, or a PyTorch .ckpt/.pt/.pth), or download this one again"
            return "\(path) is \(what), not a weights file; \(fix)"
        case .emptyFile, .fileTooShort, .headerTooLarge, .headerNotUTF8, .invalidJSON, .headerNotObject,
             .duplicateName, .invalidEntry, .invalidMetadata, .unknownDtype, .invalidDimension, .sizeOverflow,
             .reversedOffsets, .sizeMismatch, .overlappingTensors, .gapInData, .unindexedTrailingData:
            return "\(damage ?? ""); \(Self.damaged)"
        }
    }

    /// What is wrong with a file whose remedy is to get it again (damaged, or not safetensors); nil
    /// for the cases whose message says what to do itself.
    private var damage: String? {
        switch self {
        case let .emptyFile(path): return "\(path) is empty"
        case let .fileTooShort(path, size): return "\(path) is only \(size) bytes, shorter than the 8-byte safetensors header length"
        case let .headerTooLarge(path, declared, limit): return "\(path) declares a \(declared)-byte header, over the \(limit)-byte limit of the format"
        case let .headerNotUTF8(path, offset): return "the header of \(path) is not valid UTF-8 (byte \(offset) of the header)"
        case let .invalidJSON(path, offset, reason): return "the header of \(path) is not valid JSON at byte \(offset): \(reason)"
        case let .headerNotObject(path, found): return "the header of \(path) is \(found), not a JSON object of tensors"
        case let .duplicateName(path, name): return "\(path) describes tensor '\(name)' more than once, so it is ambiguous which to use"
        case let .invalidEntry(path, tensor, reason): return "the entry for tensor '\(tensor)' in \(path) is malformed: \(reason)"
        case let .invalidMetadata(path, reason): return "the __metadata__ of \(path) is malformed: \(reason)"
        case let .unknownDtype(path, tensor, dtype): return "tensor '\(tensor)' in \(path) has dtype '\(dtype)', which the safetensors format does not define"
        case let .invalidDimension(path, tensor, dimension): return "tensor '\(tensor)' in \(path) has dimension \(dimension), which is not a non-negative integer that fits in 64 bits"
        case let .sizeOverflow(path, tensor, shape): return "tensor '\(tensor)' in \(path) has shape \(shape), whose size overflows 64 bits"
        case let .reversedOffsets(path, tensor, begin, end): return "tensor '\(tensor)' in \(path) has data_offsets [\(begin), \(end)], which end before they begin"
        case let .sizeMismatch(path, tensor, dtype, shape, expectedBytes, actualBytes): return "tensor '\(tensor)' in \(path) is \(dtype) with shape \(shape), which needs \(expectedBytes) bytes, but its data_offsets span \(actualBytes)"
        case let .overlappingTensors(path, first, second): return "tensors '\(first)' and '\(second)' in \(path) share bytes"
        case let .gapInData(path, offset, before): return "the data of \(path) has unindexed bytes at offset \(offset), before tensor '\(before)' (the format requires every data byte to belong to a tensor)"
        case let .unindexedTrailingData(path, indexedEnd, dataLength): return "\(path) has \(dataLength - indexedEnd) bytes of data after its last tensor (the format requires every data byte to belong to a tensor)"
        case .cannotOpen, .notARegularFile, .headerBeyondFile, .offsetsOutOfRange, .noSuchTensor, .unsupportedDtype,
             .bufferSizeMismatch, .writeFailed, .notWeights:
            return nil
        }
    }
}
