import Foundation

/// Everything sdrepl records in a saved image, and how it lays that out in PNG and JPEG.
///
/// PNG text chunks (tEXt when Latin-1, else UTF-8 iTXt, as Pillow's `add_text` does for A1111):
///
/// | keyword             | value                                                            |
/// |---------------------|------------------------------------------------------------------|
/// | `parameters`        | A1111 infotext of `recipe` (prompts as the model saw them)       |
/// | `Prompt`            | the prompt as typed, before the style                            |
/// | `NegativePrompt`    | the negative prompt as typed                                     |
/// | `Style`             | the style name (`none` when none)                                |
/// | `Timestamp`         | ISO 8601, UTC, `YYYY-MM-DDThh:mm:ssZ`                           |
/// | `Parameters`        | JSON of every setting                                            |
/// | `AI_Watermark`      | `Generated using Stable Diffusion v1.5 (AI Origin Watermark)`    |
/// | `XML:com.adobe.xmp` | XMP packet (always iTXt, as the XMP spec asks)                   |
///
/// JPEG: the infotext as EXIF UserComment (APP1), the XMP packet (APP1), the watermark (COM).
/// JPEG has no room for the other keys; its infotext alone regenerates the image. A segment holds
/// 64 KB, about 32,700 UTF-16 units of comment: a longer infotext is cut in the prompt (then the
/// negative prompt), never in its parameters line (see `jpegUserComment`).
///
/// The XMP packet carries IPTC `Iptc4xmpExt:DigitalSourceType` (`trainedAlgorithmicMedia`, or
/// `compositeWithTrainedAlgorithmicMedia` for an inpainted photo), the field platforms read to label
/// AI-generated images, plus `xmp:CreatorTool`, `xmp:CreateDate` and the watermark sentence as
/// `dc:description`.
public struct ImageMetadata: Equatable, Sendable {
    public static let aiWatermark = "Generated using Stable Diffusion v1.5 (AI Origin Watermark)"
    public static let digitalSourceType = DigitalSourceType.trainedAlgorithmicMedia.uri
    public static let xmpKeyword = "XML:com.adobe.xmp"

    /// The PNG keywords sdrepl writes besides `parameters` and the XMP.
    public enum Key {
        public static let parameters = "parameters"
        public static let prompt = "Prompt"
        public static let negativePrompt = "NegativePrompt"
        public static let style = "Style"
        public static let timestamp = "Timestamp"
        public static let settings = "Parameters"
        public static let watermark = "AI_Watermark"
    }

    public var recipe: ImageRecipe
    public var typedPrompt: String
    public var typedNegativePrompt: String
    public var style: String
    public var timestamp: Date
    /// JSON of every setting, stored verbatim under `Parameters`.
    public var settingsJSON: String
    public var watermark: String
    /// Further PNG text chunks after the table's (a grid sheet's `GridCells`).
    public var extraPNGChunks: [PNGTextChunk] = []
    /// What the XMP declares the picture to be.
    public var sourceType = DigitalSourceType.trainedAlgorithmicMedia

    /// - Parameters:
    ///   - recipe: the infotext fields; its prompts are the ones the model saw (style applied).
    ///   - typedPrompt: the prompt as typed; defaults to `recipe.prompt`.
    ///   - typedNegativePrompt: the negative prompt as typed; defaults to `recipe.negativePrompt`.
    ///   - style: the style name; defaults to `recipe.style` or `none`.
    ///   - settingsJSON: JSON text of every setting (see `settingsJSON(_:)` to make one).
    public init(
        recipe: ImageRecipe, typedPrompt: String? = nil, typedNegativePrompt: String? = nil, style: String? = nil,
        timestamp: Date = Date(), settingsJSON: String = "{}", watermark: String = ImageMetadata.aiWatermark
    ) {
        self.recipe = recipe
        self.typedPrompt = typedPrompt ?? recipe.prompt
        self.typedNegativePrompt = typedNegativePrompt ?? recipe.negativePrompt
        self.style = style ?? recipe.style ?? "none"
        self.timestamp = timestamp
        self.settingsJSON = settingsJSON
        self.watermark = watermark
    }

