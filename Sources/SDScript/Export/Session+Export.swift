import FileErrors
import Foundation
import Glibc
import Imaging

/// The page formats `export` writes, by the file's extension.
enum PageFormat {
    case html
    case markdown

    init?(path: String) {
        switch (path as NSString).pathExtension.lowercased() {
        case "html", "htm": self = .html
        case "md", "markdown": self = .markdown
        default: return nil
        }
    }
}

/// What `export` wrote.
public struct ExportSummary: Sendable {
    public var path: String
    public var folder: String
    public var commands: Int
    public var images: Int

    /// The line `export` prints.
    public var description: String {
        "exported \(commands) command\(commands == 1 ? "" : "s") and \(images) image\(images == 1 ? "" : "s") to \(path)"
            + (images > 0 ? " (images in \(folder)/)" : "")
    }
}

extension Session {
    static let exportUsage = "export FILE.html | FILE.md"

    /// `export FILE.html` / `export FILE.md`: this session so far as a page (without the `export`
    /// itself); writes nothing under `run --check`, as `save` does.
    func exportCommand(_ argument: String) throws {
        guard !argument.isEmpty else { throw ScriptError.missingArgument(command: "export", usage: Self.exportUsage) }
        if savingDisabled { return }
        // Outputs go where the user is, like `save`: relative to the current directory.
        let summary = try exportPage(page.pageBeforeCurrentCommand, to: argument.expandingTilde)
        io.output(summary.description)
    }

