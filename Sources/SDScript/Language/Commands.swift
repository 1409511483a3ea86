import FileErrors
import Foundation
import Diffusion
import Imaging
import ModelStore

/// What tab completion offers after a command word.
public enum CompletionKind: Sendable {
    case none
    case commands
    case settingKeys
    /// `set KEY VALUE`: keys, then that key's values.
    case setting
    case paths
    /// `upscale`: upscaler names found, and paths.
    case upscalers
    /// `grid`: `X=`, `Y=`, `Z=` with the axis names.
    case gridAxes
    /// The command's fixed words (`history sheet`, `seed random`).
    case words([String])
}

/// One command of the language: the table below drives dispatch, `help` and completion.
public struct Command {
    public let name: String
    public let usage: String
    public let summary: String
    let kind: ArgumentKind
    public let completion: CompletionKind
    /// How the transcript records the command once it has run.
    var transcript: TranscriptRule = .asTyped
    let handler: (Session, String, SourceLocation?) throws -> Outcome

    init(name: String, usage: String, summary: String, kind: ArgumentKind, completion: CompletionKind,
         transcript: TranscriptRule = .asTyped, handler: @escaping (Session, String, SourceLocation?) throws -> Outcome) {
        self.name = name
        self.usage = usage
        self.summary = summary
        self.kind = kind
        self.completion = completion
        self.transcript = transcript
        self.handler = handler
    }

    public static func named(_ name: String) -> Command? {
        let key = name.lowercased()
        return table.first { $0.name == key } ?? aliases[key].flatMap { alias in table.first { $0.name == alias } }
    }

    static let aliases = ["exit": "quit", "?": "help", "generate": "gen"]

