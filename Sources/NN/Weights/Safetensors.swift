import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The element types the safetensors format defines
/// (https://github.com/huggingface/safetensors, `Dtype` in `safetensors/src/tensor.rs`).
///
/// Any of them may appear in a header; only the floating types F32, F16, BF16, F64 and the integer
/// types can be read as Float32 (`SafetensorsFile.read(_:into:)`).
public enum SafetensorsDType: String, CaseIterable, Sendable {
    case bool = "BOOL"
    case f4 = "F4"
    case f6e2m3 = "F6_E2M3"
    case f6e3m2 = "F6_E3M2"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case f8e8m0 = "F8_E8M0"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case c64 = "C64"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bits per element (sub-byte types pack several elements per byte).
    public var bitWidth: Int {
        switch self {
        case .f4: return 4
        case .f6e2m3, .f6e3m2: return 6
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3, .f8e8m0: return 8
        case .i16, .u16, .f16, .bf16: return 16
        case .i32, .u32, .f32: return 32
        case .c64, .f64, .i64, .u64: return 64
        }
    }

    /// True when `SafetensorsFile.read(_:into:)` can convert this type to Float32.
    public var isReadableAsFloat: Bool {
        switch self {
        case .f32, .f16, .bf16, .f64, .bool, .u8, .i8, .i16, .u16, .i32, .u32, .i64, .u64: return true
        case .f4, .f6e2m3, .f6e3m2, .f8e5m2, .f8e4m3, .f8e8m0, .c64: return false
        }
    }

    /// True for the types a weight may be stored in: F32, F16, BF16 and F64. Integers and BOOL convert
    /// by value, but a weight stored in them is not the weight: the file is damaged, quantised or was
    /// saved from the wrong tensors, and decoding with it gives wrong pixels rather than an error.
    public var isReadableAsWeight: Bool {
        switch self {
        case .f32, .f16, .bf16, .f64: return true
        default: return false
        }
    }
}

/// One tensor's entry in a safetensors header, validated.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// The tensor's bytes relative to the start of the data section (the header's `data_offsets`).
    public let dataOffsets: Range<Int>
    /// The same bytes as offsets into the whole file.
    public let fileRange: Range<Int>
    /// The number of elements (1 for a scalar of shape `[]`).
    public let elementCount: Int
}

/// A safetensors file, memory-mapped and validated.
///
/// Opening maps the file read-only and checks the whole header: the JSON, every tensor's dtype,
/// shape and byte range, and that the tensors tile the data section exactly (no overlaps, no gaps,
/// nothing after the last tensor, as the format requires). After that, reading a tensor cannot go
/// out of bounds. Tensor data is never copied as a whole; `read(_:into:)` converts one tensor into
/// the caller's buffer.
///
/// The mapping is private and read-only; if another process truncates the file while it is open,
/// the kernel raises SIGBUS on access, which no reader of a mapped file can prevent.
public final class SafetensorsFile: TensorSource, @unchecked Sendable {
    /// The largest header accepted, as in the reference implementation (`MAX_HEADER_SIZE`).
    public static let maxHeaderLength = 100_000_000

    public let url: URL
    /// The header's `__metadata__` (empty when absent).
    public let metadata: [String: String]
    /// Every tensor, in the order of its data in the file.
    public let tensors: [SafetensorsTensorInfo]
    /// Where the data section starts in the file (8 + header length).
    public let dataStart: Int

    private let file: MappedFile
    private let index: [String: Int]

