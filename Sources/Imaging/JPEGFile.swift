import CImagingShim
import Foundation

/// One JPEG marker segment: an APPn (0xE0...0xEF) or COM (0xFE) marker and its payload.
public struct JPEGSegment: Equatable, Sendable {
    public static let app1: UInt8 = 0xE1
    public static let comment: UInt8 = 0xFE
    /// The largest payload a segment can carry (its 16-bit length counts itself).
    public static let maxPayload = 65533

    public var marker: UInt8
    public var data: [UInt8]

    public init(marker: UInt8, data: [UInt8]) {
        self.marker = marker
        self.data = data
    }

    /// XMP's APP1 signature, `http://ns.adobe.com/xap/1.0/` and a NUL.
    public static let xmpSignature: [UInt8] = Array("http://ns.adobe.com/xap/1.0/".utf8) + [0]

    /// An APP1 segment holding an XMP packet.
    /// - Throws: `ImagingError.metadataTooLarge` if the packet does not fit one segment.
    public static func xmp(_ packet: String) throws -> JPEGSegment {
        let data = xmpSignature + Array(packet.utf8)
        guard data.count <= maxPayload else {
            throw ImagingError.metadataTooLarge(what: "XMP packet", bytes: data.count, limit: maxPayload)
        }
        return JPEGSegment(marker: app1, data: data)
    }

    /// The XMP packet, if this is an XMP APP1 segment.
    public var xmpPacket: String? {
        guard marker == Self.app1, data.starts(with: Self.xmpSignature) else { return nil }
        return String(decoding: data.dropFirst(Self.xmpSignature.count), as: UTF8.self)
    }
}

/// A decoded JPEG: pixels as RGB8 and every APPn and COM segment in file order.
public struct DecodedJPEG: Sendable {
    public var image: RGBImage
    public var segments: [JPEGSegment]

    /// The infotext in the EXIF UserComment, if there is one.
    public var userComment: String? {
        segments.lazy.compactMap { $0.marker == JPEGSegment.app1 ? EXIF.userComment(inAPP1: $0.data) : nil }.first
    }

    /// The EXIF Orientation (1–8), if there is one.
    public var orientation: Int? {
        segments.lazy.compactMap { $0.marker == JPEGSegment.app1 ? EXIF.orientation(inAPP1: $0.data) : nil }.first
    }

    /// The first XMP packet.
    public var xmpPacket: String? {
        segments.lazy.compactMap(\.xmpPacket).first
    }

    /// The text of every COM segment (decoded as UTF-8).
    public var comments: [String] {
        segments.filter { $0.marker == JPEGSegment.comment }.map { String(decoding: $0.data, as: UTF8.self) }
    }
}

/// JPEG encoding and decoding through libjpeg(-turbo) (via the C shim that owns libjpeg's setjmp).
public enum JPEGFile {
    /// The default quality. A1111's default is 80; 92 keeps fine detail of 512-pixel images
    /// (chroma 4:2:0, like Pillow's default) at about a third of the PNG's size.
    public static let defaultQuality = 92

    /// Encodes an image as a baseline JPEG with the given segments after the JFIF header.
    /// - Parameter quality: 1...100 (clamped).
    /// - Throws: `ImagingError.metadataTooLarge` for a segment over 65533 bytes,
    ///   `ImagingError.encodeFailed` with libjpeg's message otherwise.
    public static func encode(_ image: RGBImage, quality: Int = defaultQuality, segments: [JPEGSegment]) throws -> [UInt8] {
        for segment in segments where segment.data.count > JPEGSegment.maxPayload {
            throw ImagingError.metadataTooLarge(
                what: String(format: "JPEG segment 0x%02X", segment.marker), bytes: segment.data.count,
                limit: JPEGSegment.maxPayload)
        }
        // Keep every payload alive in one buffer while the C call reads it.
        let blob = segments.flatMap(\.data)
        return try shimEncoded(format: "JPEG") { out, length, message, capacity in
            blob.withUnsafeBufferPointer { blobBytes in
                var offset = 0
                let markers: [sdr_jpeg_marker] = segments.map { segment in
                    defer { offset += segment.data.count }
                    return sdr_jpeg_marker(
                        marker: Int32(segment.marker), data: blobBytes.baseAddress.map { $0 + offset },
                        length: UInt32(segment.data.count))
                }
                return image.pixels.withUnsafeBufferPointer { pixels in
                    sdr_jpeg_encode(
                        pixels.baseAddress, UInt32(image.width), UInt32(image.height), Int32(min(max(quality, 1), 100)),
                        markers, Int32(markers.count), &out, &length, message, capacity)
                }
            }
        }
    }

    /// Decodes a JPEG to RGB8 and returns its APPn and COM segments.
    /// - Parameter path: used only in error messages.
    /// - Throws: `ImagingError.readFailed` with libjpeg's message.
    public static func decode(_ data: [UInt8], path: String = "JPEG data") throws -> DecodedJPEG {
        var decoded = sdr_jpeg_image()
        if let failure = shimFailure({ message, capacity in
            data.withUnsafeBufferPointer { sdr_jpeg_decode($0.baseAddress, $0.count, &decoded, message, capacity) }
        }) {
            throw ImagingError.readFailed(path: path, reason: failure)
        }
        defer { sdr_jpeg_image_free(&decoded) }
        let count = Int(decoded.width) * Int(decoded.height) * 3
        let image = try RGBImage(
            width: Int(decoded.width), height: Int(decoded.height),
            pixels: Array(UnsafeBufferPointer(start: decoded.pixels, count: count)))
        var segments: [JPEGSegment] = []
        for i in 0..<Int(decoded.marker_count) {
            let m = decoded.markers[i]
            segments.append(JPEGSegment(
                marker: UInt8(truncatingIfNeeded: m.marker),
                data: Array(UnsafeBufferPointer(start: m.data, count: Int(m.length)))))
        }
        return DecodedJPEG(image: image, segments: segments)
    }
}