    /// JSON text (sorted keys, no escaped slashes) of a settings dictionary.
    /// - Throws: `ImagingError.encodeFailed` if a value is not a JSON type (string, number,
    ///   bool, null, array, dictionary).
    public static func settingsJSON(_ settings: [String: Any]) throws -> String {
        guard JSONSerialization.isValidJSONObject(settings) else {
            throw ImagingError.encodeFailed(format: "JSON", message: "settings contain a value that is not a JSON type")
        }
        let data = try JSONSerialization.data(withJSONObject: settings, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    /// The A1111 infotext of `recipe`.
    public var infotext: String { Infotext.render(recipe) }

    /// `timestamp` as ISO 8601 in UTC, whole seconds.
    public var timestampString: String { Self.iso8601(timestamp) }

    static func iso8601(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    /// The PNG text chunks, in the order of the table above.
    public var pngChunks: [PNGTextChunk] {
        [
            .text(Key.parameters, infotext),
            .text(Key.prompt, typedPrompt),
            .text(Key.negativePrompt, typedNegativePrompt),
            .text(Key.style, style),
            .text(Key.timestamp, timestampString),
            .text(Key.settings, settingsJSON),
            .text(Key.watermark, watermark),
            PNGTextChunk(kind: .iTXt, keyword: Self.xmpKeyword, text: xmpPacket),
        ] + extraPNGChunks
    }

    /// The infotext as the JPEG's EXIF UserComment holds it: all of it when it fits one segment;
    /// otherwise the prompt, then the negative prompt, is cut (ending in "…") to what fits, so the
    /// parameters line (seed, steps, sampler: what `load` needs) is always whole.
    public var jpegUserComment: String {
        let budget = EXIF.maxCommentUnits
        var cut = recipe
        var text = infotext
        // Each pass removes at least the excess; a second is needed only if the prompt was shorter.
        for _ in 0..<4 {
            let excess = text.utf16.count - budget
            if excess <= 0 { return text }
            if cut.prompt.utf16.count > excess {
                cut.prompt = Self.shortened(cut.prompt, by: excess)
            } else if cut.negativePrompt.utf16.count > excess {
                cut.negativePrompt = Self.shortened(cut.negativePrompt, by: excess)
            } else {
                cut.prompt = Self.shortened(cut.prompt, by: cut.prompt.utf16.count)
                cut.negativePrompt = Self.shortened(cut.negativePrompt, by: excess)
            }
            text = Infotext.render(cut)
        }
        // Only a parameters line over 32,000 characters gets here.
        return String(decoding: text.utf16.prefix(budget), as: UTF16.self)
    }

    /// Whether the JPEG's UserComment holds less than the whole infotext.
    public var jpegUserCommentIsCut: Bool { infotext.utf16.count > EXIF.maxCommentUnits }

    /// `text` less at least `units` UTF-16 units, cut at a character and ended with "…".
    private static func shortened(_ text: String, by units: Int) -> String {
        let keep = text.utf16.count - units - 1
        var result = ""
        var count = 0
        for character in text {
            let size = character.utf16.count
            if count + size > keep { break }
            result.append(character)
            count += size
        }
        return result + "…"
    }

    /// The JPEG segments: EXIF UserComment (cut to fit, see `jpegUserComment`), XMP, COM watermark.
    /// - Throws: `ImagingError.metadataTooLarge` when the XMP exceeds one segment.
    public func jpegSegments() throws -> [JPEGSegment] {
        var segments = [
            try EXIF.segment(userComment: jpegUserComment),
            try JPEGSegment.xmp(xmpPacket),
            JPEGSegment(marker: JPEGSegment.comment, data: Array(watermark.utf8)),
        ]
        if let keys = jpegSdreplKeys { segments.append(JPEGSegment(marker: JPEGSegment.comment, data: keys)) }
        return segments
    }

    /// What marks the JPEG comment that holds sdrepl's own keys.
    static let jpegKeysPrefix = "sdrepl-keys "

    /// sdrepl's own keys (the PNG's text chunks other than A1111's `parameters`), as a JSON object in
    /// a JPEG comment: the infotext has no spacing, eta or VAE tiling, so without them `load` of a
    /// JPEG would regenerate another picture. Nil when they do not fit one segment (a prompt of tens
    /// of thousands of characters); the JPEG then holds A1111's keys alone.
    var jpegSdreplKeys: [UInt8]? {
        let keys = [Key.prompt: typedPrompt, Key.negativePrompt: typedNegativePrompt, Key.style: style,
                    Key.timestamp: timestampString, Key.settings: settingsJSON]
        guard let json = try? JSONSerialization.data(withJSONObject: keys, options: [.sortedKeys]) else { return nil }
        let bytes = Array(Self.jpegKeysPrefix.utf8) + [UInt8](json)
        return bytes.count <= JPEGSegment.maxPayload ? bytes : nil
    }

    /// A complete XMP packet (`<?xpacket?>` wrapper, `x:xmpmeta`, one `rdf:Description`).
    public var xmpPacket: String {
        let tool = recipe.version.map { "\n    xmp:CreatorTool=\"\(Self.xmlEscape($0))\"" } ?? ""
        return """
            <?xpacket begin="\u{FEFF}" id="W5M0MpCehiHzreSzNTczkc9d"?>
            <x:xmpmeta xmlns:x="adobe:ns:meta/">
             <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
              <rdf:Description rdf:about=""
                xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
                xmlns:xmp="http://ns.adobe.com/xap/1.0/"
                xmlns:dc="http://purl.org/dc/elements/1.1/"
                Iptc4xmpExt:DigitalSourceType="\(sourceType.uri)"\(tool)
                xmp:CreateDate="\(timestampString)">
               <dc:description>
                <rdf:Alt>
                 <rdf:li xml:lang="x-default">\(Self.xmlEscape(watermark))</rdf:li>
                </rdf:Alt>
               </dc:description>
              </rdf:Description>
             </rdf:RDF>
            </x:xmpmeta>
            <?xpacket end="w"?>
            """
    }

    /// Escapes text for XML content and attributes; drops characters XML 1.0 forbids.
    static func xmlEscape(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            case _ where scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF: continue
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

/// IPTC's Digital Source Type vocabulary, the terms sdrepl's pictures can be
/// (https://cv.iptc.org/newscodes/digitalsourcetype/).
public enum DigitalSourceType: String, CaseIterable, Sendable {
    /// Made by a model: from text, from another image, or inpainting a picture that was itself made.
    case trainedAlgorithmicMedia
    /// A model's pixels composited with other media: inpainting a photo, whose unmasked pixels stay.
    case compositeWithTrainedAlgorithmicMedia

    public var uri: String { "http://cv.iptc.org/newscodes/digitalsourcetype/" + rawValue }
}
