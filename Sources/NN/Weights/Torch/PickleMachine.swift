import Foundation

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

    let bytes: UnsafeRawBufferPointer
    let limits: Limits
    /// The byte size of the archive entry holding storage `key`, or nil when there is none.
    let storageSize: (String) -> Int?

    var document = PickleDocument()
    var position = 0
    /// Where the opcode being run starts, for messages.
    var opcodeStart = 0
    var stack: [PickleValue] = []
    /// Stack heights at each open `MARK`: CPython's metastack, kept as indices into one stack.
    var marks: [Int] = []
    var memo: [UInt32: PickleValue] = [:]
    var objects = 0

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

    mutating func run() throws {
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

    mutating func step(_ op: PickleOpcode) throws {
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
}
