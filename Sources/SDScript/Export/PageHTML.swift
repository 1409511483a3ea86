import Diffusion
import Foundation

/// An image as the exported page links it: its file beside the page and the recipe that file carries.
public struct ExportedImage: Sendable {
    /// The file's URL relative to the page (percent-encoded).
    public var href: String
    /// The file as the page names it for `load` (`page_files/image-3.png`).
    public var path: String
    /// The A1111 recipe text the file carries.
    public var recipe: String
}

/// What every rendering of a page says at its top.
struct PageHeading {
    var title: String
    var exported: Date
    var commandCount: Int
    var imageCount: Int

    var summary: String {
        let date = ISO8601DateFormatter().string(from: exported)
        return "\(commandCount) command\(commandCount == 1 ? "" : "s"), \(imageCount) image\(imageCount == 1 ? "" : "s"); "
            + "exported \(date) by sdrepl \(SDReplVersion.string)"
    }
}

/// Renders a `SessionPage` as one HTML page that needs nothing but its image folder: the style and
/// the copy button's script are inline, no font, script or style is fetched.
enum PageHTML {
    static func render(_ page: SessionPage, images: [Int: ExportedImage], heading: PageHeading) -> String {
        var html = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="generator" content="sdrepl \(escape(SDReplVersion.string))">
            <title>\(escape(heading.title))</title>
            <style>\(style)</style>
            </head>
            <body>
            <header><h1>\(escape(heading.title))</h1><p class="summary">\(escape(heading.summary))</p></header>

            """
        if !page.preamble.isEmpty {
            html += "<div class=\"preamble\">\n" + items(page.preamble, images: images) + "</div>\n"
        }
        html += "<ol class=\"commands\">\n"
        for (number, entry) in page.entries.enumerated() {
            html += command(entry, number: number + 1, images: images)
        }
        html += "</ol>\n<script>\(script)</script>\n</body>\n</html>\n"
        return html
    }

    private static func command(_ entry: SessionPage.Entry, number: Int, images: [Int: ExportedImage]) -> String {
        var meta: [String] = []
        if let location = entry.location { meta.append(escape(location.description)) }
        if let seconds = entry.seconds { meta.append(escape(duration(seconds))) }
        if entry.failed { meta.append("failed") }
        let classes = entry.failed ? "command failed" : "command"
        var html = "<li class=\"\(classes)\" id=\"command-\(number)\" style=\"--depth: \(entry.depth)\">"
            + "<div class=\"line\"><span class=\"number\">\(number)</span><code>\(escape(entry.line))</code>"
            + "<span class=\"meta\">\(meta.joined(separator: " · "))</span></div>\n"
        html += items(entry.items, images: images)
        return html + "</li>\n"
    }

    /// The items in order; consecutive output lines share one block.
    private static func items(_ items: [SessionPage.Item], images: [Int: ExportedImage]) -> String {
        SessionPage.blocks(items).map { block in
            switch block {
            case .output(let lines): return "<pre class=\"output\">" + escape(lines.joined(separator: "\n")) + "</pre>\n"
            case .item(.output(let line)): return "<pre class=\"output\">" + escape(line) + "</pre>\n"
            case .item(.warning(let text)): return "<p class=\"warning\">" + escape(text) + "</p>\n"
            case .item(.error(let text)): return "<p class=\"error\">" + escape(text) + "</p>\n"
            case .item(.image(let image)): return figure(image, file: images[image.index])
            case .item(.shown(let index)): return "<p class=\"shown\">showed <a href=\"#image-\(index)\">image \(index)</a></p>\n"
            case .item(.saved(let index, let paths)):
                return "<p class=\"saved\">image \(index) saved as " + paths.map { "<code>\(escape($0))</code>" }.joined(separator: " ") + "</p>\n"
            }
        }.joined()
    }

    private static func figure(_ image: SessionImage, file: ExportedImage?) -> String {
        let index = image.index
        let facts = "seed \(image.request.engine.seed) · \(image.pixels.width)×\(image.pixels.height) · \(duration(image.seconds))"
        guard let file else {
            return "<figure class=\"image\" id=\"image-\(index)\"><figcaption><b>image \(index)</b> · \(escape(facts)) (not exported)</figcaption></figure>\n"
        }
        let alt = "image \(index): " + image.request.engine.prompt
        return """
            <figure class="image" id="image-\(index)">\
            <a href="\(escape(file.href))"><img src="\(escape(file.href))" width="\(image.pixels.width)" height="\(image.pixels.height)" alt="\(escape(alt))"></a>
            <figcaption><p><b>image \(index)</b> · \(escape(facts)) · <code>\(escape(file.path))</code> (load it, or drop it on A1111's PNG Info)</p>
            <div class="recipe"><button type="button" class="copy" data-copy="recipe-\(index)">copy recipe</button>\
            <pre id="recipe-\(index)">\(escape(file.recipe))</pre></div></figcaption></figure>

            """
    }

    /// "0.42 s", "1 min 3 s".
    static func duration(_ seconds: Double) -> String {
        seconds < 60 ? String(format: "%.2f s", seconds) : "\(Int(seconds) / 60) min \(Int(seconds) % 60) s"
    }

    /// Text made safe inside an element or a quoted attribute.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    private static let style = """
        body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;color:#1d1d1f;background:#fafafa}
        h1{font-size:1.4rem;margin:.2rem 0}.summary{color:#666;margin:0 0 1rem}
        ol.commands{list-style:none;padding:0;margin:0}
        li.command{margin:0 0 .8rem calc(var(--depth) * 1.5rem);padding:.5rem .8rem;background:#fff;border:1px solid #ddd;border-radius:6px}
        li.failed{border-color:#d33}
        .line{display:flex;gap:.7rem;align-items:baseline}.line code{font-size:1rem;white-space:pre-wrap;word-break:break-word;flex:1}
        .number{color:#999;font-size:.8rem;min-width:1.5rem;text-align:right}.meta{color:#888;font-size:.8rem;white-space:nowrap}
        code,pre{font-family:ui-monospace,"DejaVu Sans Mono",monospace}
        pre{white-space:pre-wrap;word-break:break-word;margin:.4rem 0;font-size:.85rem}
        pre.output{background:#f3f3f3;padding:.4rem .6rem;border-radius:4px}
        .warning{color:#8a5a00;background:#fff6d6;padding:.3rem .6rem;border-radius:4px;margin:.4rem 0}
        .error{color:#a00;background:#ffe8e8;padding:.3rem .6rem;border-radius:4px;margin:.4rem 0}
        .shown,.saved{color:#555;font-size:.9rem;margin:.3rem 0}
        figure.image{display:flex;flex-wrap:wrap;gap:1rem;margin:.6rem 0;align-items:flex-start}
        figure.image img{display:block;width:auto;height:auto;min-width:12rem;max-width:min(100%,32rem);image-rendering:pixelated;border:1px solid #ccc;background:#eee}
        figcaption{flex:1;min-width:16rem}figcaption p{margin:0 0 .3rem}
        .recipe pre{background:#f3f3f3;padding:.4rem .6rem;border-radius:4px;max-height:14rem;overflow:auto}
        button.copy{font:inherit;font-size:.8rem;padding:.1rem .6rem;cursor:pointer}
        """

    /// The copy buttons: the Clipboard API where the page's origin allows it, else the selection and
    /// `execCommand("copy")`, which browsers still honour for a click on a local file.
    private static let script = """
        document.querySelectorAll("button.copy").forEach(function (button) {
          button.addEventListener("click", function () {
            var pre = document.getElementById(button.dataset.copy);
            var text = pre.textContent;
            function done(ok) { button.textContent = ok ? "copied" : "select and copy"; setTimeout(function () { button.textContent = "copy recipe"; }, 1500); }
            function fallback() {
              var range = document.createRange(); range.selectNodeContents(pre);
              var selection = window.getSelection(); selection.removeAllRanges(); selection.addRange(range);
              var ok = false; try { ok = document.execCommand("copy"); } catch (e) {}
              done(ok);
            }
            if (navigator.clipboard && window.isSecureContext) {
              navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
            } else { fallback(); }
          });
        });
        """
}
