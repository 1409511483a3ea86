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

/// A pickle virtual machine that builds data and nothing else, for the `data.pkl` of a PyTorch zip
/// file (protocols 2 to 5).
///
/// CPython's unpickler resolves `GLOBAL module name` by importing the module, and `REDUCE`, `BUILD`,
/// `NEWOBJ`, `INST` and `OBJ` call what it found: any function, with any arguments. Here a global
/// is only looked up in a fixed table (`PickleGlobal`), and applying one runs the small Swift function
/// written for it in `call`, which builds a tensor, a dictionary, a tuple or bytes. There is no other
/// way for the pickle to reach code: nothing is imported, looked up by name at run time or called
/// through a pointer. Everything else is refused with the opcode, the global and the byte offset:
/// any other global, `REDUCE`/`NEWOBJ` on anything but an allowed builder, `BUILD` on anything but a
/// dictionary (whose attribute state is dropped), `INST`, `OBJ`, `NEWOBJ_EX`, `EXT1/2/4`, `PERSID`,
/// out-of-band buffers and protocol-0 text opcodes (which torch.save never writes).
///
/// Bounded: strings and bytes by the pickle's own length, and the value stack, `MARK` nesting, memo
/// and number of built objects by `Limits`. A `bytes` value is only ever bytes: a pickle inside one
/// is never unpickled.
struct PickleMachine {
    struct Limits {
        var objects = 4_000_000
        var stack = 1_000_000
        var marks = 1_000
        var memo = 4_000_000
    }

    enum Failure: Error, Equatable {
        case refusedGlobal(opcode: String, global: String, offset: Int)
        case refusedCall(opcode: String, target: String, offset: Int)
        case refusedOpcode(opcode: String, offset: Int, reason: String)
        case malformed(offset: Int, reason: String)
        case limit(what: String, limit: Int)
        case storage(key: String, reason: String)
    }

    private let bytes: UnsafeRawBufferPointer
    private let limits: Limits
    /// The byte size of the archive entry holding storage `key`, or nil when there is none.
    private let storageSize: (String) -> Int?

    private var document = PickleDocument()
    private var position = 0
    /// Where the opcode being run starts, for messages.
    private var opcodeStart = 0
    private var stack: [PickleValue] = []
    /// Stack heights at each open `MARK`: CPython's metastack, kept as indices into one stack.
    private var marks: [Int] = []
    private var memo: [UInt32: PickleValue] = [:]
    private var objects = 0

    /// Runs the pickle in `bytes` to its `STOP`.
    /// - Parameter storageSize: the size in bytes of the entry that holds storage `key`, or nil.
    static func run(_ bytes: UnsafeRawBufferPointer, limits: Limits = Limits(),
                    storageSize: @escaping (String) -> Int?) throws -> PickleDocument {
        var machine = PickleMachine(bytes: bytes, limits: limits, storageSize: storageSize)
        try machine.run()
        return machine.document
    }

    private init(bytes: UnsafeRawBufferPointer, limits: Limits, storageSize: @escaping (String) -> Int?) {
        self.bytes = bytes
        self.limits = limits
        self.storageSize = storageSize
    }

    // MARK: The loop

    private mutating func run() throws {
        guard bytes.count >= 2, bytes[0] == PickleOpcode.proto.rawValue else {
            throw Failure.refusedOpcode(opcode: bytes.first.flatMap(PickleOpcode.init(rawValue:))?.name ?? "a non-PROTO opcode",
                                        offset: 0, reason: "the pickle does not start with PROTO 2 to 5, as every torch.save pickle does")
        }
        while true {
            opcodeStart = position
            guard position < bytes.count else { throw malformed("the pickle ends without STOP") }
            let byte = bytes[position]
            position += 1
            guard let op = PickleOpcode(rawValue: byte) else {
                throw malformed("0x\(String(byte, radix: 16, uppercase: true)) is not a pickle opcode")
            }
            if op == .stop {
                document.root = try pop(op)
                return
            }
            try step(op)
        }
    }

