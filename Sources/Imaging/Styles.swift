import FileErrors
import Foundation

/// A named prompt style: a template for the prompt and an addition to the negative prompt.
///
/// Applied with A1111's rule (`modules/styles.py` `merge_prompts`), to the prompt and the negative
/// prompt alike: if the style text contains `{prompt}`, every `{prompt}` is replaced by the
/// user's text; otherwise the stripped user text and the stripped style text are joined with
/// `", "`, leaving out whichever is empty.
public struct PromptStyle: Equatable, Sendable {
    public var name: String
    /// The prompt template (`{prompt}` marks the user's text) or text to append.
    public var prompt: String
    /// The negative template or text to append.
    public var negativePrompt: String
    /// `built-in`, or `FILE:LINE` of the CSV row it came from.
    public var origin: String

    public init(name: String, prompt: String, negativePrompt: String, origin: String = "built-in") {
        self.name = name
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.origin = origin
    }

    /// Whether this is the identity style, which leaves the prompts exactly as typed.
    public var isNone: Bool { name.lowercased() == "none" && prompt.isEmpty && negativePrompt.isEmpty }

    /// The prompts the model sees. `none` returns them unchanged (A1111 would strip them).
    public func apply(prompt: String, negativePrompt: String) -> (prompt: String, negativePrompt: String) {
        if isNone { return (prompt, negativePrompt) }
        return (Self.merge(style: self.prompt, into: prompt), Self.merge(style: self.negativePrompt, into: negativePrompt))
    }

    /// A1111's `merge_prompts(style_prompt, prompt)`.
    public static func merge(style: String, into prompt: String) -> String {
        if style.contains("{prompt}") {
            return style.replacingOccurrences(of: "{prompt}", with: prompt)
        }
        return [Infotext.pythonStrip(prompt), Infotext.pythonStrip(style)].filter { !$0.isEmpty }.joined(separator: ", ")
    }
}

/// The styles a session can use: the built-in presets, then those of a user `styles.csv`
/// (a user style replaces a built-in of the same name).
public struct StyleLibrary: Sendable {
    /// All styles, built-ins first, in the order `styles` lists them.
    public private(set) var styles: [PromptStyle]

    /// The built-in presets only.
    public init() {
        styles = Self.builtIn
    }

    /// The built-ins plus the styles of an A1111-format CSV file.
    /// - Throws: `ImagingError.readFailed` if the file cannot be read, `ImagingError.stylesFile`
    ///   with the line of the problem if it is not a valid styles file.
    public init(userStylesFile url: URL) throws {
        self.init()
        try add(Self.load(url))
    }

    /// Adds styles, replacing any of the same name (case-insensitively).
    public mutating func add(_ newStyles: [PromptStyle]) {
        for style in newStyles {
            if let i = styles.firstIndex(where: { $0.name.lowercased() == style.name.lowercased() }) {
                styles[i] = style
            } else {
                styles.append(style)
            }
        }
    }

    /// The style called `name` (exact match first, then case-insensitive), or nil.
    public func style(named name: String) -> PromptStyle? {
        styles.first { $0.name == name } ?? styles.first { $0.name.lowercased() == name.lowercased() }
    }

    public var names: [String] { styles.map(\.name) }

    // MARK: - Built-in presets

    /// The presets every session has. `enhance` is the original app's quality descriptors; the
    /// others put the prompt into a medium-specific template and steer away from other media.
    /// Negative additions have no `{prompt}`, so they are appended after a comma, or stand alone
    /// when the user gave no negative prompt.
    public static let builtIn: [PromptStyle] = [
        PromptStyle(name: "none", prompt: "", negativePrompt: ""),
        PromptStyle(
            name: "enhance",
            prompt: "{prompt}, highly detailed, cinematic lighting, sharp focus, intricate details, professional composition, masterpiece",
            negativePrompt: "blurry, low quality, lowres, jpeg artifacts, deformed, disfigured, watermark, text"),
        PromptStyle(
            name: "cinematic",
            prompt: "cinematic film still of {prompt}, shallow depth of field, anamorphic, film grain, dramatic lighting, moody, epic composition",
            negativePrompt: "cartoon, anime, illustration, painting, drawing, text, deformed, ugly"),
        PromptStyle(
            name: "photographic",
            prompt: "professional photograph of {prompt}, 35mm, natural light, bokeh, highly detailed, realistic",
            negativePrompt: "drawing, painting, illustration, cartoon, cgi, render, blurry, deformed"),
        PromptStyle(
            name: "anime",
            prompt: "anime artwork of {prompt}, anime style, key visual, vibrant colors, clean lines, studio anime, highly detailed",
            negativePrompt: "photo, photorealistic, realism, 3d render, deformed, low contrast"),
        PromptStyle(
            name: "digital-art",
            prompt: "digital painting of {prompt}, concept art, illustrative, painterly, trending digital artwork, highly detailed",
            negativePrompt: "photo, photorealistic, low quality, blurry"),
        PromptStyle(
            name: "oil-painting",
            prompt: "oil painting of {prompt}, visible brushstrokes, impasto, rich colors, canvas texture, fine art",
            negativePrompt: "photo, photorealistic, 3d render, digital art, smooth, blurry"),
        PromptStyle(
            name: "watercolor",
            prompt: "watercolor painting of {prompt}, soft washes, flowing colors, wet on wet, paper texture, delicate",
            negativePrompt: "photo, photorealistic, 3d render, harsh lines, oversaturated"),
        PromptStyle(
            name: "pixel-art",
            prompt: "pixel art of {prompt}, 16-bit, retro game sprite, limited palette, crisp pixels",
            negativePrompt: "photo, realistic, smooth shading, blurry, noisy, high resolution detail"),
        PromptStyle(
            name: "3d-render",
            prompt: "3d render of {prompt}, octane render, physically based rendering, volumetric lighting, highly detailed",
            negativePrompt: "painting, sketch, drawing, flat, low poly, blurry, noisy"),
        PromptStyle(
            name: "fantasy",
            prompt: "fantasy art of {prompt}, magical, ethereal glow, epic, majestic, dreamlike, intricate, highly detailed",
            negativePrompt: "photographic, mundane, modern, text, deformed, ugly"),
        PromptStyle(
            name: "line-art",
            prompt: "line art drawing of {prompt}, clean black ink lines, minimalist, vector, white background",
            negativePrompt: "color, shading, photo, photorealistic, 3d render, painting, blurry"),
        PromptStyle(
            name: "comic",
            prompt: "comic book panel of {prompt}, bold ink outlines, halftone shading, vibrant flat colors, graphic novel art",
            negativePrompt: "photo, photorealistic, 3d render, blurry, deformed"),
    ]

