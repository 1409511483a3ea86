import Foundation

/// A PyTorch pickle in the zip format `torch.save` writes since PyTorch 1.6 (`.ckpt`, `.pt`, `.pth`,
/// often `.bin`), memory-mapped and read without running anything in it.
///
/// The archive (`StoredZip`) holds `NAME/data.pkl`, the pickle of the saved object, and one entry
/// `NAME/data/KEY` per storage, where `NAME` is `archive` or the saved file's stem. The pickle is run
/// by `PickleMachine`, which builds only data through an allow-list and refuses everything else;
/// storages are checked against their entries, and each tensor's shape, strides and offset against
/// its storage, so that once the file is open no read can leave the mapping.
///
/// Names: a checkpoint keeps its weights under `state_dict` (Lightning's layout), an upscaler under
/// `params_ema` or `params` (BasicSR's), other files under `model` or `module`, or at the top. When
/// the top dictionary holds no tensor itself and has one of these keys (in that order), the names
/// start below it, once or more; tensors in nested dictionaries are named with dots
/// (`{"string_to_param": {"*": t}}` gives `string_to_param.*`), as the file's safetensors twin
/// would name them. Values that are not tensors (`global_step`, an optimizer's lists) are not part of
/// the weights and are left out; so are tensors of types sdrepl cannot represent (complex128,
/// quantized), listed in `skipped`.
///
/// Tensor data is read in place from the mapping: fp32, fp16, bf16 (and the other types
/// `FloatConversion` reads) are widened exactly; a view with a storage offset or strides
/// (`t.T`, `big[3:7]`) is gathered into row-major order as it is read.
public final class TorchFile: TensorFile, @unchecked Sendable {
    /// The largest `data.pkl` accepted. The pickle of an SD checkpoint is well under a megabyte,
    /// one with optimizer states a few; the limit keeps a hostile file's pickle from growing the
    /// machine's arenas beyond its object limit's worth.
    public static let maxPickleLength = 256 << 20
    /// The keys weights are nested under, tried in this order.
    public static let weightsKeys = ["state_dict", "params_ema", "params", "model", "module"]
    /// How deep tensors may sit in nested dictionaries below the weights.
    public static let maxNesting = 64
    /// How many dictionary entries listing the tensors may visit (shared dictionaries are visited
    /// once per path, so a hostile file could otherwise make the walk exponential).
    public static let maxVisitedEntries = 4_000_000

    public let url: URL
    /// The archive's top folder: `archive`, or the stem of the file `torch.save` first wrote.
    public let archiveName: String
    /// The keys the weights were found under (`["state_dict"]`); empty when they are at the top.
    public let weightsPath: [String]
    /// Tensor names, in the pickle's order.
    public let names: [String]
    /// Tensors left out because sdrepl cannot represent their type, with the type's name.
    public let skipped: [(name: String, type: String)]

    struct Entry {
        let info: TensorInfo
        /// The file offset of the tensor's first element (its storage's entry plus the storage offset).
        let start: Int
        let strides: [Int]
        let itemSize: Int
        let contiguous: Bool
        /// The bytes the tensor's elements span, for `releasePages`.
        let span: Range<Int>
    }

    private let file: MappedFile
    private let entries: [String: Entry]

