import Foundation

/// A JSON value as the safetensors header reader needs it.
///
/// We parse the header ourselves instead of using `JSONSerialization` because the latter silently
/// keeps one of two duplicate keys (the spec forbids duplicates, and a file that names a tensor twice
/// is ambiguous), accepts non-UTF-8 input in some configurations, and has no nesting limit we control.
/// Objects keep their members in file order with duplicates intact; the caller decides what a
/// duplicate means. Numbers keep their source text so that the caller can tell a negative, fractional
/// or overflowing dimension apart instead of getting a rounded `Double`.
enum JSONValue: Equatable {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// The number's exact source text, already checked against the JSON number grammar.
    case number(String)
    case bool(Bool)
    case null

    static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// A short name of the value's kind, for error messages ("an array", "a string").
    var kindDescription: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }
}

/// Why a header is not valid JSON, with the byte offset inside the header where parsing stopped.
struct JSONParseError: Error, Equatable {
    enum Kind: Equatable {
        case syntax(String)
        case invalidUTF8
    }
    var kind: Kind
    var offset: Int
}

/// A strict RFC 8259 parser over raw bytes, with a nesting limit so a hostile header of ten million
/// `[` cannot overflow the stack.
struct JSONParser {
    static let maxDepth = 64
    /// Arrays in a safetensors header are shapes and offset pairs. Refusing longer ones keeps a
    /// 100 MB header of `[0,0,0,…]` from becoming gigabytes of parsed values; what remains is memory
    /// linear in the header's length (a few times its size at worst).
    static let maxArrayLength = 4096

    private let bytes: UnsafeRawBufferPointer
    private var i = 0
    private var depth = 0

    /// Parses exactly one JSON value that fills `bytes` apart from surrounding whitespace.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.i != bytes.count {
            throw parser.syntax("unexpected text after the end of the header object")
        }
        return value
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private func syntax(_ message: String) -> JSONParseError {
        JSONParseError(kind: .syntax(message), offset: i)
    }

    private var atEnd: Bool { i >= bytes.count }
    private var current: UInt8 { bytes[i] }

    private mutating func skipWhitespace() {
        while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws {
        guard !atEnd, current == byte else { throw syntax("expected \(what)") }
        i += 1
    }

    private mutating func parseValue() throws -> JSONValue {
        guard !atEnd else { throw syntax("unexpected end of header") }
        switch current {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw syntax("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= bytes.count else { throw syntax("unexpected end of header") }
        for k in 0..<n where bytes[i + k] != word.utf8Start[k] {
            throw syntax("invalid literal")
        }
        i += n
    }

    private mutating func enter() throws {
        depth += 1
        if depth > Self.maxDepth { throw syntax("nested more than \(Self.maxDepth) levels deep") }
    }

    private mutating func parseObject() throws -> JSONValue {
        try enter(); defer { depth -= 1 }
        i += 1  // {
        var members: [(key: String, value: JSONValue)] = []
        skipWhitespace()
        if !atEnd, current == UInt8(ascii: "}") { i += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard !atEnd, current == UInt8(ascii: "\"") else { throw syntax("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':' after an object key")
            skipWhitespace()
            let value = try parseValue()
            members.append((key, value))
            skipWhitespace()
            guard !atEnd else { throw syntax("unexpected end of header inside an object") }
            if current == UInt8(ascii: ",") { i += 1; continue }
            if current == UInt8(ascii: "}") { i += 1; return .object(members) }
            throw syntax("expected ',' or '}' in an object")
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        try enter(); defer { depth -= 1 }
        i += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if !atEnd, current == UInt8(ascii: "]") { i += 1; return .array(elements) }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            if elements.count > Self.maxArrayLength {
                throw syntax("an array longer than \(Self.maxArrayLength) elements, which no tensor shape has")
            }
            skipWhitespace()
            guard !atEnd else { throw syntax("unexpected end of header inside an array") }
            if current == UInt8(ascii: ",") { i += 1; continue }
            if current == UInt8(ascii: "]") { i += 1; return .array(elements) }
            throw syntax("expected ',' or ']' in an array")
        }
    }

    private mutating func parseNumber() throws -> String {
        let start = i
        if current == UInt8(ascii: "-") { i += 1 }
        func digits(_ p: inout JSONParser) -> Int {
            let s = p.i
            while !p.atEnd, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.current) { p.i += 1 }
            return p.i - s
        }
        guard !atEnd else { throw syntax("unexpected end of header in a number") }
        if current == UInt8(ascii: "0") {
            i += 1
        } else if digits(&self) == 0 {
            throw syntax("invalid number")
        }
        if !atEnd, current == UInt8(ascii: ".") {
            i += 1
            if digits(&self) == 0 { throw syntax("invalid number") }
        }
        if !atEnd, current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            i += 1
            if !atEnd, current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { i += 1 }
            if digits(&self) == 0 { throw syntax("invalid number") }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw syntax("unexpected end of header in a \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = current
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw syntax("invalid \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    /// Parses a string starting at its opening quote. Raw bytes are checked as UTF-8; escapes are
    /// decoded, with `\u` surrogate pairs combined and lone surrogates refused.
    private mutating func parseString() throws -> String {
        i += 1  // "
        var out: [UInt8] = []
        var runStart = i
        func flush(_ p: JSONParser, _ out: inout [UInt8], _ runStart: Int) {
            out.append(contentsOf: p.bytes[runStart..<p.i])
        }
        while true {
            guard !atEnd else { throw syntax("unterminated string") }
            let c = current
            if c == UInt8(ascii: "\"") {
                flush(self, &out, runStart)
                i += 1
                break
            }
            if c < 0x20 { throw syntax("control character inside a string") }
            if c != UInt8(ascii: "\\") { i += 1; continue }
            flush(self, &out, runStart)
            i += 1
            guard !atEnd else { throw syntax("unterminated string") }
            let e = current
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    guard i + 2 <= bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw syntax("unpaired surrogate in a \\u escape")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw syntax("unpaired surrogate in a \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw syntax("unpaired surrogate in a \\u escape")
                }
                guard let u = Unicode.Scalar(scalar) else { throw syntax("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw syntax("invalid escape sequence")
            }
            runStart = i
        }
        guard let s = String(validating: out, as: UTF8.self) else {
            throw JSONParseError(kind: .invalidUTF8, offset: runStart)
        }
        return s
    }
}

/// The offset of the first byte that breaks UTF-8 (overlong forms, surrogates and values past
/// U+10FFFF included), or nil when all of `bytes` is valid UTF-8.
func firstInvalidUTF8Offset(_ bytes: UnsafeRawBufferPointer) -> Int? {
    var i = 0
    let n = bytes.count
    while i < n {
        let b0 = bytes[i]
        if b0 < 0x80 { i += 1; continue }
        let length: Int
        var lower: UInt8 = 0x80, upper: UInt8 = 0xBF  // allowed range of the second byte
        switch b0 {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: return i
        }
        guard i + length <= n else { return i }
        guard (lower...upper).contains(bytes[i + 1]) else { return i }
        for k in 2..<max(length, 2) where !(0x80...0xBF).contains(bytes[i + k]) { return i }
        i += length
    }
    return nil
}
