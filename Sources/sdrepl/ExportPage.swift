import FileErrors
import ArgumentParser
import Foundation
import SDScript

/// `sdrepl export TRANSCRIPT -o PAGE.html`.
struct ExportPage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a transcript as a page: each command, its images (in PAGE_files/) with their recipes.",
        discussion: "Replays the transcript with the real engine as 'run --check' does (every recorded hash verified, no images written but the page's, going on after errors so they show on the page), then writes PAGE.html (or PAGE.md) and PAGE_files/image-N.png, PNGs carrying their recipes. A PNG the recorded run saved ('#=> saved') is used instead of generating its image again when its pixels still have the recorded hash and its settings and model are the replay's (--regenerate: never). Exits 1 if the replay had errors; the page is written all the same."
    )

    @OptionGroup var options: SessionOptions

    @Argument(help: ArgumentHelp("A recorded (or merged) transcript.", valueName: "TRANSCRIPT"))
    var transcript: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The page to write: .html, or .md for Markdown.", valueName: "PAGE.html"))
    var output: String

    @Flag(help: "Generate every image again, even those the recorded run saved and that still match their hashes.")
    var regenerate = false

    func run() throws {
        let io = TerminalIO(allowEscapes: true, sixelEncoder: nil)
        var components = Wiring.components(io: io)
        let recorded = RecordedImages(transcript: (try? Session.scriptLines(at: transcript)) ?? [], at: transcript)
        if !regenerate, let loader = components.generatorLoader {
            components.generatorLoader = ReusingLoader(loader, recorded: recorded)
        }
        let session = Session(components: components, io: io)
        // A transcript's own `model` line, when it has one, comes later and wins.
        if let model = options.model { session.settings.resources.model = model }
        do {
            let (replay, page) = try session.exportTranscript(at: transcript, to: output.expandingTilde)
            if !regenerate {
                io.output("reused \(recorded.reused) image\(recorded.reused == 1 ? "" : "s") saved by the recorded run (same settings, same model, pixels matching the recorded hash); generated the others")
            }
            io.output(page.description)
            if !replay.succeeded {
                io.diagnostic("export: the replay had \(replay.errors.count) error(s), shown on the page; \(replay.checked) image(s) matched their recorded hashes")
                throw ExitCode(1)
            }
        } catch let error as ScriptError {
            io.diagnostic("\(error)")
            throw ExitCode(1)
        }
    }
}
