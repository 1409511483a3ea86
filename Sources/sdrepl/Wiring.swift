import Imaging
import SDScript

// The one place where the session's parts are chosen: the engine, ModelStore, Imaging's writer and
// styles are SDScript's defaults; the terminal adds the sixel encoder.

/// Encodes `image` as a sixel stream no larger than `maxWidth` x `maxHeight` pixels (keeping its
/// aspect ratio), ready to write to the terminal.
typealias SixelEncoder = (_ image: RGBImage, _ maxWidth: Int, _ maxHeight: Int) throws -> [UInt8]

enum Wiring {
    /// The session's parts, with the saver's notes (hashing a checkpoint) shown on `io`.
    static func components(io: SessionIO) -> Components {
        var components = Components()
        components.saver = ImagingSaver(note: { [weak io] in io?.status($0) })
        if let problem = components.styles.loadProblem { io.emit(.warning("styles: \(problem)")) }
        return components
    }

    /// Imaging's encoder on libsixel.
    static let sixelEncoder: SixelEncoder = { image, maxWidth, maxHeight in
        try Sixel.encode(image, boxWidth: maxWidth, boxHeight: maxHeight)
    }
}
