import Diffusion
import Foundation
import Imaging

/// One cell of a grid: its place on the axes and the request it makes.
struct GridCell {
    let x: Int, y: Int, z: Int
    var request: RequestDefaults

    /// Whether this cell can join `previous`'s engine batch: the same request but the next seed,
    /// so the text is encoded once for both (`gen N`'s path).
    func continuesBatch(of previous: GridCell) -> Bool {
        guard case .fixed(let seed) = request.seed, case .fixed(let before) = previous.request.seed,
              before < UInt64.max, seed == before + 1
        else { return false }
        var same = request
        same.seed = previous.request.seed
        return same == previous.request
    }
}

extension Session {
    /// `grid X=AXIS:VALUES [Y=…] [Z=…]`: every cell generated in order (X fastest, then Y, then Z),
    /// kept in the history and autosaved as `gen`'s images are, then one labelled sheet of them all.
    /// Ctrl-C stops after the cell being made; the finished cells are kept and make the sheet.
    func grid(_ argument: String, at location: SourceLocation?) throws {
        var spec = try GridSpec.parse(argument)
        spec.drawRandomSeeds(drawSeed)
        var cells = try plan(spec)
        if let limit = spec.cellLimit { cells = Array(cells.prefix(limit)) }
        try checkRequests(spec, cells)
        try checkSheetSize(spec, cells)
        // The labels' font, before minutes of cells rather than after them.
        _ = try labelFont(for: "grid")
        try confirmSize(spec, cells: cells.count, typed: location == nil)
        if cells.contains(where: { $0.request.seed == .random }) {
            // One seed for every cell without one, as A1111's X/Y/Z plot fixes a random seed.
            let seed = drawSeed()
            log.line.preamble.append("seed \(seed) # random")
            for i in cells.indices where cells[i].request.seed == .random { cells[i].request.seed = .fixed(seed) }
        }
        if settings.resources.draft != nil {
            io.output("grid: the cells use your own settings, not draft mode's (a grid compares settings, so each cell is rendered as its recipe says)")
        }
        _ = try loadedGenerator(for: "grid")
        history.startBatch()
        let preview = settings.output.preview
        // Each cell is listed as it is made; the sheet is the one picture drawn.
        settings.output.preview = .off
        var made: [Int: SessionImage] = [:]
        var stopped: Error?
        let progress = GridProgressIO(io, total: cells.count)
        io.clearInterrupt()
        defer { settings.output.preview = preview }
        do {
            var start = 0
            while start < cells.count {
                if io.isInterrupted { throw ScriptError.cancelled(completed: start, requested: cells.count) }
                var end = start + 1
                while end < cells.count, end - start < RequestLimits.batch.upperBound, cells[end].continuesBatch(of: cells[end - 1]) {
                    end += 1
                }
                try generateCells(cells, start..<end, progress: progress) { made[$0] = $1 }
                start = end
            }
        } catch ScriptError.cancelled {
            let kept = made.isEmpty ? "no cell was finished, so there is no sheet" : "the finished cells are kept and on the sheet"
            stopped = ScriptError.generation("cancelled after \(made.count) of \(cells.count) cells; \(kept)", command: "grid")
        } catch {
            // A failed autosave or an engine error: the cells made so far stay, as after Ctrl-C.
            stopped = error
        }
        settings.output.preview = preview
        // Should anything fail from here on, the transcript replays exactly the cells made.
        if !made.isEmpty { log.line.stoppedReplay = spec.replayLine(cells: made.count) }
        if !made.isEmpty { try makeSheet(spec, cells: cells, made: made) }
        if let stopped { throw stopped }
        log.line.replay = spec.replayLine()
    }

    /// Every cell's request, from the current settings with each axis's value applied by its
    /// setting's own rules (so a bad value gets `set`'s message), before anything is generated.
    private func plan(_ spec: GridSpec) throws -> [GridCell] {
        let saved = settings
        defer { settings = saved }
        var cells: [GridCell] = []
        for z in 0..<(spec.z?.values.count ?? 1) {
            for y in 0..<(spec.y?.values.count ?? 1) {
                for x in 0..<spec.x.values.count {
                    settings = saved
                    try applyAxis(spec.x, x, letter: "X", original: saved.request)
                    if let axis = spec.y { try applyAxis(axis, y, letter: "Y", original: saved.request) }
                    if let axis = spec.z { try applyAxis(axis, z, letter: "Z", original: saved.request) }
                    cells.append(GridCell(x: x, y: y, z: z, request: settings.request))
                }
            }
        }
        return cells
    }