    /// Every command, in the order `help` lists them.
    public static let table: [Command] = [
        Command(name: "prompt", usage: "prompt TEXT", summary: "set the prompt (the rest of the line, verbatim; A1111's (word:1.2), [from:to:when], [a|b], AND work)",
                kind: .text, completion: .none) { session, argument, _ in
            session.settings.request.prompt = argument
            return .ok
        },
        Command(name: "negative", usage: "negative TEXT", summary: "set the negative prompt (empty clears it)",
                kind: .text, completion: .none) { session, argument, _ in
            session.settings.request.negative = argument
            return .ok
        },
        Command(name: "seed", usage: "seed N | random | last",
                summary: "fix the seed, draw a new one for each gen (the default), or take the last image's",
                kind: .words, completion: .words(["random", "last"]), transcript: .seedChoice) { session, argument, _ in
            guard !argument.isEmpty else { throw ScriptError.missingArgument(command: "seed", usage: "seed N | random | last") }
            session.settings.request.seed = try parseSeed(argument, command: "seed", session: session)
            return .ok
        },
        Command(name: "model", usage: "model PATH | model download [REPO FILE]",
                summary: "use the checkpoint at PATH, or download SD1.5 into the Hugging Face cache",
                kind: .text, completion: .paths, transcript: .inputPath(except: ["download"])) { session, argument, location in
            guard !argument.isEmpty else {
                throw ScriptError.missingArgument(command: "model", usage: "model PATH | model download [REPO FILE]")
            }
            let words = argument.words
            if words.first == "download" {
                session.io.clearInterrupt()
                defer { session.io.progressDone() }
                do {
                    let path = try session.components.models.download(
                        arguments: Array(words.dropFirst()), status: { [io = session.io] in io.status($0) },
                        isCancelled: { [io = session.io] in io.isInterrupted })
                    session.io.progressDone()
                    session.io.output("downloaded \(path)")
                } catch let error as ScriptError {
                    throw error
                } catch {
                    throw ScriptError.unavailable(command: "model download", reason: FileErrorText.reason(error))
                }
                return .ok
            }
            let path = try checkedModelPath(session.resolve(argument, relativeTo: location), command: "model")
            do {
                // Names a checkpoint file or folder (not another kind of file, not an empty folder).
                _ = try session.components.models.locate(explicit: path)
            } catch {
                throw ScriptError.unavailable(command: "model", reason: FileErrorText.reason(error))
            }
            var resources = session.settings.resources
            resources.model = path
            // Opened now: the header, layout and every shape are checked (weights convert on first
            // use), so a refused checkpoint never replaces the one that works.
            if session.components.generatorLoader != nil {
                _ = try session.generation.generator(for: resources, io: session.io)
            }
            session.settings.resources = resources
            let described = session.components.models.listing(explicit: path, note: { [io = session.io] in io.status($0) }).first
            session.io.progressDone()
            session.io.output("model: " + (described ?? path))
            return .ok
        },
        Command(name: "init", usage: "init FILE | N | last",
                summary: "image-to-image: start the next gen from a PNG/JPEG, from image N or from the last image ('set strength', 'unset init')",
                kind: .text, completion: .paths, transcript: .inputPath()) { session, argument, location in
            guard !argument.isEmpty else { throw ScriptError.missingArgument(command: "init", usage: "init FILE | N | last") }
            let value = Int(argument) != nil || isLastImage(argument) ? argument : session.resolve(argument, relativeTo: location)
            session.settings.request.initImage = try parseInit(value, session: session)
            return .ok
        },
        Command(name: "mask", usage: "mask FILE",
                summary: "inpainting: repaint where FILE is white (a grayscale image or a PNG's alpha) in the init image ('unset mask')",
                kind: .text, completion: .paths, transcript: .inputPath()) { session, argument, location in
            guard !argument.isEmpty else { throw ScriptError.missingArgument(command: "mask", usage: "mask FILE") }
            session.settings.request.mask = try checkedImagePath(session.resolve(argument, relativeTo: location), command: "mask")
            return .ok
        },
        Command(name: "set", usage: "set [KEY VALUE]", summary: "change a setting; alone, list them all ('help set' for the keys)",
                kind: .text, completion: .setting, transcript: .setting) { session, argument, location in
            guard !argument.isEmpty else {
                listSettings(session)
                return .ok
            }
            let words = CommandText(argument)
            guard let key = SettingKey.named(words.name) else {
                throw ScriptError.badArgument(command: "set", argument: words.name, reason: "unknown setting",
                                              suggestion: closestWord(to: words.name, in: SettingKey.names))
            }
            let value = key.kind == .words ? words.argument.droppingTrailingComment() : words.argument
            // A text setting may be empty (`set negative`), a path may not.
            if value.isEmpty && (key.kind == .words || key.completesPaths) {
                throw ScriptError.missingArgument(command: "set \(key.name)", usage: "set \(key.name) \(key.values)")
            }
            try key.apply(session, key.readsPath(value) ? session.resolve(value, relativeTo: location) : value)
            return .ok
        },
        Command(name: "unset", usage: "unset KEY", summary: "restore a setting's default", kind: .words,
                completion: .settingKeys, transcript: .setting) { session, argument, _ in
            guard !argument.isEmpty else { throw ScriptError.missingArgument(command: "unset", usage: "unset KEY") }
            guard let key = SettingKey.named(argument) else {
                throw ScriptError.badArgument(command: "unset", argument: argument, reason: "unknown setting",
                                              suggestion: closestWord(to: argument, in: SettingKey.names))
            }
            key.reset(&session.settings)
            return .ok
        },
        Command(name: "gen", usage: "gen [N]", summary: "generate N images (default: the batch setting) with seeds s … s+N-1",
                kind: .words, completion: .none) { session, argument, _ in
            var count = session.settings.request.batch
            if !argument.isEmpty {
                guard let number = Int(argument), RequestLimits.batch.contains(number) else {
                    throw ScriptError.badArgument(command: "gen", argument: argument,
                                                  reason: "expected a number of images from \(RequestLimits.batch.lowerBound) to \(RequestLimits.batch.upperBound), got")
                }
                count = number
            }
            try session.generate(count: count)
            return .ok
        },
        Command(name: "grid", usage: GridSpec.usage,
                summary: "an X/Y/Z plot: one image per combination of the axes' values (seed, cfg, steps, sampler, size, strength, lora, sr), then a labelled sheet",
                kind: .words, completion: .gridAxes, transcript: .resolved) { session, argument, location in
            try session.grid(argument, at: location)
            return .ok
        },
        Command(name: "save", usage: "save [PATH]",
                summary: "save the last image(s): PNG and JPEG in outdir; PATH.png or PATH.jpg exactly; PATH without an extension: both; FOLDER/: into that folder",
                kind: .text, completion: .paths) { session, argument, _ in
            guard !session.lastBatch.isEmpty else {
                throw ScriptError.notReady(command: "save", reason: "no image yet; run 'gen' first, then save")
            }
            if session.history.sheet != nil {
                try session.saveSheet(to: argument)
                return .ok
            }
            let batch = session.lastBatch
            for (number, position) in batch.enumerated() {
                // Saved already (by autosave or an earlier save): say where, rather than write a copy.
                let image = session.images[position]
                if argument.isEmpty && !image.savedPaths.isEmpty {
                    session.io.output("image \(image.index): already saved as \(image.savedPaths.joined(separator: " ")); 'save PATH' writes another copy")
                    continue
                }
                // Outputs go where the user is, like outdir: relative to the current directory.
                var path: String? = argument.isEmpty ? nil : argument.expandingTilde
                if let given = path, !namesAFolder(given), let fileNumber = session.fileNumber(ofBatchImage: number) {
                    // One file per image: name-1.png, name-2.png, …
                    let name = given as NSString
                    let stem = name.deletingPathExtension
                    path = name.pathExtension.isEmpty ? "\(stem)-\(fileNumber)" : "\(stem)-\(fileNumber).\(name.pathExtension)"
                }
                let paths = try session.save(position, to: path)
                if paths.isEmpty { continue }  // run --check writes nothing
                session.io.emit(.saved(index: session.images[position].index, paths: paths))
            }
            return .ok
        },
        Command(name: "export", usage: Session.exportUsage,
                summary: "write this session so far as a page: each command, its images (in FILE_files/) with their recipes",
                kind: .text, completion: .paths) { session, argument, _ in
            try session.exportCommand(argument)
            return .ok
        },
        Command(name: "show", usage: "show [N]", summary: "show image N of this session (default: the last) and its recipe",
                kind: .words, completion: .none) { session, argument, _ in
            guard let last = session.images.last else {
                throw ScriptError.notReady(command: "show", reason: "no image yet; run 'gen' first")
            }
            var position = last.index - 1
            if !argument.isEmpty {
                guard let number = Int(argument), (1...session.images.count).contains(number) else {
                    throw ScriptError.badArgument(command: "show", argument: argument,
                                                  reason: "expected an image number from 1 to \(session.images.count), got")
                }
                position = number - 1
            }
            let image = session.images[position]
            let recipe = Infotext.render(ImagingSaver.recipe(for: image.request, model: image.model, modelHash: nil))
            session.io.emit(.shown(image, recipe: recipe, preview: session.settings.output.preview))
            return .ok
        },
        Command(name: "history", usage: "history [sheet]", summary: "list this session's images with their recipes; 'history sheet': their numbered thumbnails as one picture",
                kind: .words, completion: .words(["sheet"])) { session, argument, _ in
            if argument.lowercased() == "sheet" {
                try session.showHistorySheet()
                return .ok
            }
            guard argument.isEmpty else {
                throw ScriptError.badArgument(command: "history", argument: argument, reason: "expected nothing or 'sheet', got",
                                              suggestion: closestWord(to: argument, in: ["sheet"]))
            }
            if session.images.isEmpty { session.io.output("no images yet") }
            for image in session.images { session.io.output("\(image.index)  " + image.description) }
            return .ok
        },
        Command(name: "styles", usage: "styles", summary: "list the styles ('set style NAME' applies one)",
                kind: .words, completion: .none) { session, argument, _ in
            guard argument.isEmpty else { throw ScriptError.unexpectedArgument(command: "styles", argument: argument) }
            session.components.styles.listing().forEach { session.io.output($0) }
            return .ok
        },
        Command(name: "tokens", usage: "tokens", summary: "the token count and 75-token chunks of the current prompt (per text with prompt editing, per AND part; its LoRAs)",
                kind: .words, completion: .none) { session, argument, _ in
            guard argument.isEmpty else { throw ScriptError.unexpectedArgument(command: "tokens", argument: argument) }
            let request = try session.resolvedRequest(seed: 0, for: "tokens").engine
            let generator = try session.loadedGenerator(for: "tokens")
            session.io.output(try generator.tokenReport(prompt: request.prompt, steps: request.steps, folders: session.folders()))
            return .ok
        },
        Command(name: "load", usage: "load FILE", summary: "set everything that decides the pixels (prompt, seed, steps, cfg, size, sampler, hires, init, …) from an image's recipe",
                kind: .text, completion: .paths, transcript: .inputPath()) { session, argument, location in
            guard !argument.isEmpty else { throw ScriptError.missingArgument(command: "load", usage: "load FILE") }
            let path = session.resolve(argument, relativeTo: location)
            let recipe = try readStoredRecipe(at: path, shownAs: argument, command: "load")
            try apply(recipe, to: session, file: argument)
            return .ok
        },
        Command(name: "info", usage: "info FILE", summary: "print the recipe stored in a PNG or JPEG (as 'sdrepl info FILE')",
                kind: .text, completion: .paths, transcript: .inputPath()) { session, argument, location in
            guard !argument.isEmpty else { throw ScriptError.missingArgument(command: "info", usage: "info FILE") }
            let stored = try readStoredRecipe(at: session.resolve(argument, relativeTo: location), shownAs: argument, command: "info")
            describeStoredRecipe(stored).components(separatedBy: "\n").forEach { session.io.output($0) }
            return .ok
        },
        Command(name: "loras", usage: "loras", summary: "list the LoRAs that <lora:NAME:0.8> in a prompt can use, and where sdrepl looks",
                kind: .words, completion: .none) { session, argument, _ in
            guard argument.isEmpty else { throw ScriptError.unexpectedArgument(command: "loras", argument: argument) }
            let folders = session.loraDirectories()
            listFiles(in: folders, session: session, kind: ("LoRA", "LoRAs"), setting: "lora-dir",
                      line: { "<lora:\($0):1>" }, hint: "", chosen: { try? LoRALibrary.locate($0, in: folders) })
            return .ok
        },
        Command(name: "final", usage: "final N|last", summary: "render image N (or the last), a draft, again with your own settings and its seed",
                kind: .words, completion: .words(["last"]), transcript: .resolved) { session, argument, _ in
            guard !argument.isEmpty else { throw ScriptError.missingArgument(command: "final", usage: "final N|last") }
            try session.renderFinal(argument)
            return .ok
        },
        Command(name: "vaes", usage: "vaes", summary: "list the VAE and TAESD files 'set vae NAME' can use, and where sdrepl looks",
                kind: .words, completion: .none) { session, argument, _ in
            guard argument.isEmpty else { throw ScriptError.unexpectedArgument(command: "vaes", argument: argument) }
            listVAEs(session)
            return .ok
        },
        Command(name: "embeddings", usage: "embeddings", summary: "list the textual-inversion embeddings a prompt can use by name, and where sdrepl looks",
                kind: .words, completion: .none) { session, argument, _ in
            guard argument.isEmpty else { throw ScriptError.unexpectedArgument(command: "embeddings", argument: argument) }
            listFiles(in: session.embeddingDirectories(), session: session, kind: ("embedding", "embeddings"), setting: "embeddings",
                      line: { $0 }, hint: "; write a name in a prompt to use it")
            return .ok
        },
        Command(name: "models", usage: "models", summary: "list the models found, and where sdrepl looks",
                kind: .words, completion: .none) { session, argument, _ in
            guard argument.isEmpty else { throw ScriptError.unexpectedArgument(command: "models", argument: argument) }
            let found = session.components.models.listing(explicit: session.settings.resources.modelToLoad,
                                                          note: { [io = session.io] in io.status($0) })
            session.io.progressDone()
            found.forEach { session.io.output($0) }
            do {
                let location = try session.components.models.locate(explicit: session.settings.resources.modelToLoad)
                session.io.output("using \(location.path) (\(location.source))")
            } catch {
                FileErrorText.reason(error).split(separator: "\n").forEach { session.io.output(String($0)) }
            }
            return .ok
        },
        Command(name: "upscale", usage: UpscaleArguments.usage,
                summary: "upscale image N (default: the last) with an ESRGAN/Real-ESRGAN model (a path or a name from 'upscalers'), by its scale or xS",
                kind: .words, completion: .upscalers, transcript: .resolved) { session, argument, location in
            try session.upscale(UpscaleArguments(argument), at: location)
            return .ok
        },
        Command(name: "upscalers", usage: "upscalers", summary: "list the upscalers 'upscale NAME' can use, and where sdrepl looks",
                kind: .words, completion: .none) { session, argument, _ in
            guard argument.isEmpty else { throw ScriptError.unexpectedArgument(command: "upscalers", argument: argument) }
            session.listUpscalers()
            return .ok
        },
        Command(name: "run", usage: "run FILE", summary: "run the commands of an .sdscript file (relative to the running script's folder)",
                kind: .text, completion: .paths) { session, argument, location in
            guard !argument.isEmpty else { throw ScriptError.missingArgument(command: "run", usage: "run FILE") }
            try session.runNested(argument, at: location)
            return .ok
        },
        Command(name: "help", usage: "help [COMMAND]", summary: "list the commands, or explain one",
                kind: .words, completion: .commands) { session, argument, _ in
            try help(argument, session: session)
            return .ok
        },
        Command(name: "transcript", usage: "transcript [save PATH]",
                summary: "where this session is recorded; save PATH writes it to a new file (after a failed write) and records there",
                kind: .text, completion: .words(["save"]), transcript: .comment) { session, argument, location in
            try transcript(argument, session: session, at: location)
            return .ok
        },
        Command(name: "quit", usage: "quit", summary: "end the session (Ctrl-D too)", kind: .words, completion: .none) { session, argument, _ in
            guard argument.isEmpty else { throw ScriptError.unexpectedArgument(command: "quit", argument: argument) }
            if let refusal = session.log.leavingRefusal() { throw refusal }
            return .quit
        },
    ]
}

/// `loras` and `embeddings`: each `*.safetensors` or pickle (`*.pt`, …) name found in `folders` as `line(name)`, then
/// how many there are and where sdrepl looked.
/// - Parameter chosen: the file a name means, where several files may share it.
private func listFiles(in folders: [URL], session: Session, kind: (one: String, many: String), setting: String,
                       line: (String) -> String, hint: String, chosen: ((String) -> URL?)? = nil) {
    let files = LoRALibrary.files(in: folders)
    let names = Set(files.map(\.name)).sorted()
    for name in names {
        // Files that share a name: the one a prompt gets, and how many it hides.
        let same = files.filter { $0.name == name }
        guard same.count > 1, let used = chosen?(name) else {
            session.io.output(line(name))
            continue
        }
        session.io.output(line(name) + "  (\(same.count) files have this name; it means \(used.path), rename the others to use them)")
    }
    let places = folders.map(\.path).joined(separator: ", ")
    session.io.output(names.isEmpty ? "no \(kind.many) (*.safetensors, *.pt) in \(places); 'set \(setting) DIR' names another folder"
                                    : "\(names.count) \(names.count == 1 ? kind.one : kind.many) in \(places)\(hint)")
}
