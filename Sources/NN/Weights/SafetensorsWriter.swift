import Foundation

/// Writes a safetensors file as a stream: every tensor is declared up front (the header comes
/// first in the file), then the data is appended tensor by tensor, in declaration order, in chunks of
/// any size. A multi-gigabyte checkpoint can so be written while holding only one chunk.
///
/// The file is written to `<path>.partial` and renamed into place by `finish()`, so an interrupted
/// write never leaves a file that looks complete.
///
/// ```swift
/// let writer = try SafetensorsWriter(url: url, tensors: [
///     .init(name: "w", dtype: .f16, shape: [2, 3]),
/// ])
/// try writer.append([1, 2, 3, 4, 5, 6])   // converted to fp16
/// try writer.finish()
/// ```
public final class SafetensorsWriter {
    /// One tensor to be written.
    public struct Declaration: Sendable, Equatable {
        public var name: String
        public var dtype: SafetensorsDType
        public var shape: [Int]
        public init(name: String, dtype: SafetensorsDType, shape: [Int]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }
        var byteCount: Int { shape.reduce(1, *) * dtype.bitWidth / 8 }
    }

    public let url: URL
    public let declarations: [Declaration]
    private let partialURL: URL
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private static let flushSize = 4 << 20
    /// The tensor being filled and how many of its bytes are written.
    private var current = 0
    private var writtenInCurrent = 0
    private var finished = false

    /// Creates the file and writes its header.
    /// - Parameters:
    ///   - url: the final path; data goes to `url` + `.partial` until `finish()`.
    ///   - tensors: every tensor, in the order their data will be appended. Names must be unique and
    ///     not `__metadata__`; dimensions non-negative (programmer errors otherwise).
    ///   - metadata: the header's `__metadata__` (omitted when empty).
    /// - Throws: `SafetensorsError.writeFailed` if the file cannot be created.
    public init(url: URL, tensors: [Declaration], metadata: [String: String] = [:]) throws {
        precondition(Set(tensors.map(\.name)).count == tensors.count, "duplicate tensor names")
        precondition(!tensors.contains { $0.name == "__metadata__" }, "__metadata__ is not a tensor name")
        precondition(tensors.allSatisfy { $0.shape.allSatisfy { $0 >= 0 } }, "negative dimension")
        precondition(tensors.allSatisfy { $0.shape.reduce(1, *) * $0.dtype.bitWidth % 8 == 0 }, "tensor of a fractional byte count")
        self.url = url
        self.declarations = tensors
        partialURL = url.appendingPathExtension("partial")
        guard FileManager.default.createFile(atPath: partialURL.path, contents: nil),
              let handle = FileHandle(forWritingAtPath: partialURL.path) else {
            throw SafetensorsError.writeFailed(path: partialURL.path, reason: "cannot create the file")
        }
        self.handle = handle

        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let entries = metadata.sorted { $0.key < $1.key }.map { "\(Self.quoted($0.key)):\(Self.quoted($0.value))" }
            parts.append("\"__metadata__\":{\(entries.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let end = offset + t.byteCount
            parts.append("\(Self.quoted(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        header += parts.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        // Pad with spaces (allowed by the format) so the data starts 8-byte aligned.
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: headerBytes)
        skipEmptyTensors()
    }

    deinit {
        if !finished {
            try? handle.close()
            try? FileManager.default.removeItem(at: partialURL)
        }
    }

    /// The name of the tensor the next `append` writes into, or nil when all are complete.
    public var nextTensor: String? { current < declarations.count ? declarations[current].name : nil }

    /// Appends Float32 values to the current tensor, converted to its dtype (F32, F16 or BF16, rounding
    /// to nearest even). A chunk may span the end of one tensor and the start of the next.
    /// - Precondition: the values fit in the remaining declared tensors, which are F32, F16 or BF16.
    /// - Throws: `SafetensorsError.writeFailed` on an I/O error.
    public func append(_ values: UnsafeBufferPointer<Float>) throws {
        var i = 0
        while i < values.count {
            precondition(current < declarations.count, "more data appended than declared")
            let t = declarations[current]
            let width = t.dtype.bitWidth / 8
            let remaining = (t.byteCount - writtenInCurrent) / width
            let n = min(remaining, values.count - i)
            let chunk = UnsafeBufferPointer(rebasing: values[i..<(i + n)])
            guard [.f32, .f16, .bf16].contains(t.dtype) else {
                preconditionFailure("tensor '\(t.name)' is \(t.dtype.rawValue); append its bytes with appendRaw")
            }
            // Convert straight into the output buffer (little-endian, as the host is).
            let start = buffer.count
            buffer.append(contentsOf: repeatElement(0, count: n * width))
            buffer.withUnsafeMutableBytes { raw in
                let out = raw.baseAddress! + start
                switch t.dtype {
                case .f32:
                    out.copyMemory(from: chunk.baseAddress!, byteCount: n * 4)
                case .f16:
                    for k in 0..<n { out.storeBytes(of: FloatConversion.floatToHalf(chunk[k]).littleEndian, toByteOffset: 2 * k, as: UInt16.self) }
                default:
                    for k in 0..<n { out.storeBytes(of: FloatConversion.floatToBFloat16(chunk[k]).littleEndian, toByteOffset: 2 * k, as: UInt16.self) }
                }
            }
            i += n
            try advance(by: n * width)
        }
    }

    /// Appends Float32 values; see `append(_:)` for an unsafe buffer.
    public func append(_ values: [Float]) throws {
        try values.withUnsafeBufferPointer { try append($0) }
    }

    /// Appends raw little-endian bytes to the current tensor, for any dtype (e.g. the I64
    /// `position_ids` of a CLIP text encoder).
    /// - Precondition: the bytes fit in the remaining declared tensors.
    public func appendRaw(_ bytes: UnsafeRawBufferPointer) throws {
        var i = 0
        while i < bytes.count {
            precondition(current < declarations.count, "more data appended than declared")
            let n = min(declarations[current].byteCount - writtenInCurrent, bytes.count - i)
            buffer.append(contentsOf: bytes[i..<(i + n)])
            i += n
            try advance(by: n)
        }
    }

    /// Writes what is buffered, checks that every declared tensor is complete, and renames the
    /// file into place.
    /// - Precondition: all declared data has been appended.
    public func finish() throws {
        precondition(!finished, "finish() called twice")
        precondition(current == declarations.count, "tensor '\(nextTensor ?? "")' is incomplete")
        try flush()
        do {
            try handle.close()
            if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
            try FileManager.default.moveItem(at: partialURL, to: url)
        } catch {
            throw SafetensorsError.writeFailed(path: url.path, reason: "\(error)")
        }
        finished = true
    }

    private func advance(by bytes: Int) throws {
        writtenInCurrent += bytes
        if writtenInCurrent == declarations[current].byteCount {
            current += 1
            writtenInCurrent = 0
            skipEmptyTensors()
        }
        if buffer.count >= Self.flushSize { try flush() }
    }

    private func skipEmptyTensors() {
        while current < declarations.count, declarations[current].byteCount == 0 { current += 1 }
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        do {
            try handle.write(contentsOf: buffer)
        } catch {
            throw SafetensorsError.writeFailed(path: partialURL.path, reason: "\(error)")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// A JSON string literal for `s`.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
