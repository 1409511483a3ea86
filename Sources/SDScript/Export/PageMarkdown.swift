import Foundation

/// Renders a `SessionPage` as Markdown (CommonMark with fenced code). User text (commands, output,
/// recipes, messages) goes only into fenced blocks, fenced with more backticks than it holds, so
/// no prompt can be read as markup.
enum PageMarkdown {
    static func render(_ page: SessionPage, images: [Int: ExportedImage], heading: PageHeading) -> String {
        var text = "# " + flat(heading.title) + "\n\n" + heading.summary + "\n\n"
        text += items(page.preamble, images: images)
        for (number, entry) in page.entries.enumerated() {
            var meta: [String] = []
            if let location = entry.location { meta.append(location.description) }
            if let seconds = entry.seconds { meta.append(PageHTML.duration(seconds)) }
            if entry.failed { meta.append("failed") }
            text += "### \(number + 1)" + (meta.isEmpty ? "" : " (" + flat(meta.joined(separator: ", ")) + ")") + "\n\n"
            text += fenced(entry.line) + "\n"
            text += items(entry.items, images: images)
        }
        return text
    }

    private static func items(_ items: [SessionPage.Item], images: [Int: ExportedImage]) -> String {
        SessionPage.blocks(items).map { block in
            switch block {
            case .output(let lines): return fenced(lines.joined(separator: "\n")) + "\n"
            case .item(.output(let line)): return fenced(line) + "\n"
            case .item(.warning(let message)): return "Warning:\n\n" + fenced(message) + "\n"
            case .item(.error(let message)): return "**Error:**\n\n" + fenced(message) + "\n"
            case .item(.shown(let index)): return "Showed image \(index).\n\n"
            case .item(.saved(let index, let paths)): return "Image \(index) saved as:\n\n" + fenced(paths.joined(separator: "\n")) + "\n"
            case .item(.image(let image)):
                let facts = "seed \(image.request.engine.seed), \(image.pixels.width)×\(image.pixels.height), \(PageHTML.duration(image.seconds))"
                guard let file = images[image.index] else { return "**Image \(image.index)**: \(facts) (not exported)\n\n" }
                return "![image \(image.index)](\(file.href))\n\n**Image \(image.index)**: \(facts), file:\n\n"
                    + fenced(file.path) + "\nRecipe:\n\n" + fenced(file.recipe) + "\n"
            }
        }.joined()
    }

    /// `text` in a fenced code block whose fence is longer than any run of backticks in it.
    static func fenced(_ text: String) -> String {
        var longest = 0, run = 0
        for character in text {
            run = character == "`" ? run + 1 : 0
            longest = max(longest, run)
        }
        let fence = String(repeating: "`", count: max(3, longest + 1))
        return fence + "text\n" + text + "\n" + fence + "\n"
    }

    /// One line of plain heading text: line breaks become spaces and Markdown's specials are escaped.
    private static func flat(_ text: String) -> String {
        var out = ""
        for character in text {
            if character.isNewline { out += " "; continue }
            if "\\`*_[]<>#|".contains(character) { out += "\\" }
            out.append(character)
        }
        return out
    }
}
