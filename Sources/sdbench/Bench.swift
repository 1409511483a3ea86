import ArgumentParser
import Diffusion

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sdbench", abstract: "sdrepl's benchmark.")
    func run() throws {}
}
