import CImagingShim

// The C shims report a failure as a nonzero status with libpng's or libjpeg's message in a buffer,
// and hand encoded bytes back in a buffer of theirs; these read both the same way for each format.

/// Runs a shim call given a message buffer; returns the library's message when it failed, nil when not.
func shimFailure(_ call: (UnsafeMutablePointer<CChar>, Int) -> Int32) -> String? {
    var message = [CChar](repeating: 0, count: 512)
    let status = message.withUnsafeMutableBufferPointer { call($0.baseAddress!, $0.count) }
    return status == 0 ? nil : String(cString: message)
}

/// Runs a shim encoder given its output pointer, length and message buffer, and returns its bytes
/// (freeing the shim's buffer).
/// - Throws: `ImagingError.encodeFailed` with the library's message.
func shimEncoded(format: String,
                 _ call: (inout UnsafeMutablePointer<UInt8>?, inout Int, UnsafeMutablePointer<CChar>, Int) -> Int32) throws -> [UInt8] {
    var out: UnsafeMutablePointer<UInt8>?
    var length = 0
    if let failure = shimFailure({ call(&out, &length, $0, $1) }) {
        throw ImagingError.encodeFailed(format: format, message: failure)
    }
    guard let out else { throw ImagingError.encodeFailed(format: format, message: "the encoder returned no data") }
    defer { sdr_free(out) }
    return Array(UnsafeBufferPointer(start: out, count: length))
}
