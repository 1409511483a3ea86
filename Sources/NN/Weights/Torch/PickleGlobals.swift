import Foundation

/// A torch element type as a pickle names it, by storage class (`torch.HalfStorage`) or dtype
/// (`torch.float16`): the `TensorDType` it is read as (nil for types sdrepl cannot represent:
/// complex128, the quantized types) and the bytes per element, which the size checks need either way.
struct TorchElementType: Equatable, Sendable {
    /// torch's name, for messages: `float16`.
    let name: String
    let dtype: TensorDType?
    let itemSize: Int
}

/// The globals a weights-only pickle may name: the only values `GLOBAL` and `STACK_GLOBAL` can
/// push. Each is a tag, not a reference to code: applying one (`REDUCE`, `NEWOBJ`) runs a small
/// Swift function that builds data (`PickleMachine.call`), and nothing else can be applied.
///
/// This is a subset of the defaults of torch's own weights-only unpickler
/// (`torch/_weights_only_unpickler.py`, `_get_allowed_globals`): the tensor and parameter rebuilders,
/// storage classes and dtypes, `torch.Size`, `collections.OrderedDict` and `Counter`, and the
/// builtins torch lists for bytes and sets. Left out of torch's list: quantized, sparse, nested and
/// meta tensors, tensor subclasses other than `Parameter`, numpy arrays; a pickle naming one is refused.
///
/// One name goes beyond torch's defaults, as an inert placeholder: PyTorch Lightning 1.x keyed a
/// checkpoint's `callbacks` dictionary by the class `ModelCheckpoint` itself, and the CompVis SD
/// checkpoints carry that entry. It becomes `.opaque`, a value nothing can be applied to, as
/// A1111's and ComfyUI's restricted unpicklers treat it; it is never part of the weights.
enum PickleGlobal: Equatable, Sendable {
    case rebuildTensor, rebuildTensorV2, rebuildTensorV3
    case rebuildParameter, rebuildParameterWithState, rebuildFromTypeV2
    case parameterClass, tensorClass
    case orderedDict, counter, torchSize, codecsEncode, set, frozenset, bytearray, device, layout
    case storageType(TorchElementType)
    case dtype(TorchElementType)

    /// The allowed name, `module.name` (for messages).
    var name: String {
        switch self {
        case .rebuildTensor: return "torch._utils._rebuild_tensor"
        case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
        case .rebuildTensorV3: return "torch._utils._rebuild_tensor_v3"
        case .rebuildParameter: return "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: return "torch._utils._rebuild_parameter_with_state"
        case .rebuildFromTypeV2: return "torch._tensor._rebuild_from_type_v2"
        case .parameterClass: return "torch.nn.parameter.Parameter"
        case .tensorClass: return "torch.Tensor"
        case .orderedDict: return "collections.OrderedDict"
        case .counter: return "collections.Counter"
        case .torchSize: return "torch.Size"
        case .codecsEncode: return "_codecs.encode"
        case .set: return "builtins.set"
        case .frozenset: return "builtins.frozenset"
        case .bytearray: return "builtins.bytearray"
        case .device: return "torch.device"
        case .layout: return "torch.serialization._get_layout"
        case let .storageType(type): return "a \(type.name) storage class"
        case let .dtype(type): return "torch.\(type.name)"
        }
    }

    /// Names that become an inert `.opaque` value (see the type's comment).
    static let inertNames: Set<String> = ["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"]

    /// The allowed global called `module.name`, after Python 2's module names are mapped to
    /// Python 3's as torch does (`__builtin__` is `builtins`); nil when it is not allowed.
    static func named(module: String, name: String) -> PickleGlobal? {
        let module = module == "__builtin__" ? "builtins" : module
        return table[module + "." + name]
    }

    private static let table: [String: PickleGlobal] = {
        var table: [String: PickleGlobal] = [
            "torch._utils._rebuild_tensor": .rebuildTensor,
            "torch._utils._rebuild_tensor_v2": .rebuildTensorV2,
            "torch._utils._rebuild_tensor_v3": .rebuildTensorV3,
            "torch._utils._rebuild_parameter": .rebuildParameter,
            "torch._utils._rebuild_parameter_with_state": .rebuildParameterWithState,
            "torch._tensor._rebuild_from_type_v2": .rebuildFromTypeV2,
            "torch.nn.parameter.Parameter": .parameterClass,
            "torch.Tensor": .tensorClass,
            "collections.OrderedDict": .orderedDict,
            "collections.Counter": .counter,
            "torch.Size": .torchSize,
            "_codecs.encode": .codecsEncode,
            "builtins.set": .set,
            "builtins.frozenset": .frozenset,
            "builtins.bytearray": .bytearray,
            "torch.device": .device,
            "torch.serialization._get_layout": .layout,
        ]
        // Storage classes: `torch.HalfStorage`, and `torch.cuda.HalfStorage` in files saved from a
        // GPU by PyTorch before 1.13. The untyped storage holds bytes.
        let storages: [(String, TorchElementType)] = [
            ("Float", .init(name: "float32", dtype: .f32, itemSize: 4)),
            ("Double", .init(name: "float64", dtype: .f64, itemSize: 8)),
            ("Half", .init(name: "float16", dtype: .f16, itemSize: 2)),
            ("BFloat16", .init(name: "bfloat16", dtype: .bf16, itemSize: 2)),
            ("Long", .init(name: "int64", dtype: .i64, itemSize: 8)),
            ("Int", .init(name: "int32", dtype: .i32, itemSize: 4)),
            ("Short", .init(name: "int16", dtype: .i16, itemSize: 2)),
            ("Char", .init(name: "int8", dtype: .i8, itemSize: 1)),
            ("Byte", .init(name: "uint8", dtype: .u8, itemSize: 1)),
            ("Bool", .init(name: "bool", dtype: .bool, itemSize: 1)),
            ("ComplexFloat", .init(name: "complex64", dtype: .c64, itemSize: 8)),
            ("ComplexDouble", .init(name: "complex128", dtype: nil, itemSize: 16)),
        ]
        for (prefix, type) in storages {
            table["torch.\(prefix)Storage"] = .storageType(type)
            table["torch.cuda.\(prefix)Storage"] = .storageType(type)
        }
        for (name, size) in [("QInt8", 1), ("QUInt8", 1), ("QInt32", 4), ("QUInt4x2", 1), ("QUInt2x4", 1)] {
            table["torch.\(name)Storage"] = .storageType(.init(name: name.lowercased(), dtype: nil, itemSize: size))
        }
        table["torch.storage.UntypedStorage"] = .storageType(.init(name: "uint8", dtype: .u8, itemSize: 1))
        let dtypes: [(String, TensorDType?, Int)] = [
            ("float32", .f32, 4), ("float16", .f16, 2), ("bfloat16", .bf16, 2), ("float64", .f64, 8),
            ("int64", .i64, 8), ("int32", .i32, 4), ("int16", .i16, 2), ("int8", .i8, 1), ("uint8", .u8, 1),
            ("bool", .bool, 1), ("uint16", .u16, 2), ("uint32", .u32, 4), ("uint64", .u64, 8),
            ("complex64", .c64, 8), ("complex128", nil, 16),
            ("float8_e4m3fn", .f8e4m3, 1), ("float8_e5m2", .f8e5m2, 1), ("float8_e8m0fnu", .f8e8m0, 1),
        ]
        for (name, dtype, size) in dtypes {
            table["torch.\(name)"] = .dtype(.init(name: name, dtype: dtype, itemSize: size))
        }
        return table
    }()
}
