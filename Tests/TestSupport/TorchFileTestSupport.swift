import Crypto
import Foundation
import NN
import XCTest

// Builders for PyTorch zip files in tests: a zip writer that can also write what torch.save never
// does (compressed, misnamed, overlapping, truncated), raw pickle opcodes, and torch.save's layout
// over them. The positive fixtures are made by torch.save itself (Tests/Fixtures/make_pickle_fixtures.py);
// these make the hostile ones, and twins of existing safetensors fixtures.

/// CRC-32 as zip stores it (the reflected polynomial 0xEDB88320).
public func zipCRC32(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        c ^= UInt32(b)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    }
    return c ^ 0xFFFF_FFFF
}

/// A zip archive written entry by entry, as torch's writer lays it out: each entry's data aligned
/// to 64 bytes by padding in its local header, a central directory, zip64 end records and the end record.
public struct ZipBuilder {
    public struct Entry {
        public var name: String
        public var data: [UInt8]
        /// 0 stored, 8 deflated.
        public var method: UInt16 = 0
        public var flags: UInt16 = 0
        /// The size the central directory declares after decompression (default: `data.count`).
        public var declaredSize: UInt64?
        /// The name the local header gives (default: `name`).
        public var localName: String?
        /// The checksum recorded (default: the data's CRC-32).
        public var crc32: UInt32?
        public init(_ name: String, _ data: [UInt8]) {
            self.name = name
            self.data = data
        }
    }

    /// The written bytes with where each part landed, for tests that damage one.
    public struct Layout {
        public var bytes: [UInt8]
        public var localHeaders: [Int]
        public var centralDirectory: Range<Int>
        public var endRecord: Int
    }

    public var entries: [Entry]
    public var zip64 = true

    public init(_ entries: [Entry]) { self.entries = entries }

    public func build() -> Layout {
        var out: [UInt8] = []
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        var locals: [Int] = []
        for e in entries {
            locals.append(out.count)
            let name = Array((e.localName ?? e.name).utf8)
            // "FB" padding so that the data starts at a multiple of 64, as torch's writer does.
            var padding = 64 - (out.count + 30 + name.count + 4) % 64
            if padding == 64 { padding = 0 }
            u32(0x0403_4B50); u16(20); u16(e.flags); u16(e.method); u16(0); u16(0x21)
            u32(e.crc32 ?? zipCRC32(e.data)); u32(UInt32(e.data.count)); u32(UInt32(min(e.declaredSize ?? UInt64(e.data.count), 0xFFFF_FFFF)))
            u16(UInt16(name.count)); u16(UInt16(4 + padding))
            out += name
            u16(0x4246); u16(UInt16(padding)); out += [UInt8](repeating: 0, count: padding)
            out += e.data
        }
        let directoryStart = out.count
        for (e, local) in zip(entries, locals) {
            let name = Array(e.name.utf8)
            let declared = e.declaredSize ?? UInt64(e.data.count)
            let big = declared > 0xFFFF_FFFE
            u32(0x0201_4B50); u16(0x031E); u16(20); u16(e.flags); u16(e.method); u16(0); u16(0x21)
            u32(e.crc32 ?? zipCRC32(e.data)); u32(UInt32(e.data.count)); u32(big ? 0xFFFF_FFFF : UInt32(declared))
            u16(UInt16(name.count)); u16(big ? 12 : 0); u16(0); u16(0); u16(0); u32(0); u32(UInt32(local))
            out += name
            if big { u16(0x0001); u16(8); u64(declared) }
        }
        let directory = directoryStart..<out.count
        if zip64 {
            let record = out.count
            u32(0x0606_4B50); u64(44); u16(0x031E); u16(45); u32(0); u32(0)
            u64(UInt64(entries.count)); u64(UInt64(entries.count)); u64(UInt64(directory.count)); u64(UInt64(directory.lowerBound))
            u32(0x0706_4B50); u32(0); u64(UInt64(record)); u32(1)
        }
        let end = out.count
        u32(0x0605_4B50); u16(0); u16(0); u16(UInt16(entries.count)); u16(UInt16(entries.count))
        u32(UInt32(directory.count)); u32(UInt32(directory.lowerBound)); u16(0)
        return Layout(bytes: out, localHeaders: locals, centralDirectory: directory, endRecord: end)
    }

    public var bytes: [UInt8] { build().bytes }
}

/// Raw pickle opcodes (CPython's `pickle.py` names), for writing pickles byte by byte.
public struct PickleBuilder {
    public private(set) var bytes: [UInt8]
    private var nextMemo: UInt8 = 0

    /// Starts with `PROTO version` (pass nil for a pickle without one).
    public init(protocol version: UInt8? = 2) {
        bytes = version.map { [0x80, $0] } ?? []
    }

    public mutating func raw(_ b: [UInt8]) { bytes += b }
    public mutating func op(_ code: Character) { bytes.append(code.asciiValue!) }

