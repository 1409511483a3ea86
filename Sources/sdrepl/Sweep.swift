import ArgumentParser
import FileErrors
import Foundation
import Glibc
import SDScript

extension RunScript {
    /// `sdrepl run --shard K/N FILE`: a recorded session (as the REPL's: under `--sessions`) that
    /// runs FILE making only this shard's images.
    func runShard(_ shard: Shard) throws {
        let io = TerminalIO(allowEscapes: true, sixelEncoder: Wiring.sixelEncoder)
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            io.diagnostic("run: \(file): \(FileErrorText.reason(error))".escapingControlCharacters)
            throw ExitCode(1)
        }
        let session = options.makeRecordedSession(io: io, kind: "run --shard \(shard) \(file)")
        session.startShard(shard, script: text, path: file)
        let summary = session.runScript(at: file, options: ScriptOptions(keepGoing: options.keepGoing))
        if let transcript = session.transcript, transcript.failure == nil {
            io.output("shard \(shard) recorded to \(transcript.path); 'sdrepl merge' joins the shards")
        }
        if !summary.succeeded { throw ExitCode(1) }
    }
}

/// `sdrepl merge A B … -o ALL.sdscript`.
struct MergeShards: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Join the transcripts of a sweep's shards (run --shard K/N) into one that run --check verifies.",
        discussion: "Every shard ran every command, so their lines must agree outside the images each made; shards of different scripts are refused, naming the first line that differs. Each sharded gen becomes 'gen N' with all N of its '#=> image' lines, in order. The output file is never overwritten."
    )

    @Argument(help: ArgumentHelp("The shards' transcripts, in any order (all N of them).", valueName: "TRANSCRIPT"))
    var transcripts: [String]

    @Option(name: .shortAndLong, help: ArgumentHelp("The merged transcript to write (a new file).", valueName: "ALL.sdscript"))
    var output: String

    func run() throws {
        do {
            let inputs = try transcripts.map { path in
                do {
                    return TranscriptMerge.Input(name: path, lines: try Session.scriptLines(at: path))
                } catch {
                    throw ScriptError.file(command: "merge", path: path, reason: FileErrorText.reason(error))
                }
            }
            let merged = try TranscriptMerge.merge(inputs)
            try write(merged)
            print("merged \(transcripts.count) shard transcripts into \(output); check: sdrepl run --check \(output)".escapingControlCharacters)
        } catch {
            Console.err("\(error)\n".escapingControlCharacters)
            throw ExitCode(1)
        }
    }

    /// Writes a new file (O_EXCL), whole or not at all.
    private func write(_ lines: [String]) throws {
        let path = output.expandingTilde
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let reason = errno == EEXIST ? "exists already; merge never overwrites a transcript, give a new name" : FileErrorText.reason(errno: errno)
            throw ScriptError.file(command: "merge", path: output, reason: reason)
        }
        let file = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        do {
            try file.write(contentsOf: Data(lines.map { $0 + "\n" }.joined().utf8))
        } catch {
            unlink(path)
            throw ScriptError.file(command: "merge", path: output, reason: FileErrorText.reason(error))
        }
    }
}