    /// Maps and validates the PyTorch zip file at `url`.
    /// - Parameters:
    ///   - url: the file.
    ///   - pickles: with `.refuse`, the file is refused after it is opened and before any of it is parsed.
    /// - Throws: `TorchFileError` naming the file and the problem.
    public init(url: URL, pickles: PicklePolicy = .current) throws {
        self.url = url
        let path = url.path
        do {
            file = try MappedFile(path: path)
        } catch let failure as MappedFile.Failure {
            switch failure {
            case let .cannotOpen(reason): throw TorchFileError.cannotOpen(path: path, reason: reason)
            case .notARegularFile: throw TorchFileError.notARegularFile(path: path)
            }
        }
        guard file.size > 0 else { throw TorchFileError.emptyFile(path: path) }
        guard pickles == .read else { throw TorchFileError.picklesRefused(path: path) }

        let zip: StoredZip
        do {
            zip = try StoredZip(file.bytes)
        } catch let failure as StoredZip.Failure {
            switch failure {
            case let .damaged(reason): throw TorchFileError.damagedZip(path: path, reason: reason)
            case let .unsafeName(name): throw TorchFileError.unsafeEntryName(path: path, name: name)
            case let .duplicate(name): throw TorchFileError.duplicateEntry(path: path, name: name)
            case let .compressed(entry, method): throw TorchFileError.compressedEntry(path: path, entry: entry, method: method)
            case let .encrypted(entry): throw TorchFileError.encryptedEntry(path: path, entry: entry)
            }
        }

        // The one `NAME/data.pkl` at the top of the archive.
        let pickles = zip.entries.filter { $0.name.hasSuffix("/data.pkl") && $0.name.split(separator: "/").count == 2 }
        guard pickles.count == 1, let pickle = pickles.first else {
            throw TorchFileError.notATorchArchive(path: path, reason: pickles.isEmpty
                ? "it has no data.pkl in a top folder"
                : "it has several data.pkl (\(pickles.prefix(3).map { shown($0.name) }.joined(separator: ", ")))")
        }
        let prefix = String(pickle.name.dropLast("data.pkl".count))
        archiveName = String(prefix.dropLast())
        let bytes = file.bytes
        if let order = zip.entry(prefix + "byteorder") {
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[order.data]), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            guard text == "little" else {
                throw TorchFileError.notATorchArchive(path: path, reason: "its byteorder is '\(shown(text))', and sdrepl reads little-endian files only; re-save it on a little-endian machine")
            }
        }
        guard pickle.data.count <= Self.maxPickleLength else {
            throw TorchFileError.pickleLimit(path: path, what: "bytes in data.pkl", limit: Self.maxPickleLength)
        }
        let pickleBytes = UnsafeRawBufferPointer(rebasing: bytes[pickle.data])
        // torch.save records no checksums (0) after `torch.serialization.set_crc32_options(False)`.
        guard pickle.crc32 == 0 || CRC32.checksum(pickleBytes) == pickle.crc32 else {
            throw TorchFileError.damagedZip(path: path, reason: "the checksum of \(pickle.name) does not match its contents")
        }

        let document: PickleDocument
        do {
            document = try PickleMachine.run(pickleBytes) { key in zip.entry(prefix + "data/" + key)?.data.count }
        } catch let failure as PickleMachine.Failure {
            switch failure {
            case let .refusedGlobal(opcode, global, offset):
                throw TorchFileError.refusedGlobal(path: path, opcode: opcode, global: global, offset: offset)
            case let .refusedCall(opcode, target, offset):
                throw TorchFileError.refusedCall(path: path, opcode: opcode, target: target, offset: offset)
            case let .refusedOpcode(opcode, offset, reason):
                throw TorchFileError.refusedOpcode(path: path, opcode: opcode, offset: offset, reason: reason)
            case let .malformed(offset, reason):
                throw TorchFileError.malformedPickle(path: path, offset: offset, reason: reason)
            case let .limit(what, limit):
                throw TorchFileError.pickleLimit(path: path, what: what, limit: limit)
            case let .storage(key, reason):
                throw TorchFileError.badStorage(path: path, key: key, reason: reason)
            }
        }

