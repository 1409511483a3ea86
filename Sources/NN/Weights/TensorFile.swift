import Foundation

/// The element types a tensor file can hold. safetensors names them (`F32`, `BF16`, `I64`, …);
/// a PyTorch file's storage types map onto the same set (`torch.HalfStorage` is `F16`).
public typealias TensorDType = SafetensorsDType

/// One tensor of a `TensorFile`, as its loaders need it: name, element type and shape.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    /// The number of elements (1 for a scalar of shape `[]`).
    public let elementCount: Int

    public init(name: String, dtype: TensorDType, shape: [Int], elementCount: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.elementCount = elementCount
    }
}

/// A file of named tensors, validated when opened and read through mmap: a safetensors file
/// (`SafetensorsFile`) or a PyTorch zip pickle (`TorchFile`). Every loader that takes weights from
/// a file (checkpoints, LoRAs, embeddings, VAEs, upscalers) opens it with `openTensorFile(_:pickles:)`
/// and sees only this protocol, so both formats are read wherever either is.
public protocol TensorFile: TensorSource {
    /// The file as opened.
    var url: URL { get }
    /// Every tensor's name, in the file's order.
    var names: [String] { get }
    /// The element type and shape of `name`, or nil when the file has no such tensor.
    func tensorInfo(_ name: String) -> TensorInfo?
    /// The tensor `name` converted to Float32.
    /// - Throws: the format's error when the file has no such tensor or its type cannot be read.
    func tensor(_ name: String) throws -> Tensor
    /// Drops the mapped pages of `name` from the resident set once it has been converted.
    func releasePages(of name: String)
}

extension TensorFile {
    /// Every tensor's info, in the file's order.
    public var tensorInfos: [TensorInfo] { names.compactMap(tensorInfo) }
}

extension SafetensorsFile: TensorFile {
    public func tensorInfo(_ name: String) -> TensorInfo? {
        info(name).map { TensorInfo(name: $0.name, dtype: $0.dtype, shape: $0.shape, elementCount: $0.elementCount) }
    }
}

// MARK: - Pickles allowed or not

/// Whether PyTorch pickles (`.ckpt`, `.pt`, `.pth`) are read at all.
///
/// Reading one never runs anything in it (`TorchFile` says why), so the default is to read them. A
/// cautious user can still refuse every pickle before a byte of it is parsed: `SDREPL_PICKLES=off`
/// in the environment, or `set pickles off` in the REPL, which sets `current`.
public enum PicklePolicy: String, CaseIterable, Sendable {
    /// Read the weights of PyTorch zip files with the weights-only pickle machine.
    case read = "on"
    /// Refuse every pickle, saying how to allow them.
    case refuse = "off"

    /// The environment variable that sets the policy a process starts with (`off` refuses).
    public static let environmentVariable = "SDREPL_PICKLES"

    /// The policy `SDREPL_PICKLES` gives: `.refuse` for `off` (or `no`, `false`, `0`), else `.read`.
    public static var environmentDefault: PicklePolicy {
        ProcessInfo.processInfo.environment[environmentVariable].flatMap(PicklePolicy.init(word:)) ?? .read
    }

    /// The policy loaders apply when they are not given one: from `SDREPL_PICKLES` at first use,
    /// then whatever was last assigned.
    public static var current: PicklePolicy {
        get { store.value }
        set { store.value = newValue }
    }

    /// `on`/`off` and their usual spellings (`yes`, `no`, `true`, `false`, `1`, `0`).
    public init?(word: String) {
        switch word.lowercased() {
        case "on", "yes", "true", "1", "read": self = .read
        case "off", "no", "false", "0", "refuse": self = .refuse
        default: return nil
        }
    }

    private final class Store: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: PicklePolicy?
        var value: PicklePolicy {
            get {
                lock.lock(); defer { lock.unlock() }
                if let stored { return stored }
                stored = PicklePolicy.environmentDefault
                return stored!
            }
            set { lock.lock(); stored = newValue; lock.unlock() }
        }
    }
    private static let store = Store()
}

// MARK: - Opening any tensor file

/// What the first bytes of a file say it is.
public enum TensorFileKind: Equatable, Sendable {
    case safetensors
    /// A zip archive: what `torch.save` writes since PyTorch 1.6.
    case torchZip
    /// A pickle stream outside a zip (`torch.save` before 1.6, or plain `pickle.dump`), with its protocol.
    case rawPickle(protocol: Int)
    /// GGUF (stable-diffusion.cpp / llama.cpp quantised weights).
    case gguf
    /// Something else that is recognisable by its first bytes ("a PNG image"): a file given by
    /// mistake, or a download that saved the wrong thing.
    case otherFile(String)
    /// None of these by its bytes; `pickleName` tells whether its extension is a pickle's.
    case unknown(pickleName: Bool)

