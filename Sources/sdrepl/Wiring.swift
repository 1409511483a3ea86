import SDScript

// The one place where the engine and the Imaging module are plugged into the REPL. Until they land,
// everything here is nil and the commands that need them say so (`gen` tells where it looked for a
// model and how to get one; `save`, `load` and previews say the part is not in this build).

/// Encodes `image` as a sixel stream no larger than `maxWidth` x `maxHeight` pixels (keeping its
/// aspect ratio), ready to write to the terminal: Imaging's encoder on libsixel.
typealias SixelEncoder = (_ image: RGBPixels, _ maxWidth: Int, _ maxHeight: Int) throws -> [UInt8]

enum Wiring {
    /// The session's parts. To wire the engine: `generatorLoader:` a `GeneratorLoader` over the pipeline;
    /// Imaging: `saver:`, `recipes:`, `styles:`; ModelStore: `models:`.
    static func components() -> Components {
        Components()
    }

    /// Imaging's sixel encoder.
    static let sixelEncoder: SixelEncoder? = nil
}
