import Foundation

/// The directory of a zip archive whose entries are stored uncompressed, as `torch.save` writes
/// them (PyTorch's `PyTorchStreamWriter`, over miniz: every entry stored, aligned to 64 bytes by
/// padding in the local header's extra field, sizes in a data descriptor, zip64 end records).
///
/// The central directory is the authority, as in every zip reader: the local headers of torch's
/// archives carry zero sizes. Refused: anything but a single-disk archive whose end record ends the
/// file; a central directory or an entry reaching past its end; a local header that is missing or
/// names another file; entries that overlap; names that are absolute, climb with `..` or repeat;
/// compressed or encrypted entries. Nothing is ever inflated, so a zip bomb is refused by
/// construction. PKWARE's APPNOTE.TXT (4.3.x, 4.4.x, 4.5.3) gives the layouts parsed here.
struct StoredZip {
    struct Entry: Equatable {
        let name: String
        /// The entry's bytes in the file.
        let data: Range<Int>
        let crc32: UInt32
        /// Where its local header starts: the entry occupies `localHeader..<data.upperBound`.
        let localHeader: Int
    }

    enum Failure: Error, Equatable {
        case damaged(String)
        case unsafeName(String)
        case duplicate(String)
        case compressed(entry: String, method: Int)
        case encrypted(entry: String)
    }

    let entries: [Entry]
    private let index: [String: Int]

    func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    private static let endRecordSize = 22, zip64LocatorSize = 20, zip64EndSize = 56
    private static let centralHeaderSize = 46, localHeaderSize = 30

    init(_ bytes: UnsafeRawBufferPointer) throws {
        let size = bytes.count
        let reader = ByteReader(bytes)

        // End of central directory: the last 22 bytes, or more if it has a comment. Its comment must
        // run exactly to the end of the file, so trailing bytes cannot hide behind a second record.
        var end: Int?
        if size >= Self.endRecordSize {
            var at = size - Self.endRecordSize
            let lowest = max(0, size - Self.endRecordSize - 0xFFFF)
            while at >= lowest {
                if reader.u32(at) == 0x0605_4B50, at + Self.endRecordSize + Int(reader.u16(at + 20)) == size {
                    end = at
                    break
                }
                at -= 1
            }
        }
        guard let end else { throw Failure.damaged("it has no end-of-central-directory record (truncated, or not a zip archive)") }
        guard reader.u16(end + 4) == 0, reader.u16(end + 6) == 0 else {
            throw Failure.damaged("it is a multi-disk archive")
        }
        var count = UInt64(reader.u16(end + 10))
        var directorySize = UInt64(reader.u32(end + 12))
        var directoryOffset = UInt64(reader.u32(end + 16))
        var directoryLimit = end  // the central directory must end before the end records

        // Zip64: a locator just before the end record points at the zip64 end record, whose
        // 64-bit counts replace the 32-bit ones (miniz writes it for every torch archive).
        let locator = end - Self.zip64LocatorSize
        if locator >= 0, reader.u32(locator) == 0x0706_4B50 {
            guard reader.u32(locator + 4) == 0, reader.u32(locator + 16) <= 1 else { throw Failure.damaged("it is a multi-disk archive") }
            let recordOffset = reader.u64(locator + 8)
            guard locator >= Self.zip64EndSize, recordOffset <= UInt64(locator - Self.zip64EndSize), reader.u32(Int(recordOffset)) == 0x0606_4B50 else {
                throw Failure.damaged("its zip64 end record is missing or out of place")
            }
            let record = Int(recordOffset)
            guard reader.u32(record + 16) == 0, reader.u32(record + 20) == 0 else { throw Failure.damaged("it is a multi-disk archive") }
            let count64 = reader.u64(record + 32), size64 = reader.u64(record + 40), offset64 = reader.u64(record + 48)
            // The 32-bit fields hold either the same values or the "see zip64" marks.
            guard count == 0xFFFF || count == count64, directorySize == 0xFFFF_FFFF || directorySize == size64,
                  directoryOffset == 0xFFFF_FFFF || directoryOffset == offset64 else {
                throw Failure.damaged("its end record and zip64 end record disagree")
            }
            (count, directorySize, directoryOffset) = (count64, size64, offset64)
            directoryLimit = record
        }
        guard directoryOffset <= UInt64(directoryLimit), directorySize <= UInt64(directoryLimit) - directoryOffset else {
            throw Failure.damaged("its central directory (\(directorySize) bytes at \(directoryOffset)) reaches past the end records at \(directoryLimit): the directory is truncated")
        }
        let directory = Int(directoryOffset)..<(Int(directoryOffset) + Int(directorySize))
        guard count <= UInt64(directory.count / Self.centralHeaderSize) else {
            throw Failure.damaged("it declares \(count) entries, more than its \(directory.count)-byte central directory can hold")
        }

        var entries: [Entry] = []
        entries.reserveCapacity(Int(count))
        var index: [String: Int] = [:]
        var at = directory.lowerBound
        for number in 0..<Int(count) {
            guard directory.upperBound - at >= Self.centralHeaderSize, reader.u32(at) == 0x0201_4B50 else {
                throw Failure.damaged("central directory entry \(number) is truncated or missing")
            }
            let flags = reader.u16(at + 8), method = Int(reader.u16(at + 10))
            let crc = reader.u32(at + 16)
            var compressed = UInt64(reader.u32(at + 20)), uncompressed = UInt64(reader.u32(at + 24))
            let nameLength = Int(reader.u16(at + 28)), extraLength = Int(reader.u16(at + 30)), commentLength = Int(reader.u16(at + 32))
            var disk = UInt64(reader.u16(at + 34))
            var local = UInt64(reader.u32(at + 42))
            let variable = at + Self.centralHeaderSize
            guard nameLength + extraLength + commentLength <= directory.upperBound - variable else {
                throw Failure.damaged("central directory entry \(number) is truncated")
            }
            let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[variable..<(variable + nameLength)])
            guard let name = String(validating: nameBytes, as: UTF8.self) else {
                throw Failure.damaged("the name of entry \(number) is not valid UTF-8")
            }
            // Zip64 extended information: the 64-bit values of exactly the fields marked 0xFFFFFFFF, in this order.
            var extra = variable + nameLength
            let extraEnd = extra + extraLength
            while extraEnd - extra >= 4 {
                let id = reader.u16(extra), length = Int(reader.u16(extra + 2))
                guard length <= extraEnd - extra - 4 else { throw Failure.damaged("the extra field of '\(shown(name))' is truncated") }
                if id == 0x0001 {
                    var field = extra + 4
                    func next64() throws -> UInt64 {
                        guard field + 8 <= extra + 4 + length else { throw Failure.damaged("the zip64 field of '\(shown(name))' is truncated") }
                        defer { field += 8 }
                        return reader.u64(field)
                    }
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try next64() }
                    if compressed == 0xFFFF_FFFF { compressed = try next64() }
                    if local == 0xFFFF_FFFF { local = try next64() }
                    if disk == 0xFFFF {
                        guard field + 4 <= extra + 4 + length else { throw Failure.damaged("the zip64 field of '\(shown(name))' is truncated") }
                        disk = UInt64(reader.u32(field))
                    }
                }
                extra += 4 + length
            }
            at = extraEnd + commentLength