    public mutating func mark() { op("(") }
    public mutating func stop() { op(".") }
    public mutating func none() { op("N") }
    public mutating func emptyTuple() { op(")") }
    public mutating func emptyList() { op("]") }
    public mutating func emptyDict() { op("}") }
    public mutating func tuple() { op("t") }
    public mutating func tuple1() { raw([0x85]) }
    public mutating func tuple2() { raw([0x86]) }
    public mutating func tuple3() { raw([0x87]) }
    public mutating func append() { op("a") }
    public mutating func setitem() { op("s") }
    public mutating func setitems() { op("u") }
    public mutating func reduce() { op("R") }
    public mutating func build() { op("b") }
    public mutating func binpersid() { op("Q") }
    public mutating func newfalse() { raw([0x89]) }
    public mutating func newtrue() { raw([0x88]) }
    public mutating func newobj() { raw([0x81]) }
    /// `GLOBAL module name`.
    public mutating func global(_ module: String, _ name: String) { op("c"); bytes += Array("\(module)\n\(name)\n".utf8) }
    /// `BINUNICODE`.
    public mutating func string(_ s: String) {
        op("X")
        withUnsafeBytes(of: UInt32(s.utf8.count).littleEndian) { bytes += $0 }
        bytes += Array(s.utf8)
    }
    /// `SHORT_BINBYTES`.
    public mutating func shortBytes(_ b: [UInt8]) { op("C"); bytes.append(UInt8(b.count)); bytes += b }
    /// `BININT` (any Int32), `BININT1` for 0…255.
    public mutating func int(_ v: Int32) {
        if (0...255).contains(v) { op("K"); bytes.append(UInt8(v)); return }
        op("J")
        withUnsafeBytes(of: v.littleEndian) { bytes += $0 }
    }
    /// `LONG1` of `v`, little-endian two's complement in `width` bytes.
    public mutating func long1(_ v: Int64, width: Int = 8) {
        raw([0x8A, UInt8(width)])
        for i in 0..<width { bytes.append(UInt8(truncatingIfNeeded: (i < 8 ? v >> (8 * i) : v >> 63))) }
    }
    public mutating func binput(_ i: UInt8) { op("q"); bytes.append(i) }
    public mutating func binget(_ i: UInt8) { op("h"); bytes.append(i) }

    /// `(v0, v1, ...)` of ints as `MARK ints TUPLE`.
    public mutating func intTuple(_ values: [Int]) {
        mark()
        for v in values { int(Int32(v)) }
        tuple()
    }

    /// `_rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, shape, strides, False, OrderedDict())`,
    /// as torch.save writes a tensor.
    public mutating func tensor(storageType: String, key: String, numel: Int, offset: Int = 0, shape: [Int], strides: [Int]? = nil) {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        mark(); string("storage"); global("torch", storageType); string(key); string("cpu"); int(Int32(numel)); tuple()
        binpersid()
        int(Int32(offset))
        intTuple(shape)
        intTuple(strides ?? Self.contiguousStrides(shape))
        newfalse()
        global("collections", "OrderedDict"); emptyTuple(); reduce()
        tuple()
        reduce()
    }

    /// `_rebuild_tensor_v3(('storage', torch.storage.UntypedStorage, key, 'cpu', bytes), offset, shape,
    /// strides, False, OrderedDict(), torch.<dtype>)`, as torch.save writes a tensor of a type that has
    /// no storage class of its own (float8, uint16).
    public mutating func tensorV3(dtype: String, key: String, byteCount: Int, offset: Int = 0, shape: [Int]) {
        global("torch._utils", "_rebuild_tensor_v3")
        mark()
        mark(); string("storage"); global("torch.storage", "UntypedStorage"); string(key); string("cpu"); int(Int32(byteCount)); tuple()
        binpersid()
        int(Int32(offset))
        intTuple(shape)
        intTuple(Self.contiguousStrides(shape))
        newfalse()
        global("collections", "OrderedDict"); emptyTuple(); reduce()
        global("torch", dtype)
        tuple()
        reduce()
    }

    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
        return strides
    }
}

/// The bytes of a torch.save-style archive: `NAME/data.pkl`, `NAME/byteorder`, one `NAME/data/KEY`
/// per storage and `NAME/version`, in torch's order.
public func torchArchive(_ pickle: [UInt8], storages: [(key: String, bytes: [UInt8])] = [], name: String = "archive",
                         byteorder: String = "little") -> [UInt8] {
    var entries = [ZipBuilder.Entry("\(name)/data.pkl", pickle), ZipBuilder.Entry("\(name)/byteorder", Array(byteorder.utf8))]
    entries += storages.map { ZipBuilder.Entry("\(name)/data/\($0.key)", $0.bytes) }
    entries.append(ZipBuilder.Entry("\(name)/version", Array("3\n".utf8)))
    return ZipBuilder(entries).bytes
}