        let listing = try Listing(document: document, path: path) { storage in
            zip.entry(prefix + "data/" + storage.key)!  // every storage was checked against its entry
        }
        weightsPath = listing.weightsPath
        names = listing.names
        skipped = listing.skipped
        entries = listing.entries
    }

    // MARK: Reading

    /// The element type and shape of `name`, or nil.
    public func tensorInfo(_ name: String) -> TensorInfo? { entries[name]?.info }

    /// Converts tensor `name` to Float32 into `buffer`, in row-major order whatever its strides.
    ///
    /// F32 is copied, F16 and BF16 are widened exactly, F64 is rounded to nearest, integers and BOOL
    /// are converted by value, as `SafetensorsFile.read(_:into:)` does.
    /// - Parameters:
    ///   - name: the tensor's name in this file.
    ///   - buffer: room for exactly `tensorInfo(name).elementCount` floats.
    /// - Throws: `TorchFileError.noSuchTensor`, `.bufferSizeMismatch`, or `.unsupportedDtype` for
    ///   the float8 and complex types.
    public func read(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let entry = entries[name] else { throw TorchFileError.noSuchTensor(path: url.path, tensor: name) }
        let info = entry.info
        guard buffer.count == info.elementCount else {
            throw TorchFileError.bufferSizeMismatch(path: url.path, tensor: name, elements: info.elementCount, bufferCount: buffer.count)
        }
        guard info.dtype.isReadableAsFloat else {
            throw TorchFileError.unsupportedDtype(path: url.path, tensor: name, dtype: info.dtype.rawValue)
        }
        guard info.elementCount > 0, let base = file.base, let out = buffer.baseAddress else { return }
        withExtendedLifetime(file) {
            if entry.contiguous {
                FloatConversion.convert(info.dtype, from: base + entry.start, to: buffer)
            } else {
                Self.gather(entry, from: base, into: out)
            }
        }
    }

    /// Copies a strided tensor row by row: each innermost row in one conversion when its stride is
    /// 1, element by element otherwise; the outer index advances like an odometer (no recursion).
    private static func gather(_ entry: Entry, from base: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>) {
        let shape = entry.info.shape, strides = entry.strides, dtype = entry.info.dtype, item = entry.itemSize
        let rank = shape.count
        let inner = shape[rank - 1], innerStride = strides[rank - 1]
        let rows = entry.info.elementCount / inner
        var index = [Int](repeating: 0, count: rank - 1)
        var offset = 0  // elements from the tensor's first
        for row in 0..<rows {
            let destination = out + row * inner
            if innerStride == 1 {
                FloatConversion.convert(dtype, from: base + entry.start + offset * item,
                                        to: UnsafeMutableBufferPointer(start: destination, count: inner))
            } else {
                for j in 0..<inner {
                    FloatConversion.convert(dtype, from: base + entry.start + (offset + j * innerStride) * item,
                                            to: UnsafeMutableBufferPointer(start: destination + j, count: 1))
                }
            }
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                offset += strides[d]
                if index[d] < shape[d] { break }
                offset -= strides[d] * shape[d]
                index[d] = 0
                d -= 1
            }
        }
    }

    /// The tensor `name` as a new Float32 `Tensor`.
    /// - Throws: as `read(_:into:)`.
    public func tensor(_ name: String) throws -> Tensor {
        guard let info = tensorInfo(name) else { throw TorchFileError.noSuchTensor(path: url.path, tensor: name) }
        var out = Tensor(shape: info.shape)
        try out.data.withUnsafeMutableBufferPointer { try read(name, into: $0) }
        return out
    }

    /// The elements of `name` in place when it is a contiguous F16 or BF16 tensor (two-byte aligned);
    /// a strided view is read through `read`.
    public func storedHalfElements(_ name: String) -> HalfElements? {
        guard let entry = entries[name], entry.contiguous, entry.info.dtype == .f16 || entry.info.dtype == .bf16,
              entry.info.elementCount > 0, let base = file.base, entry.start % 2 == 0 else { return nil }
        return HalfElements(bits: (base + entry.start).assumingMemoryBound(to: UInt16.self),
                            count: entry.info.elementCount, isBF16: entry.info.dtype == .bf16)
    }

    /// Drops the mapped pages of tensor `name` once it has been converted (`MappedFile.releasePages`).
    public func releasePages(of name: String) {
        guard let entry = entries[name] else { return }
        file.releasePages(entry.span)
    }

    // MARK: TensorSource

    public var sourceDescription: String { url.path }
    public var keys: [String] { names }
    public func shape(of key: String) -> [Int]? { entries[key]?.info.shape }
    public func storedTensor(_ key: String) -> StoredTensor? {
        entries[key].map { StoredTensor(path: url.path, name: $0.info.name, dtype: $0.info.dtype) }
    }
    public func filesChangedOnDisk() -> [String] { file.changedSinceMapped ? [url.path] : [] }
}

/// The tensors of a pickle's document under their flattened names, each validated against its storage.
private struct Listing {
    var weightsPath: [String] = []
    var names: [String] = []
    var skipped: [(name: String, type: String)] = []
    var entries: [String: TorchFile.Entry] = [:]

    private let document: PickleDocument
    private let path: String
    private let entry: (PickledStorage) -> StoredZip.Entry
    private var visited = 0

    init(document: PickleDocument, path: String, entry: @escaping (PickledStorage) -> StoredZip.Entry) throws {
        self.document = document
        self.path = path
        self.entry = entry
        guard case var .dict(top) = document.root else { return }
        // Unwrap `{"state_dict": {...}}` and its kin, when the outer dictionary holds no tensor itself.
        while !document.dicts[top].values.contains(where: { if case .tensor = $0 { return true }; return false }),
              let key = TorchFile.weightsKeys.first(where: { if case .dict = document.dicts[top][$0] { return true }; return false }),
              case let .dict(inner)? = document.dicts[top][key], weightsPath.count < TorchFile.maxNesting {
            weightsPath.append(key)
            top = inner
        }
        var ancestors = Set<Int>()
        try walk(top, prefix: weightsPath.joined(separator: "."), displayPrefix: "", ancestors: &ancestors, depth: 0)
    }