    // MARK: - styles.csv

    /// Reads an A1111 `styles.csv`: a header naming the columns (`name`, `prompt` or the older
    /// `text`, optionally `negative_prompt`; others are ignored), then one style per record.
    /// CSV as Python's `csv.DictReader(file, skipinitialspace=True)` reads it from a UTF-8 file
    /// opened with `utf-8-sig`: a leading BOM is skipped, quoted fields may hold commas, newlines
    /// and doubled quotes, spaces after a comma are skipped, blank lines are ignored.
    /// - Throws: `ImagingError.readFailed` if the file cannot be read or is not UTF-8;
    ///   `ImagingError.stylesFile` naming the file and line otherwise.
    public static func load(_ url: URL) throws -> [PromptStyle] {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw ImagingError.readFailed(path: url.path, reason: FileErrorText.reason(error))
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ImagingError.readFailed(path: url.path, reason: "not UTF-8 text")
        }
        return try parse(csv: text, path: url.path)
    }

    /// Parses the text of a styles CSV; `path` is used in errors and origins.
    public static func parse(csv text: String, path: String) throws -> [PromptStyle] {
        let records = try CSV.records(text, path: path)
        guard let header = records.first else { return [] }
        let columns = header.fields.map { Infotext.pythonStrip($0).lowercased() }
        guard let nameColumn = columns.firstIndex(of: "name"),
            let promptColumn = columns.firstIndex(of: "prompt") ?? columns.firstIndex(of: "text")
        else {
            throw ImagingError.stylesFile(
                path: path, line: header.line,
                message: "the first line must name the columns, e.g. `name,prompt,negative_prompt`")
        }
        let negativeColumn = columns.firstIndex(of: "negative_prompt")
        var styles: [PromptStyle] = []
        for record in records.dropFirst() where !record.fields.allSatisfy({ Infotext.pythonStrip($0).isEmpty }) {
            func field(_ i: Int?) -> String {
                guard let i, i < record.fields.count else { return "" }
                return record.fields[i]
            }
            let name = field(nameColumn)
            guard !Infotext.pythonStrip(name).isEmpty else {
                throw ImagingError.stylesFile(path: path, line: record.line, message: "this style has no name")
            }
            styles.append(PromptStyle(
                name: name, prompt: field(promptColumn), negativePrompt: field(negativeColumn),
                origin: "\(path):\(record.line)"))
        }
        return styles
    }
}

/// A small CSV reader with Python `csv` (excel dialect, `skipinitialspace=True`) semantics.
enum CSV {
    struct Record {
        var line: Int
        var fields: [String]
    }

    /// The non-blank records of `text` with the line each starts on.
    /// - Throws: `ImagingError.stylesFile` for a quoted field that is never closed.
    static func records(_ text: String, path: String) throws -> [Record] {
        var scalars = Array(text.unicodeScalars)
        if scalars.first == "\u{FEFF}" { scalars.removeFirst() }
        var records: [Record] = []
        var fields: [String] = []
        var field = String.UnicodeScalarView()
        var line = 1
        var recordLine = 1
        var i = 0
        var inQuotes = false
        var fieldStarted = false  // distinguishes an empty record from a record of one empty field

        func endField() {
            fields.append(String(field))
            field = String.UnicodeScalarView()
            fieldStarted = false
        }
        func endRecord() {
            if fields.isEmpty && field.isEmpty && !fieldStarted {
                return  // blank line
            }
            endField()
            records.append(Record(line: recordLine, fields: fields))
            fields = []
        }

        while i < scalars.count {
            let c = scalars[i]
            if inQuotes {
                if c == "\"" {
                    if i + 1 < scalars.count, scalars[i + 1] == "\"" {
                        field.append("\"")
                        i += 2
                        continue
                    }
                    inQuotes = false
                } else {
                    if c == "\n" { line += 1 }
                    field.append(c)
                }
                i += 1
                continue
            }
            switch c {
            case ",":
                endField()
                fieldStarted = true
                i += 1
                while i < scalars.count, scalars[i] == " " { i += 1 }  // skipinitialspace
                continue
            case "\r", "\n":
                endRecord()
                if c == "\r", i + 1 < scalars.count, scalars[i + 1] == "\n" { i += 1 }
                line += 1
                recordLine = line
            case "\"" where field.isEmpty:
                inQuotes = true
                fieldStarted = true
            default:
                // A quote inside an unquoted field, or text after a closing quote, is kept as is
                // (Python's non-strict reader does the same).
                field.append(c)
                fieldStarted = true
            }
            i += 1
        }
        if inQuotes {
            throw ImagingError.stylesFile(
                path: path, line: recordLine, message: "a quoted field starting in this record is never closed (missing `\"`)")
        }
        endRecord()
        return records
    }
}
