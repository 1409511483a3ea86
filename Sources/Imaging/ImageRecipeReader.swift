import FileErrors
import Foundation

/// What an image file says about how it was made, from sdrepl's own keys or A1111's.
public struct StoredRecipe: Equatable, Sendable {
    public enum Source: Equatable, Sendable {
        /// sdrepl's PNG keys (`Prompt`, `Style`, ...) were present.
        case sdrepl
        /// Only an infotext: a PNG `parameters` chunk or a JPEG EXIF UserComment (A1111, or an sdrepl JPEG).
        case infotext
    }

    public var source: Source
    /// The parsed infotext; its prompts are the ones the model saw, style applied.
    public var recipe: ImageRecipe
    /// The infotext as stored.
    public var infotext: String?
    /// sdrepl keys, when present.
    public var typedPrompt: String?
    public var typedNegativePrompt: String?
    public var style: String?
    public var timestamp: String?
    public var settingsJSON: String?
    /// The AI-origin watermark text (PNG `AI_Watermark` or JPEG COM), if any.
    public var watermark: String?
    /// The XMP packet, if any.
    public var xmpPacket: String?

    /// The prompt, negative prompt and style that regenerate the image: the typed prompts with
    /// their style when sdrepl's keys are present, otherwise the infotext's prompts with style
    /// `none` (they already contain any style, and applying it again would change them).
    public var promptToLoad: (prompt: String, negativePrompt: String, style: String) {
        if let typedPrompt, let style {
            return (typedPrompt, typedNegativePrompt ?? "", style)
        }
        return (recipe.prompt, recipe.negativePrompt, "none")
    }

    /// Whether the XMP declares the image AI-generated, wholly or in part.
    public var declaresAIOrigin: Bool { digitalSourceType != nil }

    /// The IPTC source type the XMP declares, when it is one of an AI-made picture's.
    public var digitalSourceType: DigitalSourceType? {
        guard let xmpPacket else { return nil }
        return DigitalSourceType.allCases.first { xmpPacket.contains("\"" + $0.uri + "\"") }
    }
}

/// Reads recipes back from PNG and JPEG files, sdrepl's or A1111's.
public enum ImageRecipeReader {
    /// Reads the recipe of the image at `url`; the format is sniffed from the file's first bytes.
    /// - Throws: `ImagingError.readFailed` for a missing, unreadable or corrupt file or an
    ///   unknown format; `ImagingError.noRecipe` when the file carries no infotext.
    public static func read(_ url: URL) throws -> StoredRecipe {
        try read(contents(url), path: url.path)
    }

    /// The file's bytes.
    static func contents(_ url: URL) throws -> [UInt8] {
        if let reason = FileErrorText.specialFileReason(url.path) {
            throw ImagingError.readFailed(path: url.path, reason: reason + "; give a PNG or JPEG file")
        }
        do {
            return [UInt8](try Data(contentsOf: url))
        } catch {
            throw ImagingError.readFailed(path: url.path, reason: FileErrorText.reason(error))
        }
    }

    /// The pixels of a PNG or JPEG (sniffed from its first bytes), for an init image.
    /// - Throws: `ImagingError.readFailed` naming the file for a missing, unreadable or corrupt file.
    /// - Parameter turnedByEXIF: turn a JPEG as its EXIF orientation says (see `pixelsAndAlpha`).
    public static func pixels(_ url: URL, turnedByEXIF: Bool = false) throws -> RGBImage {
        try pixelsAndAlpha(url, turnedByEXIF: turnedByEXIF).image
    }

    /// The pixels of a PNG or JPEG and the PNG's alpha when it has any, for a mask.
    /// - Throws: `ImagingError.readFailed` naming the file for a missing, unreadable or corrupt file.
    /// - Parameter turnedByEXIF: turn a JPEG as its EXIF orientation says to show it (a phone's
    ///   portrait photo is stored sideways), as A1111 does with `ImageOps.exif_transpose`; without,
    ///   the pixels as stored, as sdrepl read them before (which old transcripts replay).
    /// - Returns: also the JPEG's EXIF orientation (1–8), or nil when it has none.
    public static func pixelsAndAlpha(_ url: URL, turnedByEXIF: Bool = false) throws -> (image: RGBImage, alpha: [UInt8]?, exifOrientation: Int?) {
        let data = try contents(url)
        if data.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            let png = try PNGFile.decode(data, path: url.path)
            return (png.image, png.alpha, nil)
        }
        if data.starts(with: [0xFF, 0xD8]) {
            let jpeg = try JPEGFile.decode(data, path: url.path)
            return (turnedByEXIF ? jpeg.image.oriented(exif: jpeg.orientation ?? 1) : jpeg.image, nil, jpeg.orientation)
        }
        throw ImagingError.readFailed(path: url.path, reason: "not a PNG or JPEG file")
    }

    /// Reads a recipe from file bytes. `path` is used in error messages.
    public static func read(_ data: [UInt8], path: String) throws -> StoredRecipe {
        if data.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            return try recipe(from: PNGFile.decode(data, path: path), path: path)
        }
        if data.starts(with: [0xFF, 0xD8]) {
            return try recipe(from: JPEGFile.decode(data, path: path), path: path)
        }
        throw ImagingError.readFailed(path: path, reason: "not a PNG or JPEG file")
    }

    static func recipe(from png: DecodedPNG, path: String) throws -> StoredRecipe {
        typealias Key = ImageMetadata.Key
        let infotext = png.text(Key.parameters)
        let typedPrompt = png.text(Key.prompt)
        guard infotext != nil || typedPrompt != nil else { throw ImagingError.noRecipe(path: path) }
        var recipe = infotext.map(Infotext.parse) ?? ImageRecipe(prompt: typedPrompt ?? "")
        if infotext == nil {
            recipe.negativePrompt = png.text(Key.negativePrompt) ?? ""
        }
        return StoredRecipe(
            source: typedPrompt != nil ? .sdrepl : .infotext, recipe: recipe, infotext: infotext,
            typedPrompt: typedPrompt, typedNegativePrompt: png.text(Key.negativePrompt), style: png.text(Key.style),
            timestamp: png.text(Key.timestamp), settingsJSON: png.text(Key.settings), watermark: png.text(Key.watermark),
            xmpPacket: png.text(ImageMetadata.xmpKeyword))
    }

    static func recipe(from jpeg: DecodedJPEG, path: String) throws -> StoredRecipe {
        guard let infotext = jpeg.userComment else { throw ImagingError.noRecipe(path: path) }
        typealias Key = ImageMetadata.Key
        // sdrepl's own keys, as the PNG's text chunks hold them (`ImageMetadata.jpegSdreplKeys`).
        let prefix = ImageMetadata.jpegKeysPrefix
        let keys = jpeg.comments.first { $0.hasPrefix(prefix) }
            .flatMap { try? JSONSerialization.jsonObject(with: Data($0.dropFirst(prefix.count).utf8)) as? [String: String] } ?? [:]
        let typedPrompt = keys[Key.prompt]
        return StoredRecipe(
            source: typedPrompt != nil ? .sdrepl : .infotext, recipe: Infotext.parse(infotext), infotext: infotext,
            typedPrompt: typedPrompt, typedNegativePrompt: keys[Key.negativePrompt], style: keys[Key.style],
            timestamp: keys[Key.timestamp], settingsJSON: keys[Key.settings],
            watermark: jpeg.comments.first { $0.contains("AI Origin") } ?? jpeg.comments.first { !$0.hasPrefix(prefix) },
            xmpPacket: jpeg.xmpPacket)
    }
}
