/// A gzip (RFC 1952) reader with its DEFLATE (RFC 1951) decoder, just enough to read the bundled
/// `bpe_simple_vocab_16e6.txt.gz` without linking zlib into the engine.
///
/// Decoding is table-driven: each Huffman code is looked up in one step from the next
/// `maxBits` bits of input, so a whole vocabulary (1.3 MB in, 1.7 MB out) decodes in a few tens of
/// milliseconds in release builds. The CRC-32 and length in the gzip trailer are checked, so a
/// damaged resource is an error, never a wrong vocabulary.
enum Gzip {
    enum Error: Swift.Error, CustomStringConvertible {
        case notGzip
        case corrupt(String)

        var description: String {
            switch self {
            case .notGzip: return "not a gzip file (bad magic number or compression method)"
            case .corrupt(let why): return "corrupt gzip data: \(why)"
            }
        }
    }

    /// The decompressed contents of a single-member gzip file.
    static func decompress(_ bytes: [UInt8]) throws -> [UInt8] {
        guard bytes.count >= 18, bytes[0] == 0x1F, bytes[1] == 0x8B, bytes[2] == 8 else { throw Error.notGzip }
        let flags = bytes[3]
        var position = 10
        if flags & 0x04 != 0 {  // FEXTRA: a little-endian length, then that many bytes
            guard position + 2 <= bytes.count else { throw Error.corrupt("truncated header") }
            position += 2 + (Int(bytes[position]) | Int(bytes[position + 1]) << 8)
        }
        for flag in [UInt8(0x08), 0x10] where flags & flag != 0 {  // FNAME, FCOMMENT: zero-terminated
            while position < bytes.count, bytes[position] != 0 { position += 1 }
            position += 1
        }
        if flags & 0x02 != 0 { position += 2 }  // FHCRC
        guard position < bytes.count else { throw Error.corrupt("truncated header") }

        var reader = BitReader(bytes: bytes, position: position)
        let output = try inflate(&reader)

        let trailer = reader.byteAlignedPosition
        guard trailer + 8 <= bytes.count else { throw Error.corrupt("missing CRC-32 and length trailer") }
        func le32(_ at: Int) -> UInt32 {
            UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        }
        guard le32(trailer + 4) == UInt32(truncatingIfNeeded: output.count) else {
            throw Error.corrupt("length \(output.count) differs from the trailer's \(le32(trailer + 4))")
        }
        guard le32(trailer) == crc32(output) else { throw Error.corrupt("CRC-32 mismatch") }
        return output
    }

    // MARK: - DEFLATE

    /// Reads bits least-significant first, as DEFLATE packs them.
    struct BitReader {
        let bytes: [UInt8]
        var position: Int
        var buffer: UInt64 = 0
        var count = 0

        init(bytes: [UInt8], position: Int) {
            self.bytes = bytes
            self.position = position
        }

        /// Ensures at least `n` (≤ 56) bits are buffered; past the end of input, zeros are supplied and
        /// `overrun` reports it once they are consumed.
        @inline(__always) mutating func fill(_ n: Int) {
            while count < n {
                let byte = position < bytes.count ? bytes[position] : 0
                buffer |= UInt64(byte) << UInt64(count)
                position += 1
                count += 8
            }
        }

        @inline(__always) mutating func peek(_ n: Int) -> Int {
            fill(n)
            return Int(buffer & ((1 << UInt64(n)) - 1))
        }

        @inline(__always) mutating func consume(_ n: Int) {
            buffer >>= UInt64(n)
            count -= n
        }

        @inline(__always) mutating func bits(_ n: Int) -> Int {
            let value = peek(n)
            consume(n)
            return value
        }

        /// True when more bits were consumed than the input holds.
        var overrun: Bool { position * 8 - count > bytes.count * 8 }

        /// Drops the bits left in the current byte and returns the index of the next whole byte.
        var byteAlignedPosition: Int { position - count / 8 }

        mutating func alignToByte() { consume(count % 8) }
    }

    /// A canonical Huffman code decoded through a table indexed by the next `maxBits` input bits
    /// (bit-reversed code, since DEFLATE sends codes most-significant bit first).
    struct Huffman {
        /// `symbol << 4 | length`; length 0 marks bit patterns that no code starts with.
        var table: [UInt32]
        var maxBits: Int

        init(lengths: [Int]) throws {
            maxBits = max(1, lengths.max() ?? 1)
            table = [UInt32](repeating: 0, count: 1 << maxBits)
            var lengthCount = [Int](repeating: 0, count: 16)
            for length in lengths where length > 0 { lengthCount[length] += 1 }
            // RFC 1951 §3.2.2: the first code of each length.
            var next = [Int](repeating: 0, count: 16)
            var code = 0
            for bits in 1..<16 {
                code = (code + lengthCount[bits - 1]) << 1
                next[bits] = code
                if lengthCount[bits] > 0, code + lengthCount[bits] > 1 << bits {
                    throw Error.corrupt("over-subscribed Huffman code")
                }
            }
            for (symbol, length) in lengths.enumerated() where length > 0 {
                var reversed = 0
                var c = next[length]
                next[length] += 1
                for _ in 0..<length {
                    reversed = reversed << 1 | c & 1
                    c >>= 1
                }
                let entry = UInt32(symbol) << 4 | UInt32(length)
                var index = reversed
                while index < table.count {
                    table[index] = entry
                    index += 1 << length
                }
            }
        }