    private mutating func walk(_ id: Int, prefix: String, displayPrefix: String, ancestors: inout Set<Int>, depth: Int) throws {
        guard depth < TorchFile.maxNesting else {
            throw TorchFileError.badStructure(path: path, reason: "dictionaries nest more than \(TorchFile.maxNesting) deep at '\(shown(prefix))'")
        }
        guard ancestors.insert(id).inserted else {
            throw TorchFileError.badStructure(path: path, reason: "a dictionary contains itself at '\(shown(prefix))'")
        }
        defer { ancestors.remove(id) }
        let dict = document.dicts[id]
        for (key, value) in zip(dict.keys, dict.values) {
            visited += 1
            guard visited <= TorchFile.maxVisitedEntries else {
                throw TorchFileError.badStructure(path: path, reason: "listing its tensors visits more than \(TorchFile.maxVisitedEntries) dictionary entries")
            }
            let part: String
            switch key {
            case let .string(s): part = s
            case let .int(i): part = String(i)
            default: continue  // a key no state dict has (an inert class, a tuple): not weights
            }
            let name = displayPrefix.isEmpty ? part : displayPrefix + "." + part
            let location = prefix.isEmpty ? part : prefix + "." + part
            switch value {
            case let .tensor(t): try add(name, document.tensors[t])
            case let .dict(d): try walk(d, prefix: location, displayPrefix: name, ancestors: &ancestors, depth: depth + 1)
            default: continue
            }
        }
    }

    private mutating func add(_ name: String, _ tensor: PickledTensor) throws {
        func bad(_ reason: String) -> TorchFileError { .badTensor(path: path, tensor: name, reason: reason) }
        guard entries[name] == nil, !skipped.contains(where: { $0.name == name }) else {
            throw TorchFileError.duplicateName(path: path, name: name)
        }
        guard let dtype = tensor.type.dtype else {
            skipped.append((name, tensor.type.name))
            return
        }
        let shape = tensor.shape, strides = tensor.strides
        guard shape.allSatisfy({ $0 >= 0 }) else { throw bad("has shape \(shape), with a negative size") }
        guard strides.count == shape.count else { throw bad("has \(strides.count) strides for its \(shape.count) dimensions") }
        guard strides.allSatisfy({ $0 >= 0 }) else { throw bad("has strides \(strides), with a negative stride") }
        guard tensor.offset >= 0 else { throw bad("has a negative storage offset (\(tensor.offset))") }
        // The product of the non-zero sizes must fit too, as for safetensors.
        var nonZeroProduct = 1
        for n in shape where n != 0 {
            let (p, overflow) = nonZeroProduct.multipliedReportingOverflow(by: n)
            guard !overflow else { throw bad("has shape \(shape), whose size overflows 64 bits") }
            nonZeroProduct = p
        }
        let count = shape.contains(0) ? 0 : nonZeroProduct

        // The storage in elements of the tensor's type (a `_rebuild_tensor_v3` tensor views bytes).
        let storage = document.storages[tensor.storage]
        let storageElements = storage.count * storage.type.itemSize / tensor.type.itemSize  // checked at BINPERSID
        // The last element reached: offset + Σ (size − 1) · stride.
        var last = tensor.offset
        if count > 0 {
            for (size, stride) in zip(shape, strides) {
                let (step, overflowStep) = (size - 1).multipliedReportingOverflow(by: stride)
                let (sum, overflowSum) = last.addingReportingOverflow(step)
                guard !overflowStep, !overflowSum else { throw bad("has strides \(strides) that overflow 64 bits") }
                last = sum
            }
        }
        guard count == 0 ? tensor.offset <= storageElements : last < storageElements else {
            throw bad("reaches element \(count == 0 ? tensor.offset : last) of storage '\(shown(storage.key))', which holds \(storageElements) \(tensor.type.name) elements")
        }
        var contiguous = true, expected = 1
        for (size, stride) in zip(shape, strides).reversed() where size != 1 {
            if stride != expected { contiguous = false }
            expected *= size
        }
        let data = entry(storage).data
        let start = data.lowerBound + tensor.offset * tensor.type.itemSize
        let end = count == 0 ? start : data.lowerBound + (last + 1) * tensor.type.itemSize
        entries[name] = TorchFile.Entry(info: TensorInfo(name: name, dtype: dtype, shape: shape, elementCount: count),
                                        start: start, strides: strides, itemSize: tensor.type.itemSize,
                                        contiguous: contiguous, span: start..<end)
        names.append(name)
    }
}
