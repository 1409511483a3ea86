import CZlib

/// Reads a gzip file (RFC 1952) with zlib, for the bundled `bpe_simple_vocab_16e6.txt.gz`.
///
/// zlib checks the trailer's CRC-32 and length, so a damaged resource is an error, never a wrong
/// vocabulary.
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
    /// - Throws: `.notGzip` when `bytes` does not start with a gzip header, `.corrupt` (with zlib's
    ///   reason) for damaged or cut-off data, a failed CRC-32 or length check, or bytes after the member.
    static func decompress(_ bytes: [UInt8]) throws -> [UInt8] {
        // 10-byte header + 8-byte trailer at least; magic 1f 8b; method 8 (deflate).
        guard bytes.count >= 18, bytes[0] == 0x1F, bytes[1] == 0x8B, bytes[2] == 8 else { throw Error.notGzip }

        var stream = z_stream()
        // inflateInit2(&stream, 16 + MAX_WBITS) is a C macro: window bits 16 + 15 means "gzip wrapper,
        // 32 KiB window".
        guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Error.corrupt("zlib could not start (\(reason(stream)))")
        }
        defer { inflateEnd(&stream) }

        var output: [UInt8] = []
        output.reserveCapacity(bytes.count * 2)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var status = Z_OK
        var remaining = 0
        bytes.withUnsafeBufferPointer { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.avail_in = uInt(input.count)
            repeat {
                status = chunk.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(out.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                output.append(contentsOf: chunk[..<(chunk.count - Int(stream.avail_out))])
            } while status == Z_OK
            remaining = Int(stream.avail_in)
        }
        switch status {
        case Z_STREAM_END:
            guard remaining == 0 else { throw Error.corrupt("\(remaining) bytes after the end of the gzip data") }
            return output
        case Z_BUF_ERROR:  // no progress possible: the input ended inside the stream
            throw Error.corrupt("the file ends before the end of the compressed data (truncated?)")
        default:
            throw Error.corrupt(reason(stream))
        }
    }

    /// zlib's message for the last error of `stream`.
    private static func reason(_ stream: z_stream) -> String {
        stream.msg.map { String(cString: $0) } ?? "zlib error"
    }
}
