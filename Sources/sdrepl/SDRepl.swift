import ArgumentParser
import Diffusion

@main
struct SDRepl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sdrepl",
        abstract: "A notebook-style text-to-image REPL for the terminal (Stable Diffusion 1.5 on the CPU).",
        version: SDReplVersion.string
    )

    func run() throws {
        print("sdrepl \(SDReplVersion.string): the interactive session is not built yet.")
    }
}