            try Self.checkName(name)
            guard disk == 0 else { throw Failure.damaged("'\(shown(name))' starts on another disk") }
            guard flags & 0x41 == 0 else { throw Failure.encrypted(entry: name) }  // bit 0: encrypted, bit 6: strong encryption
            guard method == 0 else { throw Failure.compressed(entry: name, method: method) }
            guard compressed == uncompressed else {
                throw Failure.damaged("'\(shown(name))' is stored but its sizes differ (\(compressed) and \(uncompressed) bytes)")
            }

            // The local header: where the data starts, after its own name and extra field.
            let directoryStart = UInt64(directory.lowerBound)
            guard local <= directoryStart, directoryStart - local >= UInt64(Self.localHeaderSize) else {
                throw Failure.damaged("the local header of '\(shown(name))' (at \(local)) is past the entries")
            }
            let header = Int(local)
            guard reader.u32(header) == 0x0403_4B50 else { throw Failure.damaged("the local header of '\(shown(name))' is missing") }
            guard reader.u16(header + 8) == 0 else { throw Failure.compressed(entry: name, method: Int(reader.u16(header + 8))) }
            let localNameLength = Int(reader.u16(header + 26)), localExtraLength = Int(reader.u16(header + 28))
            let dataStart = header + Self.localHeaderSize + localNameLength + localExtraLength
            guard dataStart <= directory.lowerBound, compressed <= UInt64(directory.lowerBound - dataStart) else {
                throw Failure.damaged("'\(shown(name))' (\(compressed) bytes at \(header)) reaches past the entries into the central directory or past the end of the file")
            }
            guard localNameLength == nameLength,
                  memcmp(bytes.baseAddress! + header + Self.localHeaderSize, nameBytes.baseAddress!, nameLength) == 0 else {
                throw Failure.damaged("the local header of '\(shown(name))' names another entry")
            }
            guard index.updateValue(entries.count, forKey: name) == nil else { throw Failure.duplicate(name) }
            entries.append(Entry(name: name, data: dataStart..<(dataStart + Int(compressed)), crc32: crc, localHeader: header))
        }

        // No two entries share bytes (the classic overlapping-entries zip bomb, and a way to give one
        // name another's data).
        let byStart = entries.sorted { $0.localHeader < $1.localHeader }
        for (a, b) in zip(byStart, byStart.dropFirst()) where a.data.upperBound > b.localHeader {
            throw Failure.damaged("entries '\(shown(a.name))' and '\(shown(b.name))' overlap")
        }
        self.entries = entries
        self.index = index
    }

    /// Refuses absolute names and any that climb out of the archive, in either separator.
    private static func checkName(_ name: String) throws {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        if name.isEmpty || name.hasPrefix("/") || name.hasPrefix("\\") || name.contains("\0")
            || name.split(separator: "\\", omittingEmptySubsequences: false).contains("..")
            || parts.contains("..") || (name.count >= 2 && name.dropFirst().first == ":") {
            throw Failure.unsafeName(name)
        }
    }
}

/// Little-endian loads at byte offsets the caller has bounds-checked against the buffer.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Zero past the end, so a signature check at a short tail simply fails.
    func u16(_ at: Int) -> UInt16 {
        guard at >= 0, at <= bytes.count - 2 else { return 0 }
        return UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self))
    }
    func u32(_ at: Int) -> UInt32 {
        guard at >= 0, at <= bytes.count - 4 else { return 0 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }
    func u64(_ at: Int) -> UInt64 {
        guard at >= 0, at <= bytes.count - 8 else { return 0 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }
}

/// CRC-32 (ISO-HDLC, the zip and PNG checksum: reflected polynomial 0xEDB88320), for the entries
/// small enough to check in full (`data.pkl`).
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return c ^ 0xFFFF_FFFF
    }
}
