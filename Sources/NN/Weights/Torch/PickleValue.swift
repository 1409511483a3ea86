import Foundation

/// One value the pickle machine built. Containers and tensors are indices into the document's
/// arenas, so a value never holds another: a tuple nested a million deep, or a list that contains
/// itself, is a flat array entry, freed without recursion and walked with a visited set.
enum PickleValue: Equatable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer beyond 64 bits (a LONG1/LONG4 that does not fit): kept as a mark, never needed.
    case bigInt
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(Int)
    case list(Int)
    case dict(Int)
    case set(Int)
    /// An allowed global (`PickleGlobal`): a tag, not code.
    case global(PickleGlobal)
    case storage(Int)
    case tensor(Int)
    /// An inert placeholder (`torch.device(…)`, a layout, an inert global's name); nothing can be applied to it.
    case opaque(String)
}

/// A dictionary as the machine builds it: insertion-ordered pairs, with an index over the string and
/// integer keys so that a repeated key replaces its value, as in Python.
struct PickleDict {
    enum Key: Hashable {
        case string(String)
        case int(Int)
    }
    var keys: [PickleValue] = []
    var values: [PickleValue] = []
    private var slots: [Key: Int] = [:]

    static func key(_ value: PickleValue) -> Key? {
        switch value {
        case let .string(s): return .string(s)
        case let .int(i): return .int(i)
        case let .bool(b): return .int(b ? 1 : 0)  // Python: True == 1
        default: return nil
        }
    }

    mutating func set(_ key: PickleValue, _ value: PickleValue) {
        if let k = Self.key(key) {
            if let slot = slots[k] {
                values[slot] = value
                return
            }
            slots[k] = keys.count
        }
        keys.append(key)
        values.append(value)
    }

    subscript(_ key: String) -> PickleValue? { slots[.string(key)].map { values[$0] } }
}

/// A storage a persistent id named: `('storage', torch.HalfStorage, '0', 'cpu', 6)` is 6 float16
/// elements in the archive's `data/0`.
struct PickledStorage: Equatable {
    let key: String
    let type: TorchElementType
    /// Elements of `type` (bytes for the untyped storage).
    let count: Int
}

/// A tensor as `_rebuild_tensor_v2` describes it, unvalidated: the loader checks the numbers once it
/// knows the tensor's name (`TorchFile`).
struct PickledTensor: Equatable {
    let storage: Int
    /// The element type: the storage's, or `_rebuild_tensor_v3`'s dtype argument.
    let type: TorchElementType
    let offset: Int
    let shape: [Int]
    let strides: [Int]
}

/// What a pickle built: the root value and the arenas its containers and tensors live in.
struct PickleDocument {
    var root: PickleValue = .none
    var tuples: [[PickleValue]] = []
    var lists: [[PickleValue]] = []
    var dicts: [PickleDict] = []
    var storages: [PickledStorage] = []
    var tensors: [PickledTensor] = []
}