    /// Maps and validates the safetensors file at `url`.
    /// - Throws: `SafetensorsError` naming the file, the tensor and the problem.
    public init(url: URL) throws {
        self.url = url
        let path = url.path
        do {
            file = try MappedFile(path: path)
        } catch let failure as MappedFile.Failure {
            switch failure {
            case let .cannotOpen(reason): throw SafetensorsError.cannotOpen(path: path, reason: reason)
            case .notARegularFile: throw SafetensorsError.notARegularFile(path: path)
            }
        }
        let bytes = file.bytes
        guard file.size > 0 else { throw SafetensorsError.emptyFile(path: path) }
        guard file.size >= 8 else { throw SafetensorsError.fileTooShort(path: path, size: file.size) }
        let declared = bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard declared <= UInt64(Self.maxHeaderLength) else {
            throw SafetensorsError.headerTooLarge(path: path, declared: declared, limit: Self.maxHeaderLength)
        }
        let headerLength = Int(declared)
        guard headerLength <= file.size - 8 else {
            throw SafetensorsError.headerBeyondFile(path: path, declared: declared, available: file.size - 8)
        }
        dataStart = 8 + headerLength
        let header = UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart])
        let parsed = try Self.parseHeader(header, path: path, dataLength: file.size - dataStart, dataStart: dataStart)
        metadata = parsed.metadata
        tensors = parsed.tensors
        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        self.index = index
    }

    /// Tensor names in data order.
    public var names: [String] { tensors.map(\.name) }

    /// The validated entry of `name`, or nil.
    public func info(_ name: String) -> SafetensorsTensorInfo? {
        index[name].map { tensors[$0] }
    }

    /// Calls `body` with the raw little-endian bytes of `name`, valid only during the call.
    /// - Throws: `SafetensorsError.noSuchTensor`, or whatever `body` throws.
    public func withRawBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let info = info(name) else { throw SafetensorsError.noSuchTensor(path: url.path, tensor: name) }
        return try withExtendedLifetime(file) {
            try body(UnsafeRawBufferPointer(rebasing: file.bytes[info.fileRange]))
        }
    }

    /// Converts tensor `name` to Float32 into `buffer`.
    ///
    /// F32 is copied, F16 and BF16 are widened exactly (subnormals, infinities and NaN payloads
    /// included), F64 is rounded to nearest, integers and BOOL are converted by value. Large tensors
    /// are converted on all cores.
    /// - Parameters:
    ///   - name: the tensor's name in this file.
    ///   - buffer: room for exactly `info(name).elementCount` floats.
    /// - Throws: `.noSuchTensor`, `.bufferSizeMismatch`, or `.unsupportedDtype` for the F8, F6, F4 and
    ///   complex types.
    public func read(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let info = info(name) else { throw SafetensorsError.noSuchTensor(path: url.path, tensor: name) }
        guard buffer.count == info.elementCount else {
            throw SafetensorsError.bufferSizeMismatch(path: url.path, tensor: name, elements: info.elementCount, bufferCount: buffer.count)
        }
        guard info.dtype.isReadableAsFloat else {
            throw SafetensorsError.unsupportedDtype(path: url.path, tensor: name, dtype: info.dtype.rawValue)
        }
        guard info.elementCount > 0, let base = file.base else { return }
        withExtendedLifetime(file) {
            FloatConversion.convert(info.dtype, from: base + info.fileRange.lowerBound, to: buffer)
        }
    }

    /// Converts rows `rows` of `name`, seen as `[rows, width]`, into `buffer`: only their bytes are read.
    public func readRows(_ name: String, rows: [Int], width: Int, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let info = info(name) else { throw SafetensorsError.noSuchTensor(path: url.path, tensor: name) }
        guard buffer.count == rows.count * width, width > 0, info.elementCount % width == 0 else {
            throw SafetensorsError.bufferSizeMismatch(path: url.path, tensor: name, elements: info.elementCount, bufferCount: buffer.count)
        }
        guard info.dtype.isReadableAsFloat else {
            throw SafetensorsError.unsupportedDtype(path: url.path, tensor: name, dtype: info.dtype.rawValue)
        }
        guard let base = file.base else { return }
        let rowBytes = info.fileRange.count / info.elementCount * width
        withExtendedLifetime(file) {
            for (i, row) in rows.enumerated() {
                precondition(row >= 0 && row < info.elementCount / width, "row \(row) outside \(name) \(info.shape)")
                FloatConversion.convert(info.dtype, from: base + info.fileRange.lowerBound + row * rowBytes,
                                        to: UnsafeMutableBufferPointer(rebasing: buffer[(i * width)..<((i + 1) * width)]))
            }
        }
    }

    /// The elements of `name` in place when it is stored as F16 or BF16 (two-byte aligned).
    public func storedHalfElements(_ name: String) -> HalfElements? {
        guard let info = info(name), info.dtype == .f16 || info.dtype == .bf16, info.elementCount > 0,
              let base = file.base, info.fileRange.lowerBound % 2 == 0 else { return nil }
        return HalfElements(bits: (base + info.fileRange.lowerBound).assumingMemoryBound(to: UInt16.self),
                            count: info.elementCount, isBF16: info.dtype == .bf16)
    }

    /// Drops the mapped pages of tensor `name` from this process's resident set once it has been
    /// converted (`MappedFile.releasePages` says why and how).
    public func releasePages(of name: String) {
        guard let info = info(name) else { return }
        file.releasePages(info.fileRange)
    }

    /// The tensor `name` as a new Float32 `Tensor`.
    /// - Throws: as `read(_:into:)`.
    public func tensor(_ name: String) throws -> Tensor {
        guard let info = info(name) else { throw SafetensorsError.noSuchTensor(path: url.path, tensor: name) }
        var out = Tensor(shape: info.shape)
        try out.data.withUnsafeMutableBufferPointer { try read(name, into: $0) }
        return out
    }

    // MARK: TensorSource

    public var sourceDescription: String { url.path }
    public var keys: [String] { names }
    public func shape(of key: String) -> [Int]? { info(key)?.shape }
    public func storedTensor(_ key: String) -> StoredTensor? {
        info(key).map { StoredTensor(path: url.path, name: $0.name, dtype: $0.dtype) }
    }
    public func filesChangedOnDisk() -> [String] { file.changedSinceMapped ? [url.path] : [] }

    // MARK: Header validation

    private struct ParsedHeader {
        var metadata: [String: String]
        var tensors: [SafetensorsTensorInfo]
    }

    private static func parseHeader(_ header: UnsafeRawBufferPointer, path: String, dataLength: Int, dataStart: Int) throws -> ParsedHeader {
        if let bad = firstInvalidUTF8Offset(header) {
            throw SafetensorsError.headerNotUTF8(path: path, offset: bad)
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(header)
        } catch let e as JSONParseError {
            switch e.kind {
            case .invalidUTF8: throw SafetensorsError.headerNotUTF8(path: path, offset: e.offset)
            case let .syntax(reason): throw SafetensorsError.invalidJSON(path: path, offset: e.offset, reason: reason)
            }
        }
        guard case let .object(members) = json else {
            throw SafetensorsError.headerNotObject(path: path, found: json.kindDescription)
        }
        var seen = Set<String>()
        var metadata: [String: String] = [:]
        var tensors: [SafetensorsTensorInfo] = []
        tensors.reserveCapacity(members.count)
        for (name, value) in members {
            guard seen.insert(name).inserted else { throw SafetensorsError.duplicateName(path: path, name: name) }
            if name == "__metadata__" {
                guard case let .object(entries) = value else {
                    throw SafetensorsError.invalidMetadata(path: path, reason: "it is \(value.kindDescription), not an object")
                }
                for (k, v) in entries {
                    guard case let .string(s) = v else {
                        throw SafetensorsError.invalidMetadata(path: path, reason: "the value of '\(k)' is \(v.kindDescription), not a string")
                    }
                    guard metadata.updateValue(s, forKey: k) == nil else {
                        throw SafetensorsError.invalidMetadata(path: path, reason: "key '\(k)' appears twice")
                    }
                }
                continue
            }
            tensors.append(try tensorInfo(name, value, path: path, dataLength: dataLength, dataStart: dataStart))
        }

        // The data must be tiled exactly: sorted by offsets, each tensor starts where the previous
        // ended and the last ends at the end of the file (the spec forbids holes, which would let a
        // file hide other content; the reference reader refuses them too).
        tensors.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound) }
        var cursor = 0
        var previous: String?
        for t in tensors {
            if t.dataOffsets.lowerBound < cursor, let previous {
                throw SafetensorsError.overlappingTensors(path: path, first: previous, second: t.name)
            }
            if t.dataOffsets.lowerBound > cursor {
                throw SafetensorsError.gapInData(path: path, offset: cursor, before: t.name)
            }
            cursor = t.dataOffsets.upperBound
            previous = t.name
        }
        if cursor != dataLength {
            throw SafetensorsError.unindexedTrailingData(path: path, indexedEnd: cursor, dataLength: dataLength)
        }
        return ParsedHeader(metadata: metadata, tensors: tensors)
    }

    private static func tensorInfo(_ name: String, _ value: JSONValue, path: String, dataLength: Int, dataStart: Int) throws -> SafetensorsTensorInfo {
        func bad(_ reason: String) -> SafetensorsError { .invalidEntry(path: path, tensor: name, reason: reason) }
        guard case let .object(fields) = value else { throw bad("it is \(value.kindDescription), not an object") }
        func field(_ key: String) throws -> JSONValue {
            let found = fields.filter { $0.key == key }
            guard found.count == 1 else {
                throw bad(found.isEmpty ? "it has no '\(key)' field" : "it has '\(key)' more than once")
            }
            return found[0].value
        }

        guard case let .string(dtypeName) = try field("dtype") else { throw bad("'dtype' is not a string") }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw SafetensorsError.unknownDtype(path: path, tensor: name, dtype: dtypeName)
        }

        guard case let .array(dims) = try field("shape") else { throw bad("'shape' is not an array") }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        for d in dims {
            guard case let .number(text) = d else { throw bad("'shape' holds \(d.kindDescription), not a number") }
            guard let n = Int(text), n >= 0 else {
                throw SafetensorsError.invalidDimension(path: path, tensor: name, dimension: text)
            }
            shape.append(n)
        }
        // The product of the non-zero dimensions must fit too: with a zero anywhere the element count
        // is 0, but code that multiplies a sub-shape (a row length, a stride) would still overflow.
        var nonZeroProduct = 1
        for n in shape where n != 0 {
            let (p, overflow) = nonZeroProduct.multipliedReportingOverflow(by: n)
            if overflow { throw SafetensorsError.sizeOverflow(path: path, tensor: name, shape: shape) }
            nonZeroProduct = p
        }
        let count = shape.contains(0) ? 0 : nonZeroProduct
        let (bits, bitsOverflow) = count.multipliedReportingOverflow(by: dtype.bitWidth)
        if bitsOverflow { throw SafetensorsError.sizeOverflow(path: path, tensor: name, shape: shape) }

        guard case let .array(offsets) = try field("data_offsets") else { throw bad("'data_offsets' is not an array") }
        guard offsets.count == 2 else { throw bad("'data_offsets' has \(offsets.count) elements instead of 2") }
        var ends: [UInt64] = []
        for o in offsets {
            guard case let .number(text) = o else { throw bad("'data_offsets' holds \(o.kindDescription), not a number") }
            guard let v = UInt64(text) else {
                throw bad("'data_offsets' holds \(text), which is not a non-negative integer that fits in 64 bits")
            }
            ends.append(v)
        }
        let (begin64, end64) = (ends[0], ends[1])
        guard end64 <= UInt64(dataLength) else {
            throw SafetensorsError.offsetsOutOfRange(path: path, tensor: name, end: max(begin64, end64), dataLength: dataLength)
        }
        let (begin, end) = (Int(begin64), Int(end64))
        guard begin <= end else { throw SafetensorsError.reversedOffsets(path: path, tensor: name, begin: begin, end: end) }
        guard bits % 8 == 0, bits / 8 == end - begin else {
            throw SafetensorsError.sizeMismatch(path: path, tensor: name, dtype: dtypeName, shape: shape,
                                                expectedBytes: (bits + 7) / 8, actualBytes: end - begin)
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end,
                                     fileRange: (dataStart + begin)..<(dataStart + end), elementCount: count)
    }
}
