import Foundation

extension PickleMachine {
    // MARK: Globals and the functions they name

    mutating func resolve(module: String, name: String, _ op: PickleOpcode) throws -> PickleValue {
        if let global = PickleGlobal.named(module: module, name: name) { return .global(global) }
        let full = module + "." + name
        if PickleGlobal.inertNames.contains(full) { return .opaque(full) }
        throw Failure.refusedGlobal(opcode: op.name, global: full, offset: opcodeStart)
    }

    func arguments(_ args: PickleValue, of global: PickleGlobal, _ op: PickleOpcode) throws -> [PickleValue] {
        guard case let .tuple(id) = args else { throw malformed("\(op.name) \(global.name) takes a tuple of arguments, got \(describe(args))") }
        return document.tuples[id]
    }

    /// What applying `global` to `a` builds. Each case is the data effect of the Python function of
    /// that name, on arguments of the types torch.save writes; any other use is refused.
    mutating func call(_ global: PickleGlobal, _ a: [PickleValue], _ op: PickleOpcode) throws -> PickleValue {
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
    mutating func persistentLoad(_ id: PickleValue) throws -> PickleValue {
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

    mutating func newTensor(storage: PickleValue, offset: PickleValue, size: PickleValue, stride: PickleValue,
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
}
