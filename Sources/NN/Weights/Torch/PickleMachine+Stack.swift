import Foundation

extension PickleMachine {
    // MARK: Containers

    mutating func newTuple(_ items: [PickleValue]) throws -> PickleValue {
        try countObject()
        document.tuples.append(items)
        return .tuple(document.tuples.count - 1)
    }

    mutating func newList(_ items: [PickleValue]) throws -> PickleValue {
        try countObject()
        document.lists.append(items)
        return .list(document.lists.count - 1)
    }

    mutating func newSet(_ items: [PickleValue]) throws -> PickleValue {
        try countObject()
        document.lists.append(items)
        return .set(document.lists.count - 1)
    }

    mutating func newDict() throws -> PickleValue {
        try countObject()
        document.dicts.append(PickleDict())
        return .dict(document.dicts.count - 1)
    }

    /// APPEND and APPENDS: CPython calls the target's `append`/`extend`, whatever it is; only lists are extended here.
    mutating func extendList(with items: [PickleValue], _ op: PickleOpcode) throws {
        guard case let .list(id) = try top(op) else {
            throw Failure.refusedCall(opcode: op.name, target: describe(try top(op)), offset: opcodeStart)
        }
        document.lists[id].append(contentsOf: items)
    }

    /// SETITEM and SETITEMS: CPython calls the target's `__setitem__`; only dictionaries are filled here.
    mutating func setItems(_ items: [PickleValue], _ op: PickleOpcode) throws {
        guard case let .dict(id) = try top(op) else {
            throw Failure.refusedCall(opcode: op.name, target: describe(try top(op)), offset: opcodeStart)
        }
        guard items.count % 2 == 0 else { throw malformed("\(op.name) has a key without a value") }
        for i in stride(from: 0, to: items.count, by: 2) { document.dicts[id].set(items[i], items[i + 1]) }
    }

    // MARK: Stack, marks, memo

    /// The lowest stack index the current MARK frame may touch.
    var floor: Int { marks.last ?? 0 }

    mutating func push(_ value: PickleValue) throws {
        guard stack.count < limits.stack else { throw Failure.limit(what: "values on its stack", limit: limits.stack) }
        stack.append(value)
    }

    mutating func pop(_ op: PickleOpcode) throws -> PickleValue {
        guard stack.count > floor else { throw malformed("\(op.name) needs a value but the stack is empty") }
        return stack.removeLast()
    }

    func top(_ op: PickleOpcode) throws -> PickleValue {
        guard stack.count > floor else { throw malformed("\(op.name) needs a value but the stack is empty") }
        return stack[stack.count - 1]
    }

    mutating func popMark(_ op: PickleOpcode) throws -> [PickleValue] {
        guard let mark = marks.popLast() else { throw malformed("\(op.name) without a MARK") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    func recall(_ index: UInt32) throws -> PickleValue {
        guard let value = memo[index] else { throw malformed("the memo has no entry \(index)") }
        return value
    }

    mutating func remember(_ index: UInt32, _ op: PickleOpcode) throws {
        let value = try top(op)
        if memo.updateValue(value, forKey: index) == nil, memo.count > limits.memo {
            throw Failure.limit(what: "memo entries", limit: limits.memo)
        }
    }

    mutating func countObject() throws {
        objects += 1
        guard objects <= limits.objects else { throw Failure.limit(what: "objects", limit: limits.objects) }
    }

    // MARK: Reading operands

    mutating func take(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, count <= bytes.count - position else {
            throw malformed("an operand of \(count) bytes runs past the end of the pickle")
        }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    mutating func uint32() throws -> UInt32 { UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self)) }
    mutating func uint64() throws -> UInt64 { UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self)) }

    /// A 64-bit length, which the pickle's own size bounds.
    mutating func length64() throws -> Int {
        let length = try uint64()
        guard length <= UInt64(bytes.count - position) else { throw malformed("an operand of \(length) bytes runs past the end of the pickle") }
        return Int(length)
    }

    mutating func text(_ count: Int) throws -> String {
        let raw = try take(count)
        guard let text = String(validating: raw, as: UTF8.self) else { throw malformed("a string is not valid UTF-8") }
        return text
    }

    /// A newline-terminated UTF-8 line (GLOBAL's and INST's module and name).
    mutating func line() throws -> String {
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

    func malformed(_ reason: String) -> Failure { .malformed(offset: opcodeStart, reason: reason) }

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