/// The storage class torch.save names for a dtype (`F16` → `HalfStorage`).
public func torchStorageType(_ dtype: TensorDType) -> String {
    switch dtype {
    case .f32: return "FloatStorage"
    case .f16: return "HalfStorage"
    case .bf16: return "BFloat16Storage"
    case .f64: return "DoubleStorage"
    case .i64: return "LongStorage"
    case .i32: return "IntStorage"
    case .i16: return "ShortStorage"
    case .i8: return "CharStorage"
    case .u8: return "ByteStorage"
    case .bool: return "BoolStorage"
    default: return "FloatStorage"
    }
}

/// torch's name of a dtype that torch.save writes through `_rebuild_tensor_v3` (no storage class).
public func torchV3DType(_ dtype: TensorDType) -> String? {
    switch dtype {
    case .f8e4m3: return "float8_e4m3fn"
    case .f8e5m2: return "float8_e5m2"
    case .f8e8m0: return "float8_e8m0fnu"
    default: return nil
    }
}

/// Writes the tensors of `source` as a torch.save-style pickle (`PickleBuilder.tensor`, protocol 2):
/// `{wrapper: {name: tensor}}`, or the state dict itself when `wrapper` is nil. `rename` gives each
/// tensor's name in the twin, or nil to leave it out. Storage bytes are copied as they are, so the
/// twin holds exactly the source's values.
@discardableResult
public func writeTorchTwin(of source: SafetensorsFile, to url: URL, wrapper: String? = "state_dict",
                           rename: (String) -> String? = { $0 }) throws -> URL {
    var p = PickleBuilder()
    if let wrapper { p.emptyDict(); p.string(wrapper) }
    p.emptyDict()
    p.mark()
    var storages: [(key: String, bytes: [UInt8])] = []
    for info in source.tensors {
        guard let name = rename(info.name) else { continue }
        let key = String(storages.count)
        p.string(name)
        let bytes = try source.withRawBytes(of: info.name) { Array($0) }
        if let v3 = torchV3DType(info.dtype) {
            p.tensorV3(dtype: v3, key: key, byteCount: bytes.count, shape: info.shape)
        } else {
            p.tensor(storageType: torchStorageType(info.dtype), key: key, numel: info.elementCount, shape: info.shape)
        }
        storages.append((key, bytes))
    }
    p.setitems()
    if wrapper != nil { p.setitem() }
    p.stop()
    try Data(torchArchive(p.bytes, storages: storages, name: url.deletingPathExtension().lastPathComponent)).write(to: url)
    return url
}

extension Fixture {
    /// Rebuilds `models/tiny-sd15.ckpt`: what `torch.save` wrote for the single-file fixture model
    /// (`make_pickle_fixtures.py`), from the committed skeleton and the safetensors file's tensor
    /// bytes, into `directory`; its SHA-256 is checked against the one recorded when it was written.
    /// - Returns: the rebuilt file, byte for byte torch.save's.
    public static func tinySD15PickledCheckpoint(in directory: URL) throws -> URL {
        struct Manifest: Decodable {
            let size: Int
            let sha256: String
            let splice_list: [[Splice]]
        }
        enum Splice: Decodable {
            case number(Int), name(String)
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let n = try? c.decode(Int.self) { self = .number(n) } else { self = .name(try c.decode(String.self)) }
            }
        }
        let manifest = try json(Manifest.self, "models/tiny-sd15.ckpt.json")
        let skeleton = try bytes("models/tiny-sd15.ckpt.skeleton")
        let single = try SafetensorsFile(url: tinySD15SingleFile)
        var out: [UInt8] = []
        out.reserveCapacity(manifest.size)
        var cursor = 0
        for splice in manifest.splice_list {
            guard splice.count == 3, case let .number(offset) = splice[0], case let .number(length) = splice[1],
                  case let .name(tensor) = splice[2] else { throw CocoaError(.fileReadCorruptFile) }
            let copied = offset - out.count  // the skeleton's bytes up to this storage
            guard copied >= 0, cursor + copied <= skeleton.count else { throw CocoaError(.fileReadCorruptFile) }
            out += skeleton[cursor..<(cursor + copied)]
            cursor += copied
            let raw = try single.withRawBytes(of: tensor) { Array($0) }
            guard raw.count == length else { throw CocoaError(.fileReadCorruptFile) }
            out += raw
        }
        out += skeleton[cursor...]
        let digest = SHA256.hash(data: out).map { String(format: "%02x", $0) }.joined()
        guard out.count == manifest.size, digest == manifest.sha256 else {
            XCTFail("the rebuilt tiny-sd15.ckpt is not torch.save's (size \(out.count), sha256 \(digest))")
            throw CocoaError(.fileReadCorruptFile)
        }
        let url = directory.appendingPathComponent("tiny-sd15.ckpt")
        try Data(out).write(to: url)
        return url
    }
}