        @inline(__always) func decode(_ reader: inout BitReader) throws -> Int {
            let entry = table[reader.peek(maxBits)]
            let length = Int(entry & 15)
            guard length > 0 else { throw Error.corrupt("invalid Huffman code") }
            reader.consume(length)
            return Int(entry >> 4)
        }
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    static let distanceExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
    /// The order in which code-length code lengths are sent (RFC 1951 §3.2.7).
    static let codeLengthOrder = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    static func inflate(_ reader: inout BitReader) throws -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(reader.bytes.count * 3)
        var isFinal = false
        while !isFinal {
            isFinal = reader.bits(1) == 1
            switch reader.bits(2) {
            case 0:
                reader.alignToByte()
                let length = reader.bits(16)
                let complement = reader.bits(16)
                guard length == ~complement & 0xFFFF else { throw Error.corrupt("stored block length check") }
                for _ in 0..<length { output.append(UInt8(reader.bits(8))) }
            case 1:
                let literals = try Huffman(lengths: Array(repeating: 8, count: 144) + Array(repeating: 9, count: 112)
                    + Array(repeating: 7, count: 24) + Array(repeating: 8, count: 8))
                let distances = try Huffman(lengths: Array(repeating: 5, count: 30))
                try inflateBlock(&reader, literals: literals, distances: distances, into: &output)
            case 2:
                let (literals, distances) = try dynamicCodes(&reader)
                try inflateBlock(&reader, literals: literals, distances: distances, into: &output)
            default:
                throw Error.corrupt("reserved block type")
            }
            if reader.overrun { throw Error.corrupt("input ends inside the compressed data") }
        }
        return output
    }

    static func dynamicCodes(_ reader: inout BitReader) throws -> (Huffman, Huffman) {
        let literalCount = reader.bits(5) + 257
        let distanceCount = reader.bits(5) + 1
        let codeLengthCount = reader.bits(4) + 4
        var codeLengthLengths = [Int](repeating: 0, count: 19)
        for i in 0..<codeLengthCount { codeLengthLengths[codeLengthOrder[i]] = reader.bits(3) }
        let codeLengths = try Huffman(lengths: codeLengthLengths)

        var lengths: [Int] = []
        while lengths.count < literalCount + distanceCount {
            let symbol = try codeLengths.decode(&reader)
            switch symbol {
            case 0..<16:
                lengths.append(symbol)
            case 16:
                guard let previous = lengths.last else { throw Error.corrupt("repeat with no previous length") }
                lengths += Array(repeating: previous, count: 3 + reader.bits(2))
            case 17:
                lengths += Array(repeating: 0, count: 3 + reader.bits(3))
            default:
                lengths += Array(repeating: 0, count: 11 + reader.bits(7))
            }
            if reader.overrun { throw Error.corrupt("input ends inside a code table") }
        }
        guard lengths.count == literalCount + distanceCount else { throw Error.corrupt("code lengths overflow") }
        return (try Huffman(lengths: Array(lengths[..<literalCount])), try Huffman(lengths: Array(lengths[literalCount...])))
    }

    static func inflateBlock(_ reader: inout BitReader, literals: Huffman, distances: Huffman, into output: inout [UInt8]) throws {
        while true {
            let symbol = try literals.decode(&reader)
            if symbol < 256 {
                output.append(UInt8(symbol))
            } else if symbol == 256 {
                return
            } else {
                let lengthCode = symbol - 257
                guard lengthCode < lengthBase.count else { throw Error.corrupt("invalid length code") }
                let length = lengthBase[lengthCode] + reader.bits(lengthExtra[lengthCode])
                let distanceCode = try distances.decode(&reader)
                guard distanceCode < distanceBase.count else { throw Error.corrupt("invalid distance code") }
                let distance = distanceBase[distanceCode] + reader.bits(distanceExtra[distanceCode])
                guard distance <= output.count else { throw Error.corrupt("distance reaches before the start") }
                // Copied one byte at a time: a match may overlap the bytes it is producing.
                let start = output.count - distance
                for i in 0..<length { output.append(output[start + i]) }
            }
            if reader.overrun { throw Error.corrupt("input ends inside a block") }
        }
    }

    // MARK: - CRC-32

    static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// CRC-32 (ISO 3309, polynomial 0xEDB88320 reflected), as in the gzip trailer.
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return ~crc
    }
}