    /// The extensions pickled weights go by.
    public static let pickleExtensions: Set<String> = ["ckpt", "pt", "pth", "bin", "pkl", "pickle"]

    /// Reads the first bytes of `url` (nothing more) to tell what it holds. Only a regular file is
    /// read (opening a FIFO would block); anything else is `.unknown`, for the reader to name.
    public static func of(_ url: URL) -> TensorFileKind {
        let path = url.path
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.resolvingSymlinksInPath().path)
        var head = [UInt8]()
        if attributes?[.type] as? FileAttributeType == .typeRegular, let handle = FileHandle(forReadingAtPath: path) {
            head = Array((try? handle.read(upToCount: 32)) ?? Data())
            try? handle.close()
        }
        let size = (attributes?[.size] as? NSNumber)?.intValue ?? 0
        // A safetensors file starts with the header length and then '{'. Checking this first keeps a
        // header length whose low bytes happen to read 0x80 0x02 from being taken for a pickle.
        if head.count >= 9, head[8] == UInt8(ascii: "{"),
           head.prefix(8).withUnsafeBytes({ UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }) <= UInt64(max(0, size - 8)) {
            return .safetensors
        }
        // A local file header, or the end record of an empty archive.
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x50, 0x4B, 0x05, 0x06]) { return .torchZip }
        if head.count >= 2, head[0] == 0x80, (2...5).contains(head[1]) { return .rawPickle(protocol: Int(head[1])) }
        if head.starts(with: Array("GGUF".utf8)) { return .gguf }
        if let other = otherFile(head) { return .otherFile(other) }
        return .unknown(pickleName: pickleExtensions.contains(url.pathExtension.lowercased()))
    }

    /// What a file that holds no weights is, by its first bytes; nil when it is none of these.
    static func otherFile(_ head: [UInt8]) -> String? {
        if head.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return "a PNG image" }
        if head.starts(with: [0xFF, 0xD8, 0xFF]) { return "a JPEG image" }
        let text = String(decoding: head, as: UTF8.self)
        if text.hasPrefix("version https://git-lfs") { return "a Git LFS pointer" }
        let trimmed = text.drop(while: { $0.isWhitespace })
        if trimmed.hasPrefix("<") { return "an HTML or XML page" }
        // Words: a protocol-0 pickle is printable too, but its opcodes and names have no spaces.
        let printable = head.allSatisfy { (0x20...0x7E).contains($0) || [0x09, 0x0A, 0x0D].contains($0) }
        if head.count >= 8, printable, head.contains(0x20) { return "a text file" }
        return nil
    }
}

/// Opens the tensor file at `url`, safetensors or a PyTorch zip pickle, telling them apart by
/// their first bytes rather than by the name (a `.bin` may be either).
///
/// This is the one entry point for every loader of weights files, in this package and beside it
/// (the upscalers' `.pth` files included).
/// - Parameters:
///   - url: the file.
///   - pickles: whether a PyTorch pickle may be read (default: `PicklePolicy.current`).
/// - Returns: the opened, validated file; its names are the tensors' keys (for a pickle, flattened
///   as `TorchFile` describes, so a checkpoint's keys are those its safetensors twin has).
/// - Throws: `SafetensorsError` for a damaged safetensors file or a file that is neither format;
///   `TorchFileError` for a pickle that is refused (`.picklesRefused` under `.refuse`, any pickle
///   outside PyTorch's zip format, anything the weights-only machine does not allow) or damaged.
public func openTensorFile(_ url: URL, pickles: PicklePolicy = .current) throws -> any TensorFile {
    switch TensorFileKind.of(url) {
    case .torchZip:
        return try TorchFile(url: url, pickles: pickles)
    case let .rawPickle(version):
        throw TorchFileError.notZipFormat(path: url.path, evidence: "it starts with a pickle protocol \(version) header")
    case .unknown(pickleName: true):
        // An empty, unreadable or irregular file gets the reader's own message ("is empty", "cannot open").
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.resolvingSymlinksInPath().path)
        guard attributes?[.type] as? FileAttributeType == .typeRegular, let size = (attributes?[.size] as? NSNumber)?.intValue, size > 0 else {
            return try TorchFile(url: url, pickles: pickles)
        }
        throw TorchFileError.notZipFormat(path: url.path, evidence: "its name ends in .\(url.pathExtension)")
    case let .otherFile(what):
        throw SafetensorsError.notWeights(path: url.path, what: what)
    case .safetensors, .gguf, .unknown(pickleName: false):
        return try SafetensorsFile(url: url)
    }
}