    private mutating func step(_ op: PickleOpcode) throws {
        switch op {
        case .proto:
            let version = try take(1)[0]
            guard (2...5).contains(version) else {
                throw Failure.refusedOpcode(opcode: op.name, offset: opcodeStart, reason: "pickle protocol \(version) is not read (torch.save writes 2 to 5)")
            }
        case .frame:
            let length = try uint64()
            guard length <= UInt64(bytes.count - position) else { throw malformed("FRAME declares \(length) bytes, past the end of the pickle") }
        case .stop:
            break  // handled by run()

        // Stack and memo.
        case .mark:
            guard marks.count < limits.marks else { throw Failure.limit(what: "nested MARKs", limit: limits.marks) }
            marks.append(stack.count)
        case .pop:
            // CPython: the top value, or the whole MARK frame when it is empty.
            if stack.count > floor {
                stack.removeLast()
            } else if marks.isEmpty {
                throw malformed("POP needs a value but the stack is empty")
            } else {
                _ = try popMark(op)
            }
        case .popMark:
            _ = try popMark(op)
        case .dup:
            try push(try top(op))
        case .binget:
            try push(try recall(UInt32(take(1)[0])))
        case .longBinget:
            try push(try recall(try uint32()))
        case .binput:
            try remember(UInt32(take(1)[0]), op)
        case .longBinput:
            try remember(try uint32(), op)
        case .memoize:
            try remember(UInt32(truncatingIfNeeded: memo.count), op)

        // Scalars.
        case .none: try push(.none)
        case .newtrue: try push(.bool(true))
        case .newfalse: try push(.bool(false))
        case .binint:
            let raw = try take(4)
            try push(.int(Int(Int32(littleEndian: raw.loadUnaligned(as: Int32.self)))))
        case .binint1:
            try push(.int(Int(try take(1)[0])))
        case .binint2:
            let raw = try take(2)
            try push(.int(Int(UInt16(littleEndian: raw.loadUnaligned(as: UInt16.self)))))
        case .long1:
            try push(Self.decodeLong(try take(Int(take(1)[0]))))
        case .long4:
            let length = Int(Int32(littleEndian: try take(4).loadUnaligned(as: Int32.self)))
            guard length >= 0 else { throw malformed("LONG4 has a negative length") }
            try push(Self.decodeLong(try take(length)))
        case .binfloat:
            let raw = try take(8)
            try push(.float(Double(bitPattern: UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self)))))

        // Strings and bytes.
        case .shortBinunicode: try push(.string(try text(Int(take(1)[0]))))
        case .binunicode: try push(.string(try text(Int(uint32()))))
        case .binunicode8: try push(.string(try text(try length64())))
        case .shortBinstring, .binstring:
            // Python 2 `str`: torch reads it as text when it decodes, as bytes otherwise.
            let length = op == .shortBinstring ? Int(try take(1)[0]) : Int(Int32(littleEndian: try take(4).loadUnaligned(as: Int32.self)))
            guard length >= 0 else { throw malformed("BINSTRING has a negative length") }
            let raw = try take(length)
            try push(String(validating: raw, as: UTF8.self).map(PickleValue.string) ?? .bytes(Array(raw)))
        case .shortBinbytes: try push(.bytes(Array(try take(Int(take(1)[0])))))
        case .binbytes: try push(.bytes(Array(try take(Int(uint32())))))
        case .binbytes8, .bytearray8: try push(.bytes(Array(try take(try length64()))))

        // Containers.
        case .emptyTuple: try push(try newTuple([]))
        case .tuple: try push(try newTuple(try popMark(op)))
        case .tuple1:
            let a = try pop(op)
            try push(try newTuple([a]))
        case .tuple2:
            let b = try pop(op), a = try pop(op)
            try push(try newTuple([a, b]))
        case .tuple3:
            let c = try pop(op), b = try pop(op), a = try pop(op)
            try push(try newTuple([a, b, c]))
        case .emptyList: try push(try newList([]))
        case .list: try push(try newList(try popMark(op)))
        case .append:
            let item = try pop(op)
            try extendList(with: [item], op)
        case .appends:
            let items = try popMark(op)
            try extendList(with: items, op)
        case .emptyDict: try push(try newDict())
        case .dict:
            let items = try popMark(op)
            let dict = try newDict()
            try push(dict)
            try setItems(items, op)
        case .setitem:
            let value = try pop(op), key = try pop(op)
            try setItems([key, value], op)
        case .setitems:
            try setItems(try popMark(op), op)
        case .emptySet: try push(try newSet([]))
        case .frozenset: try push(try newSet(try popMark(op)))
        case .additems:
            let items = try popMark(op)
            guard case let .set(id) = try top(op) else { throw Failure.refusedCall(opcode: op.name, target: describe(try top(op)), offset: opcodeStart) }
            document.lists[id].append(contentsOf: items)