    /// Applies value `i` of `axis` to `settings`.
    private func applyAxis(_ axis: GridAxis, _ i: Int, letter: String, original: RequestDefaults) throws {
        let value = axis.values[i]
        let command = "grid \(letter)=\(axis.kind.rawValue)"
        switch axis.kind {
        case .sr:
            // A1111's Prompt S/R: the first value is what each value replaces, in both prompts.
            let search = axis.values[0]
            guard original.prompt.contains(search) || original.negative.contains(search) else {
                throw ScriptError.badArgument(command: command, argument: search,
                                              reason: "the first value is the text each value replaces, but neither the prompt nor the negative prompt contains")
            }
            settings.request.prompt = settings.request.prompt.replacingOccurrences(of: search, with: value)
            settings.request.negative = settings.request.negative.replacingOccurrences(of: search, with: value)
        case .lora:
            guard let weight = Double(value), weight.isFinite else {
                throw ScriptError.badArgument(command: command, argument: value, reason: "expected a LoRA weight (a number), got")
            }
            settings.request.prompt = try reweightedLoRA(settings.request.prompt, weight: GridAxis.formatDecimal(weight), command: command)
        case .strength where settings.request.initImage == nil:
            throw ScriptError.notReady(command: command, reason: "strength is image-to-image's; set an init image first ('init FILE' or 'init N')")
        default:
            guard let key = SettingKey.named(axis.kind.rawValue) else { preconditionFailure("every other axis is a setting") }
            do {
                try key.apply(self, value)
            } catch ScriptError.badArgument(_, let argument, let reason, let suggestion) {
                throw ScriptError.badArgument(command: command, argument: argument, reason: reason, suggestion: suggestion)
            } catch ScriptError.notReady(_, let reason) {
                throw ScriptError.notReady(command: command, reason: reason)
            }
        }
    }