    /// Writes `page` to `path` (HTML or Markdown by its extension) and its images, as PNGs that
    /// carry their recipe, to the folder `STEM_files` beside it.
    /// - Throws: `ScriptError` naming the file when the extension is not known or a file cannot be
    ///   written. The page is written last and whole (a temporary file renamed), so a failure
    ///   leaves no half-written page.
    public func exportPage(_ page: SessionPage? = nil, to path: String) throws -> ExportSummary {
        let page = page ?? self.page.page
        guard let format = PageFormat(path: path) else {
            throw ScriptError.badArgument(command: "export", argument: path,
                                          reason: "expected a page ending in .html or .md (Markdown), got")
        }
        let stem = (path as NSString).deletingPathExtension
        let folder = stem + "_files"
        let folderName = (folder as NSString).lastPathComponent
        let pageImages = page.images
        // A relative URL: a folder name with ':' could read as a scheme, '?' and '#' end the path.
        let encodedFolder = folderName.addingPercentEncoding(
            withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: ":;?#"))) ?? folderName
        try Self.checkImageFolder(of: path)
        let owner = folder + "/" + Self.pageMarker, pageName = (path as NSString).lastPathComponent
        // Marked as this page's before this export: its other images are this page's old ones.
        let markedOurs = (try? String(contentsOfFile: owner, encoding: .utf8)) == pageName
        if markedOurs, let entries = try? FileManager.default.contentsOfDirectory(atPath: folder) {
            // A staging folder an export killed half-way left behind.
            for entry in entries where entry.hasPrefix(".export-") { try? FileManager.default.removeItem(atPath: folder + "/" + entry) }
        }
        var exported: [Int: ExportedImage] = [:]
        // Images are written to a staging folder inside `folder`, then renamed over their names:
        // exporting the same page again as the session grows replaces them (the writer itself
        // never overwrites a file).
        let staging = folder + "/.export-\(UUID().uuidString)"
        if !pageImages.isEmpty {
            guard components.saver != nil else {
                throw ScriptError.unavailable(command: "export", reason: "this session has no image writer")
            }
            do {
                try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
            } catch {
                throw ScriptError.file(command: "export", path: folder, reason: FileErrorText.reason(error))
            }
        }
        defer { try? FileManager.default.removeItem(atPath: staging) }
        if !pageImages.isEmpty {
            do {
                try Data(pageName.utf8).write(to: URL(fileURLWithPath: owner), options: .atomic)
            } catch {
                throw ScriptError.file(command: "export", path: owner, reason: FileErrorText.reason(error))
            }
        }
        for image in pageImages {
            let name = "image-\(image.index).png"
            let staged = staging + "/" + name, file = folder + "/" + name
            let saved = try generation.save(image, to: staged, output: settings.output)
            saved.warnings.forEach(io.warning)
            // The page shows what the file carries: the same text A1111's PNG Info reads.
            let recipe = (try? ImageRecipeReader.read(URL(fileURLWithPath: staged)))?.infotext
            if FileManager.default.fileExists(atPath: staged), rename(staged, file) != 0 {
                throw ScriptError.file(command: "export", path: file, reason: FileErrorText.reason(errno: errno))
            }
            exported[image.index] = ExportedImage(
                href: encodedFolder + "/" + name,
                path: file,
                recipe: recipe ?? Infotext.render(ImagingSaver.recipe(for: image.request, model: image.model, modelHash: nil)))
        }
        let heading = PageHeading(title: "sdrepl session", exported: Date(), commandCount: page.entries.count,
                                  imageCount: pageImages.count)
        let text = format == .html ? PageHTML.render(page, images: exported, heading: heading)
                                   : PageMarkdown.render(page, images: exported, heading: heading)
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw ScriptError.file(command: "export", path: path, reason: FileErrorText.reason(error))
        }
        // Images of an earlier, longer export of this page that this one no longer shows (only in a
        // folder that was marked as this page's already: an unmarked one may hold another page's).
        let kept = Set(exported.keys.map { "image-\($0).png" })
        for name in (markedOurs ? try? FileManager.default.contentsOfDirectory(atPath: folder) : nil) ?? []
        where name.hasPrefix("image-") && name.hasSuffix(".png") && !kept.contains(name) {
            try? FileManager.default.removeItem(atPath: folder + "/" + name)
        }
        return ExportSummary(path: path, folder: folder, commands: page.entries.count, images: pageImages.count)
    }

    /// The file in a page's image folder that names the page it belongs to.
    static let pageMarker = ".page"

    /// One folder, one page: `p.html` and `p.md` would both use `p_files/` and replace each other's images.
    /// - Throws: `ScriptError.file` when the page at `path`'s image folder is another page's.
    static func checkImageFolder(of path: String) throws {
        let folder = (path as NSString).deletingPathExtension + "_files"
        let pageName = (path as NSString).lastPathComponent
        let folderName = (folder as NSString).lastPathComponent
        if let other = try? String(contentsOfFile: folder + "/" + pageMarker, encoding: .utf8), other != pageName {
            throw ScriptError.file(command: "export", path: folder, reason: "holds the images of the page \(other); "
                                   + "export to another name, or remove \(folderName)/ first")
        }
        // Nothing of the user's is replaced: a file by the page's name must be a page sdrepl wrote,
        // and an image folder without the marker must be empty.
        if FileManager.default.fileExists(atPath: path), !isExportedPage(path) {
            throw ScriptError.file(command: "export", path: path, reason: "exists and is not a page sdrepl exported; "
                                   + "export to another name, or remove it first")
        }
        if !FileManager.default.fileExists(atPath: folder + "/" + pageMarker),
           let entries = try? FileManager.default.contentsOfDirectory(atPath: folder), !entries.isEmpty {
            throw ScriptError.file(command: "export", path: folder, reason: "exists and is not a page's image folder (it has no "
                                   + "\(pageMarker) naming the page); export to another name, or remove \(folderName)/ first")
        }
    }

    /// Whether the file at `path` is a page an export wrote: its head names sdrepl as the HTML
    /// page's generator, or it opens as a Markdown page does (its title, then "exported … by sdrepl").
    static func isExportedPage(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = String(decoding: (try? handle.read(upToCount: 4096)) ?? Data(), as: UTF8.self)
        let markdown = head.hasPrefix("# sdrepl session\n") && head.split(separator: "\n").dropFirst().first { !$0.isEmpty }
            .map { $0.contains("; exported ") && $0.contains(" by sdrepl ") } == true
        return head.contains("<meta name=\"generator\" content=\"sdrepl ") || markdown
    }

    /// `sdrepl export TRANSCRIPT -o PAGE`: replays the transcript through this session as
    /// `run --check` does (the real engine, every recorded hash verified, no image files written
    /// but the page's), going on after errors so that they show on the page, then writes the page.
    /// - Returns: the replay's summary and what was written.
    public func exportTranscript(at transcript: String, to path: String) throws -> (ScriptSummary, ExportSummary) {
        guard PageFormat(path: path) != nil else {
            throw ScriptError.badArgument(command: "export", argument: path,
                                          reason: "expected a page ending in .html or .md (Markdown), got")
        }
        try Self.checkImageFolder(of: path)
        let lines: [String]
        do {
            lines = try Self.scriptLines(at: transcript)
        } catch {
            throw ScriptError.file(command: "export", path: transcript, reason: FileErrorText.reason(error))
        }
        let summary = runScript(lines: lines, name: transcript, options: ScriptOptions(check: true, keepGoing: true))
        return (summary, try exportPage(to: path))
    }
}