        // Globals and what applies them.
        case .global:
            let module = try line(), name = try line()
            try push(try resolve(module: module, name: name, op))
        case .stackGlobal:
            let nameValue = try pop(op), moduleValue = try pop(op)
            guard case let .string(module) = moduleValue, case let .string(name) = nameValue else {
                throw malformed("STACK_GLOBAL takes two strings, got \(describe(moduleValue)) and \(describe(nameValue))")
            }
            try push(try resolve(module: module, name: name, op))
        case .reduce:
            let args = try pop(op), callee = try pop(op)
            guard case let .global(global) = callee else {
                throw Failure.refusedCall(opcode: op.name, target: describe(callee), offset: opcodeStart)
            }
            try push(try call(global, arguments(args, of: global, op), op))
        case .newobj:
            let args = try pop(op), type = try pop(op)
            // NEWOBJ makes an instance: only a Parameter, which is its tensor.
            guard case .global(.parameterClass) = type else {
                throw Failure.refusedCall(opcode: op.name, target: describe(type), offset: opcodeStart)
            }
            try push(try call(.parameterClass, arguments(args, of: .parameterClass, op), op))
        case .newobjEx:
            _ = try pop(op)
            _ = try pop(op)
            throw Failure.refusedCall(opcode: op.name, target: describe(try pop(op)), offset: opcodeStart)
        case .build:
            let state = try pop(op)
            // An OrderedDict's attributes (a state_dict's `_metadata` of module versions): dropped.
            guard case .dict = try top(op) else {
                throw Failure.refusedCall(opcode: op.name, target: describe(try top(op)) + " with state " + describe(state), offset: opcodeStart)
            }
        case .binpersid:
            try push(try persistentLoad(try pop(op)))
        case .inst:
            let module = try line(), name = try line()
            throw Failure.refusedGlobal(opcode: op.name, global: module + "." + name, offset: opcodeStart)
        case .obj:
            let items = try popMark(op)
            throw Failure.refusedCall(opcode: op.name, target: items.first.map(describe) ?? "nothing", offset: opcodeStart)
        case .ext1, .ext2, .ext4:
            let width = op == .ext1 ? 1 : op == .ext2 ? 2 : 4
            var code = 0
            for (i, b) in try take(width).enumerated() { code |= Int(b) << (8 * i) }
            throw Failure.refusedOpcode(opcode: op.name, offset: opcodeStart,
                                        reason: "extension code \(code) stands for a global from copyreg's registry, which is never consulted")
        case .persid:
            throw Failure.refusedOpcode(opcode: op.name, offset: opcodeStart, reason: "text persistent ids are not torch.save's")
        case .nextBuffer, .readonlyBuffer:
            throw Failure.refusedOpcode(opcode: op.name, offset: opcodeStart, reason: "out-of-band buffers are not part of a file")
        case .int, .long, .float, .string, .unicode, .get, .put:
            throw Failure.refusedOpcode(opcode: op.name, offset: opcodeStart, reason: "protocol-0 text opcodes are not read (torch.save writes binary opcodes only)")
        }
    }

    // MARK: Globals and the functions they name

    private mutating func resolve(module: String, name: String, _ op: PickleOpcode) throws -> PickleValue {
        if let global = PickleGlobal.named(module: module, name: name) { return .global(global) }
        let full = module + "." + name
        if PickleGlobal.inertNames.contains(full) { return .opaque(full) }
        throw Failure.refusedGlobal(opcode: op.name, global: full, offset: opcodeStart)
    }

    private func arguments(_ args: PickleValue, of global: PickleGlobal, _ op: PickleOpcode) throws -> [PickleValue] {
        guard case let .tuple(id) = args else { throw malformed("\(op.name) \(global.name) takes a tuple of arguments, got \(describe(args))") }
        return document.tuples[id]
    }

    /// What applying `global` to `a` builds. Each case is the data effect of the Python function of
    /// that name, on arguments of the types torch.save writes; any other use is refused.
    private mutating func call(_ global: PickleGlobal, _ a: [PickleValue], _ op: PickleOpcode) throws -> PickleValue {
        func wrongArguments() -> Failure { malformed("\(op.name) \(global.name) got \(a.count) arguments (\(a.map(describe).joined(separator: ", ")))") }
        switch global {
        case .rebuildTensor, .rebuildTensorV2, .rebuildTensorV3:
            // (storage, offset, size, stride[, requires_grad, backward_hooks][, dtype][, metadata])
            let counts: ClosedRange<Int> = global == .rebuildTensor ? 4...4 : global == .rebuildTensorV2 ? 6...7 : 7...8
            guard counts.contains(a.count) else { throw wrongArguments() }
            var type: TorchElementType?
            if global == .rebuildTensorV3 {
                guard case let .global(.dtype(dtype)) = a[6] else { throw malformed("_rebuild_tensor_v3's dtype is \(describe(a[6]))") }
                type = dtype
            }
            return try newTensor(storage: a[0], offset: a[1], size: a[2], stride: a[3], type: type)
        case .rebuildParameter, .rebuildParameterWithState, .parameterClass:
            // (data, requires_grad, backward_hooks[, state]) or Parameter(data[, requires_grad]): the data.
            let counts: ClosedRange<Int> = global == .rebuildParameter ? 3...3 : global == .rebuildParameterWithState ? 4...4 : 1...2
            guard counts.contains(a.count), case .tensor = a[0] else { throw wrongArguments() }
            return a[0]
        case .rebuildFromTypeV2:
            // (func, type, args, state): a plain tensor or Parameter rebuilt by `func`; the state
            // (Python attributes) is dropped.
            guard a.count == 4, case let .global(function) = a[0],
                  [.rebuildTensor, .rebuildTensorV2, .rebuildTensorV3, .rebuildParameter, .rebuildParameterWithState].contains(function) else {
                throw Failure.refusedCall(opcode: op.name, target: global.name + " of " + (a.first.map(describe) ?? "nothing"), offset: opcodeStart)
            }
            guard a[1] == .global(.tensorClass) || a[1] == .global(.parameterClass) else {
                throw Failure.refusedCall(opcode: op.name, target: global.name + " to type " + describe(a[1]), offset: opcodeStart)
            }
            return try call(function, arguments(a[2], of: function, op), op)
        case .orderedDict, .counter:
            let dict = try newDict()
            if a.isEmpty { return dict }
            // OrderedDict([(key, value), ...])
            guard a.count == 1, case let .list(id) = a[0], case let .dict(d) = dict else { throw wrongArguments() }
            for pair in document.lists[id] {
                guard case let .tuple(t) = pair, document.tuples[t].count == 2 else { throw wrongArguments() }
                document.dicts[d].set(document.tuples[t][0], document.tuples[t][1])
            }
            return dict
        case .torchSize:
            guard a.count == 1, case let .tuple(id) = a[0], document.tuples[id].allSatisfy({ if case .int = $0 { return true }; return false }) else {
                throw wrongArguments()
            }
            return a[0]
        case .codecsEncode:
            // Protocol 2 writes bytes as _codecs.encode(text, 'latin1').
            guard a.count == 2, case let .string(text) = a[0], case let .string(encoding) = a[1] else { throw wrongArguments() }
            switch encoding.lowercased() {
            case "latin1", "latin-1", "iso-8859-1":
                var out: [UInt8] = []
                out.reserveCapacity(text.unicodeScalars.count)
                for scalar in text.unicodeScalars {
                    guard scalar.value < 256 else { throw malformed("_codecs.encode(…, 'latin1') of a character beyond Latin-1") }
                    out.append(UInt8(scalar.value))
                }
                return .bytes(out)
            case "utf-8", "utf8":
                return .bytes(Array(text.utf8))
            default:
                throw malformed("_codecs.encode with encoding '\(encoding)'")
            }
        case .set, .frozenset:
            if a.isEmpty { return try newSet([]) }
            guard a.count == 1 else { throw wrongArguments() }
            switch a[0] {
            case let .list(id), let .set(id): return try newSet(document.lists[id])
            case let .tuple(id): return try newSet(document.tuples[id])
            default: throw wrongArguments()
            }
        case .bytearray:
            if a.isEmpty { return .bytes([]) }
            guard a.count == 1, case .bytes = a[0] else { throw wrongArguments() }
            return a[0]
        case .device:
            guard (1...2).contains(a.count), case .string = a[0] else { throw wrongArguments() }
            return .opaque("torch.device")
        case .layout:
            guard a.count == 1, case .string = a[0] else { throw wrongArguments() }
            return .opaque("torch.layout")
        case .tensorClass, .storageType, .dtype:
            throw Failure.refusedCall(opcode: op.name, target: global.name, offset: opcodeStart)
        }
    }

    /// `persistent_load` of torch's reader: `('storage', storage_type, key, location, numel)`.
    private mutating func persistentLoad(_ id: PickleValue) throws -> PickleValue {
        guard case let .tuple(t) = id else { throw malformed("BINPERSID's id is \(describe(id)), not a tuple") }
        let fields = document.tuples[t]
        guard fields.count == 5, fields[0] == .string("storage") || fields[0] == .bytes(Array("storage".utf8)) else {
            throw malformed("BINPERSID's id is not ('storage', type, key, location, size)")
        }
        guard case let .global(.storageType(type)) = fields[1] else { throw malformed("BINPERSID's storage type is \(describe(fields[1]))") }
        guard case let .string(key) = fields[2] else { throw malformed("BINPERSID's storage key is \(describe(fields[2]))") }
        guard case .string = fields[3] else { throw malformed("BINPERSID's storage location is \(describe(fields[3]))") }
        guard case let .int(count) = fields[4], count >= 0 else {
            throw Failure.storage(key: key, reason: "has \(describe(fields[4])) elements, not a count")
        }
        guard let available = storageSize(key) else {
            throw Failure.storage(key: key, reason: "is named by the pickle but the archive has no entry for it")
        }
        let (needed, overflow) = count.multipliedReportingOverflow(by: type.itemSize)
        guard !overflow, needed <= available else {
            throw Failure.storage(key: key, reason: "declares \(count) \(type.name) elements but its entry holds only \(available) bytes")
        }
        try countObject()
        document.storages.append(PickledStorage(key: key, type: type, count: count))
        return .storage(document.storages.count - 1)
    }

    private mutating func newTensor(storage: PickleValue, offset: PickleValue, size: PickleValue, stride: PickleValue,
                                    type: TorchElementType?) throws -> PickleValue {
        guard case let .storage(s) = storage else { throw malformed("a tensor's storage is \(describe(storage))") }
        guard case let .int(offset) = offset else { throw malformed("a tensor's storage offset is \(describe(offset))") }
        func integers(_ value: PickleValue, _ what: String) throws -> [Int] {
            guard case let .tuple(id) = value else { throw malformed("a tensor's \(what) is \(describe(value)), not a tuple") }
            return try document.tuples[id].map {
                guard case let .int(n) = $0 else { throw malformed("a tensor's \(what) holds \(describe($0))") }
                return n
            }
        }
        try countObject()
        document.tensors.append(PickledTensor(storage: s, type: type ?? document.storages[s].type, offset: offset,
                                              shape: try integers(size, "size"), strides: try integers(stride, "stride")))
        return .tensor(document.tensors.count - 1)
    }

    // MARK: Containers

    private mutating func newTuple(_ items: [PickleValue]) throws -> PickleValue {
        try countObject()
        document.tuples.append(items)
        return .tuple(document.tuples.count - 1)
    }

    private mutating func newList(_ items: [PickleValue]) throws -> PickleValue {
        try countObject()
        document.lists.append(items)
        return .list(document.lists.count - 1)
    }

    private mutating func newSet(_ items: [PickleValue]) throws -> PickleValue {
        try countObject()
        document.lists.append(items)
        return .set(document.lists.count - 1)
    }

    private mutating func newDict() throws -> PickleValue {
        try countObject()
        document.dicts.append(PickleDict())
        return .dict(document.dicts.count - 1)
    }

    /// APPEND and APPENDS: CPython calls the target's `append`/`extend`, whatever it is; only lists are extended here.
    private mutating func extendList(with items: [PickleValue], _ op: PickleOpcode) throws {
        guard case let .list(id) = try top(op) else {
            throw Failure.refusedCall(opcode: op.name, target: describe(try top(op)), offset: opcodeStart)
        }
        document.lists[id].append(contentsOf: items)
    }

    /// SETITEM and SETITEMS: CPython calls the target's `__setitem__`; only dictionaries are filled here.
    private mutating func setItems(_ items: [PickleValue], _ op: PickleOpcode) throws {
        guard case let .dict(id) = try top(op) else {
            throw Failure.refusedCall(opcode: op.name, target: describe(try top(op)), offset: opcodeStart)
        }
        guard items.count % 2 == 0 else { throw malformed("\(op.name) has a key without a value") }
        for i in stride(from: 0, to: items.count, by: 2) { document.dicts[id].set(items[i], items[i + 1]) }
    }

    // MARK: Stack, marks, memo

    /// The lowest stack index the current MARK frame may touch.
    private var floor: Int { marks.last ?? 0 }

    private mutating func push(_ value: PickleValue) throws {
        guard stack.count < limits.stack else { throw Failure.limit(what: "values on its stack", limit: limits.stack) }
        stack.append(value)
    }

    private mutating func pop(_ op: PickleOpcode) throws -> PickleValue {
        guard stack.count > floor else { throw malformed("\(op.name) needs a value but the stack is empty") }
        return stack.removeLast()
    }

    private func top(_ op: PickleOpcode) throws -> PickleValue {
        guard stack.count > floor else { throw malformed("\(op.name) needs a value but the stack is empty") }
        return stack[stack.count - 1]
    }

    private mutating func popMark(_ op: PickleOpcode) throws -> [PickleValue] {
        guard let mark = marks.popLast() else { throw malformed("\(op.name) without a MARK") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    private func recall(_ index: UInt32) throws -> PickleValue {
        guard let value = memo[index] else { throw malformed("the memo has no entry \(index)") }
        return value
    }

    private mutating func remember(_ index: UInt32, _ op: PickleOpcode) throws {
        let value = try top(op)
        if memo.updateValue(value, forKey: index) == nil, memo.count > limits.memo {
            throw Failure.limit(what: "memo entries", limit: limits.memo)
        }
    }

    private mutating func countObject() throws {
        objects += 1
        guard objects <= limits.objects else { throw Failure.limit(what: "objects", limit: limits.objects) }
    }

    // MARK: Reading operands

    private mutating func take(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, count <= bytes.count - position else {
            throw malformed("an operand of \(count) bytes runs past the end of the pickle")
        }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    private mutating func uint32() throws -> UInt32 { UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self)) }
    private mutating func uint64() throws -> UInt64 { UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self)) }

    /// A 64-bit length, which the pickle's own size bounds.
    private mutating func length64() throws -> Int {
        let length = try uint64()
        guard length <= UInt64(bytes.count - position) else { throw malformed("an operand of \(length) bytes runs past the end of the pickle") }
        return Int(length)
    }

    private mutating func text(_ count: Int) throws -> String {
        let raw = try take(count)
        guard let text = String(validating: raw, as: UTF8.self) else { throw malformed("a string is not valid UTF-8") }
        return text
    }

    /// A newline-terminated UTF-8 line (GLOBAL's and INST's module and name).
    private mutating func line() throws -> String {
        let rest = UnsafeRawBufferPointer(rebasing: bytes[position...])
        guard let newline = rest.firstIndex(of: UInt8(ascii: "\n")) else { throw malformed("a GLOBAL name runs past the end of the pickle") }
        let raw = try take(newline + 1)
        guard let text = String(validating: UnsafeRawBufferPointer(rebasing: raw.dropLast()), as: UTF8.self) else {
            throw malformed("a GLOBAL name is not valid UTF-8")
        }
        return text
    }

    /// A two's-complement little-endian integer (LONG1, LONG4), or `.bigInt` beyond 64 bits.
    static func decodeLong(_ raw: UnsafeRawBufferPointer) -> PickleValue {
        guard let last = raw.last else { return .int(0) }
        let negative = last & 0x80 != 0
        // Bytes beyond the eighth must only repeat the sign.
        if raw.count > 8, raw[8...].contains(where: { $0 != (negative ? 0xFF : 0) }) { return .bigInt }
        var value: UInt64 = negative ? ~0 : 0
        for (i, b) in raw.prefix(8).enumerated() {
            value &= ~(UInt64(0xFF) << (8 * UInt64(i)))
            value |= UInt64(b) << (8 * UInt64(i))
        }
        let signed = Int64(bitPattern: value)
        // Eight or more bytes: the eighth's sign bit must agree with the sign.
        if raw.count >= 8, (signed < 0) != negative { return .bigInt }
        return .int(Int(signed))
    }

    // MARK: Messages

    private func malformed(_ reason: String) -> Failure { .malformed(offset: opcodeStart, reason: reason) }

    func describe(_ value: PickleValue) -> String {
        switch value {
        case .none: return "None"
        case .bool: return "a bool"
        case .int, .bigInt: return "an int"
        case .float: return "a float"
        case .string: return "a str"
        case .bytes: return "bytes"
        case .tuple: return "a tuple"
        case .list: return "a list"
        case .dict: return "a dict"
        case .set: return "a set"
        case let .global(global): return global.name
        case .storage: return "a storage"
        case .tensor: return "a tensor"
        case let .opaque(name): return name
        }
    }
}