    /// The prompt with its one `<lora:NAME:W>` tag's weight set to `weight`.
    private func reweightedLoRA(_ prompt: String, weight: String, command: String) throws -> String {
        let pattern = try NSRegularExpression(pattern: #"<lora:([^:>]+)(:[^>]*)?>"#)
        let matches = pattern.matches(in: prompt, range: NSRange(prompt.startIndex..., in: prompt))
        guard matches.count == 1, let whole = Range(matches[0].range, in: prompt), let name = Range(matches[0].range(at: 1), in: prompt) else {
            throw ScriptError.notReady(command: command, reason: "a lora axis sets the weight of the prompt's one <lora:NAME:W> tag, "
                                       + "and the prompt has \(matches.count); use a prompt S/R axis (X=sr:…) to vary one of several")
        }
        return prompt.replacingCharacters(in: whole, with: "<lora:\(prompt[name]):\(weight)>")
    }

    /// Asks before a grid of more than `GridSpec.confirmationLimit` cells: at the prompt a yes/no
    /// question, in a script `--yes` on the line.
    /// Refuses the grid before its first cell when any cell asks what the engine refuses (a hires
    /// schedule too long for one cell's steps, say), naming that cell; the init image and mask are
    /// read and checked when its batch runs.
    private func checkRequests(_ spec: GridSpec, _ cells: [GridCell]) throws {
        let folders = loraDirectories()
        var checked = Set<String>()
        for cell in cells {
            let request = GenerationService.engineRequest(cell.request, prompt: cell.request.prompt, negative: cell.request.negative,
                                                          seed: 0, count: 1, initImage: nil, mask: nil)
            func refuse(_ reason: String) -> ScriptError {
                let label = [spec.x.label(cell.x), spec.y.map { $0.label(cell.y) }, spec.z.map { $0.label(cell.z) }].compactMap { $0 }
                return ScriptError.generation("the cell \(label.joined(separator: ", ")): \(reason); nothing was made", command: "grid")
            }
            do {
                try request.validate()
            } catch PipelineError.invalidRequest(let reason) {
                throw refuse(reason)
            }
            // Each LoRA a cell's prompt names (an S/R axis may bring one in) is found and read now,
            // rather than when that cell's turn comes after minutes of others.
            for lora in (try? ExtraNetworks.parse(cell.request.prompt))?.loras ?? [] where checked.insert(lora.name).inserted {
                do {
                    _ = try LoRAFile(url: LoRALibrary.locate(lora.name, in: folders))
                } catch LoRAError.notFound(let name, _) {
                    let near = closestWord(to: name, in: LoRALibrary.names(in: folders)).map { " (did you mean '\($0)'?)" } ?? ""
                    throw refuse("no LoRA named '\(name)' in \(folders.map(\.path).joined(separator: ", "))\(near)")
                } catch {
                    throw refuse("\(error)")
                }
            }
        }
    }

    /// The most pixels a sheet may have, A1111's default `img_max_size_mp` for its grids: a sheet is
    /// held whole in memory (3 bytes a pixel) and written as one PNG.
    static let sheetMegapixelLimit = 200.0

    /// Refuses a grid whose sheet (every cell at the largest cell's size, labels aside) would pass
    /// `sheetMegapixelLimit`, before any cell is made.
    private func checkSheetSize(_ spec: GridSpec, _ cells: [GridCell]) throws {
        let sizes = cells.map { $0.request.hiresFix.map { ($0.width, $0.height) } ?? ($0.request.width, $0.request.height) }
        let width = (sizes.map(\.0).max() ?? 0) * spec.x.values.count * (spec.z?.values.count ?? 1)
        let height = (sizes.map(\.1).max() ?? 0) * (spec.y?.values.count ?? 1)
        let megapixels = Double(width) * Double(height) / 1e6
        guard megapixels > Self.sheetMegapixelLimit else { return }
        throw ScriptError.notReady(command: "grid", reason: "its sheet would be at least \(width)x\(height), "
            + "\(Int(megapixels.rounded())) megapixels, more than \(Int(Self.sheetMegapixelLimit)) (A1111's limit too); "
            + "use fewer values or a smaller size")
    }

    private func confirmSize(_ spec: GridSpec, cells: Int, typed: Bool) throws {
        guard cells > GridSpec.confirmationLimit, !spec.confirmed else { return }
        let reason = "\(cells) cells are more than \(GridSpec.confirmationLimit)"
        guard typed else { throw ScriptError.notReady(command: "grid", reason: "\(reason): add --yes to the line to make them all") }
        guard io.confirm("grid: make \(cells) cells? [y/N] ") else {
            throw ScriptError.notReady(command: "grid", reason: "\(reason) and were not confirmed; nothing made ('grid … --yes' skips the question)")
        }
    }

    /// Generates `cells[range]` as one engine batch (they differ only by consecutive seeds) and keeps
    /// each image as `gen` does.
    private func generateCells(_ cells: [GridCell], _ range: Range<Int>, progress: GridProgressIO,
                               made: (Int, SessionImage) -> Void) throws {
        guard case .fixed(let base) = cells[range.lowerBound].request.seed else { preconditionFailure("seeds are fixed by now") }
        var request = try generation.resolve(cells[range.lowerBound].request, seed: base, count: range.count, command: "grid",
                                             history: history.images, note: { [io] in io.output($0) })
        let size = request.engine.hires.map { ($0.width, $0.height) } ?? (request.engine.width, request.engine.height)
        request.engine.vaeTiling = try settleVAETiling(cells[range.lowerBound].request.vaeTiling, width: size.0, height: size.1, command: "grid")
        request.engine.precision = settledPrecision(cells[range.lowerBound].request.precision, drafting: false)
        var cellSettings = settings
        cellSettings.request = cells[range.lowerBound].request
        // A grid renders the cells' own settings: a draft's LoRA, sampling and TAESD are not applied.
        cellSettings.resources.draft = nil
        let vae = generation.vaeFile(cellSettings.resources)
        progress.offset = range.lowerBound
        try generation.generate(request, settings: cellSettings, io: progress, command: "grid") { result, pixels, model in
            let offset = Int(result.request.seed &- base)
            var entry = SessionImage(index: history.nextIndex, request: request.image(offset), pixels: pixels, model: model,
                                     loras: result.loras, seconds: result.seconds, decoder: result.decoder, sha256: pixelHash(pixels))
            entry.vae = vae
            made(range.lowerBound + offset, entry)
            try keep(entry, command: "grid")
        }
    }
}

/// Passes events on, numbering the progress of each batch's images as cells of the whole grid.
final class GridProgressIO: SessionIO {
    private let base: SessionIO
    private let total: Int
    var offset = 0

    init(_ base: SessionIO, total: Int) {
        self.base = base
        self.total = total
    }

    func emit(_ event: SessionEvent) {
        if case .progress(let step, let index, _, let preview) = event {
            base.emit(.progress(step, index: offset + index, count: total, preview: preview))
        } else {
            base.emit(event)
        }
    }
    func previewStatus(_ mode: PreviewMode) -> String { base.previewStatus(mode) }
    var isInterrupted: Bool { base.isInterrupted }
    func clearInterrupt() { base.clearInterrupt() }
    func confirm(_ question: String) -> Bool { base.confirm(question) }
}
