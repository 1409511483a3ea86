import Foundation

/// Everything that can be wrong with a PyTorch pickle file (`.ckpt`, `.pt`, `.pth`), or with a
/// request to read from one.
///
/// Each case names the file and, where there is one, the entry, the tensor or the pickle opcode and
/// its byte offset in `data.pkl`. A hostile or damaged file always ends in one of these; nothing in
/// it is ever run, and the reader never traps, hangs or allocates beyond its limits.
public enum TorchFileError: Error, Equatable, CustomStringConvertible {
    // Opening the file.
    case cannotOpen(path: String, reason: String)
    case notARegularFile(path: String)
    case emptyFile(path: String)
    /// `PicklePolicy.refuse` is in force.
    case picklesRefused(path: String)
    /// A pickle outside PyTorch's zip format, which is never read.
    case notZipFormat(path: String, evidence: String)

    // The zip archive.
    /// No end record, a truncated or inconsistent central directory, an entry past the file or
    /// overlapping another, a bad local header or checksum.
    case damagedZip(path: String, reason: String)
    /// An entry name that is absolute or climbs out of the archive (`..`).
    case unsafeEntryName(path: String, name: String)
    case duplicateEntry(path: String, name: String)
    /// An entry that is compressed; `torch.save` stores every entry as it is.
    case compressedEntry(path: String, entry: String, method: Int)
    case encryptedEntry(path: String, entry: String)
    /// A zip archive that is not `torch.save`'s: no `*/data.pkl`, several, or big-endian data.
    case notATorchArchive(path: String, reason: String)

    // The pickle.
    /// `GLOBAL`, `STACK_GLOBAL` or `INST` naming something not on the allow-list.
    case refusedGlobal(path: String, opcode: String, global: String, offset: Int)
    /// `REDUCE`, `BUILD`, `NEWOBJ`, `NEWOBJ_EX` or `OBJ` applied to something it may not be applied to.
    case refusedCall(path: String, opcode: String, target: String, offset: Int)
    /// An opcode that is never accepted (`EXT1`, out-of-band buffers, protocol-0 text opcodes).
    case refusedOpcode(path: String, opcode: String, offset: Int, reason: String)
    case malformedPickle(path: String, offset: Int, reason: String)
    case pickleLimit(path: String, what: String, limit: Int)
    /// A persistent id naming a storage the archive lacks, or more bytes than its entry holds.
    case badStorage(path: String, key: String, reason: String)
    /// The dictionaries holding the tensors contain themselves, or nest too deep.
    case badStructure(path: String, reason: String)

    // Tensors.
    /// A negative or overflowing shape, a stride or offset reaching past its storage.
    case badTensor(path: String, tensor: String, reason: String)
    /// Two tensors flatten to the same name (`{"a.b": x, "a": {"b": y}}`).
    case duplicateName(path: String, name: String)

    // Reading.
    case noSuchTensor(path: String, tensor: String)
    case unsupportedDtype(path: String, tensor: String, dtype: String)
    case bufferSizeMismatch(path: String, tensor: String, elements: Int, bufferCount: Int)

    static func oneLine(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .lineSeparator
                    || scalar.properties.generalCategory == .paragraphSeparator {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    private static let damaged = "the file is damaged (an interrupted download?) or was not written by torch.save"
    private static let notWeights = "nothing was run; sdrepl reads only the weights of a pickle, and this one holds more: use the model's .safetensors release"

    /// One line however hostile the names in it: control characters escaped, long names shortened.
    public var description: String { Self.oneLine(message) }

    private var message: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "cannot open \(path): \(reason)"
        case let .notARegularFile(path):
            return "\(path) is not a regular file; give the path of a .ckpt, .pt or .pth file"
        case let .emptyFile(path):
            return "\(path) is empty; \(Self.damaged)"
        case let .picklesRefused(path):
            return "\(path) is a PyTorch pickle and reading pickles is turned off (set pickles off, or \(PicklePolicy.environmentVariable)=off); 'set pickles on' reads its weights without running anything in it, or use a .safetensors file"
        case let .notZipFormat(path, evidence):
            return "\(path) is a pickle outside PyTorch's zip format (\(evidence)); sdrepl reads only the zip files torch.save writes since PyTorch 1.6, and never unpickles anything else: re-save it with a current torch.save in an environment you trust, or use a .safetensors release"
        case let .damagedZip(path, reason):
            return "\(path) is not a readable zip archive: \(reason); \(Self.damaged)"
        case let .unsafeEntryName(path, name):
            return "\(path) holds an entry named '\(shown(name))', which points outside the archive; refused (torch.save never writes such names)"
        case let .duplicateEntry(path, name):
            return "\(path) holds the entry '\(shown(name))' more than once, so it is ambiguous which to read; refused (torch.save never writes that)"
        case let .compressedEntry(path, entry, method):
            return "\(path) holds '\(shown(entry))' compressed (zip method \(method)); torch.save stores every entry uncompressed and sdrepl reads only such archives (so a zip bomb cannot be inflated); re-save it with torch.save"
        case let .encryptedEntry(path, entry):
            return "\(path) holds '\(shown(entry))' encrypted; torch.save never encrypts, so the file cannot be read"
        case let .notATorchArchive(path, reason):
            return "\(path) is a zip archive but not one torch.save wrote: \(reason)"
        case let .refusedGlobal(path, opcode, global, offset):
            return "\(path): refused \(opcode) \(shown(global)) at byte \(offset) of its pickle: not on the weights-only allow-list (\(Self.notWeights))"
        case let .refusedCall(path, opcode, target, offset):
            return "\(path): refused \(opcode) on \(target) at byte \(offset) of its pickle: only tensors and plain containers are built (\(Self.notWeights))"
        case let .refusedOpcode(path, opcode, offset, reason):
            return "\(path): refused \(opcode) at byte \(offset) of its pickle: \(reason) (\(Self.notWeights))"
        case let .malformedPickle(path, offset, reason):
            return "the pickle in \(path) is malformed at byte \(offset): \(reason); \(Self.damaged)"
        case let .pickleLimit(path, what, limit):
            return "the pickle in \(path) has more than \(limit) \(what), beyond what any weights file needs; refused"
        case let .badStorage(path, key, reason):
            return "storage '\(shown(key))' of \(path) \(reason); \(Self.damaged)"
        case let .badStructure(path, reason):
            return "the tensors of \(path) cannot be listed: \(reason); refused"
        case let .badTensor(path, tensor, reason):
            return "tensor '\(shown(tensor))' in \(path) \(reason); \(Self.damaged)"
        case let .duplicateName(path, name):
            return "\(path) holds two tensors named '\(shown(name))' (one in a nested dictionary), so it is ambiguous which to use; refused"
        case let .noSuchTensor(path, tensor):
            return "\(path) has no tensor named '\(shown(tensor))'"
        case let .unsupportedDtype(path, tensor, dtype):
            return "tensor '\(shown(tensor))' in \(path) is \(dtype), which cannot be read as Float32 (float32, float16, bfloat16, float64 and the integer types can); convert the file to fp16 or fp32"
        case let .bufferSizeMismatch(path, tensor, elements, bufferCount):
            return "tensor '\(shown(tensor))' in \(path) has \(elements) elements but the buffer given holds \(bufferCount)"
        }
    }
}

/// A name from a file as a message shows it: at most 160 characters, the middle elided.
func shown(_ name: String) -> String {
    guard name.count > 160 else { return name }
    return String(name.prefix(120)) + "…" + String(name.suffix(30))
}
