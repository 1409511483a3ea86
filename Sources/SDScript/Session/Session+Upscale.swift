import Diffusion
import FileErrors
import Foundation
import Imaging

/// `upscale [N] [MODEL] [xS]` as typed: each part optional, in this order.
struct UpscaleArguments: Equatable {
    /// The history number of the image; nil: the last.
    var image: Int?
    /// A path or a name found in the upscaler folders; nil: the last used, or the only one found.
    var model: String?
    /// The output scale; nil: the model's.
    var factor: Double?

    static let usage = "upscale [N] [MODEL] [xS]"

    /// - Throws: `ScriptError.badArgument` for a scale out of `UpscaleLimits.scale`.
    init(_ argument: String) throws {
        var rest = argument.trimmingWhitespace()
        let words = rest.words
        if let first = words.first, let number = Int(first) {
            image = number
            rest = String(rest.dropFirst(first.count)).trimmingWhitespace()
        }
        // A last word of x and a number is the scale (a model named x4plus stays a model).
        if let last = rest.words.last, last.first == "x" || last.first == "X", let factor = Double(last.dropFirst()) {
            guard factor.isFinite, UpscaleLimits.scale.contains(factor) else {
                throw ScriptError.badArgument(command: "upscale", argument: last,
                                              reason: "expected a scale from x\(formatNumber(Float(UpscaleLimits.scale.lowerBound))) to x\(formatNumber(Float(UpscaleLimits.scale.upperBound))) (e.g. x4, x2.5), got")
            }
            self.factor = factor
            rest = String(rest.dropLast(last.count)).trimmingWhitespace()
        }
        model = rest.isEmpty ? nil : rest
    }
}

extension GenerationService {
    /// Where `upscale NAME` looks: `upscaler-dir` when set, then A1111's `models/ESRGAN` and
    /// `models/RealESRGAN` in the current folder and `ESRGAN`, `RealESRGAN` beside the model's folder.
    func upscalerDirectories(_ resources: ResourceSettings) -> [URL] {
        let all = folders(chosen: resources.upscalerDir, here: "models/ESRGAN", besideModels: "ESRGAN", model: resources.modelToLoad)
            + folders(chosen: nil, here: "models/RealESRGAN", besideModels: "RealESRGAN", model: resources.modelToLoad)
        var seen = Set<String>()
        return all.filter { seen.insert($0.path).inserted }
    }
}

extension Session {
    func upscalerDirectories() -> [URL] { generation.upscalerDirectories(settings.resources) }

    /// `upscale`: makes a new image from image N with the upscaler, adds it to the history, saves it
    /// as `gen` does (autosave) with the source's recipe and A1111's extras keys, and records it so
    /// `run --check` replays it.
    func upscale(_ arguments: UpscaleArguments, at location: SourceLocation?) throws {
        guard let last = images.last else {
            throw ScriptError.notReady(command: "upscale", reason: "no image yet; run 'gen' first, then upscale")
        }
        let number = arguments.image ?? last.index
        guard (1...images.count).contains(number) else {
            throw ScriptError.badArgument(command: "upscale", argument: String(number),
                                          reason: "expected an image number from 1 to \(images.count), got")
        }
        let source = images[number - 1]
        let url = try upscalerFile(arguments.model, at: location)
        let upscaler: Upscaler
        do {
            upscaler = try upscaling.upscaler(at: url)
        } catch {
            throw ScriptError.engine(EngineFailure(error), command: "upscale")
        }
        let factor = arguments.factor ?? Double(upscaler.scale)
        let (width, height) = (source.pixels.width, source.pixels.height)
        let target = UpscaleService.targetSize(width: width, height: height, factor: factor, modelScale: upscaler.scale)
        let passes = upscaler.passes(width: width, height: height, toCover: target)
        // The last pass makes the largest image on the way.
        let largest = passes.last.map { ($0.width * upscaler.scale, $0.height * upscaler.scale) } ?? (target.width, target.height)
        for (w, h) in [(target.width, target.height), largest] where max(w, h) > UpscaleLimits.maxSide {
            throw ScriptError.badArgument(command: "upscale", argument: "x\(formatNumber(Float(factor)))",
                                          reason: "image \(number) is \(width)x\(height); \(upscaler.name) would make \(w)x\(h), more than \(UpscaleLimits.maxSide) a side; a smaller scale than")
        }

        io.clearInterrupt()
        let token = CancellationToken()
        var reached = UpscaleProgress(tile: 0, tiles: 0, elapsed: 0)
        let start = DispatchTime.now().uptimeNanoseconds
        let result: (image: RGBImage, resized: Bool)
        do {
            result = try token.watching({ io.isInterrupted }) {
                try upscaling.upscale(source.pixels, with: upscaler, to: target, tiling: TileOptions(tile: settings.resources.upscaleTile), progress: { progress in
                    reached = progress
                    io.emit(.upscaleProgress(progress))
                }, cancellation: token)
            }
            io.progressDone()
        } catch {
            io.progressDone()
            if io.isInterrupted || (error as? PipelineError) == .cancelled {
                throw ScriptError.generation("cancelled in tile \(max(reached.tile, 1)) of \(max(reached.tiles, 1)); no image was added",
                                             command: "upscale")
            }
            throw ScriptError.engine(EngineFailure(error), command: "upscale")
        }
        upscaling.used(url)

        var entry = SessionImage(index: history.nextIndex, request: source.request, pixels: result.image, model: source.model,
                                 loras: source.loras, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
                                 decoder: source.decoder, sha256: pixelHash(result.image))
        entry.vae = source.vae
        entry.upscale = UpscaleRecord(upscaler: upscaler.name, factor: factor, source: number, resize: result.resized ? "Lanczos" : nil)
        log.line.replay = "upscale \(number) \(absolute(url.path)) x\(formatNumber(Float(factor)))"
        history.startBatch()
        try keep(entry, command: "upscale")
    }

    /// The upscaler file `given` names (a path, resolved as `run` does, or a name in the folders); with
    /// none given, the last one used, or the only one found.
    private func upscalerFile(_ given: String?, at location: SourceLocation?) throws -> URL {
        let folders = upscalerDirectories()
        let places = folders.map(\.path).joined(separator: ", ")
        guard let given else {
            if let last = upscaling.lastUsed { return last }
            let found = UpscalerLibrary.files(in: folders)
            if found.count == 1 { return found[0].url }
            if found.isEmpty {
                throw ScriptError.notReady(command: "upscale", reason: "no upscaler found in \(places); put one there (RealESRGAN_x4plus.pth or .safetensors), 'set upscaler-dir DIR', or give its path: upscale PATH")
            }
            let names = found.prefix(5).map(\.name).joined(separator: ", ") + (found.count > 5 ? ", …" : "")
            throw ScriptError.notReady(command: "upscale", reason: "\(found.count) upscalers found (\(names)); name one: upscale NAME")
        }
        let path = resolve(given, relativeTo: location)
        if FileManager.default.fileExists(atPath: path) { return URL(fileURLWithPath: path) }
        if let url = UpscalerLibrary.find(given, in: folders) { return url }
        throw ScriptError.badArgument(command: "upscale", argument: given,
                                      reason: "no such file, and no upscaler of that name in \(places):",
                                      suggestion: closestWord(to: given, in: UpscalerLibrary.files(in: folders).map(\.name)))
    }

    /// `set hires-upscaler`: a built-in method, or an upscaler network by name or path (checked by
    /// loading it, so a file that is not one fails here rather than after the first pass). The
    /// transcript keeps a network as its absolute path.
    func setHiresUpscaler(_ value: String) throws {
        if let builtIn = HiresUpscaler(rawValue: value.lowercased()) {
            settings.request.hiresUpscaler = builtIn
            settings.request.hiresModel = nil
            return
        }
        let folders = upscalerDirectories()
        let path = value.expandingTilde
        let url: URL
        if FileManager.default.fileExists(atPath: path) {
            url = URL(fileURLWithPath: absolute(path))
        } else if let found = UpscalerLibrary.find(value, in: folders) {
            url = found
        } else {
            let builtIns = HiresUpscaler.allCases.map(\.rawValue)
            throw ScriptError.badArgument(command: "set hires-upscaler", argument: value,
                                          reason: "expected \(builtIns.joined(separator: ", ")), or an upscaler's file or its name in \(folders.map(\.path).joined(separator: ", ")); got",
                                          suggestion: closestWord(to: value, in: builtIns + UpscalerLibrary.files(in: folders).map(\.name)))
        }
        do {
            _ = try upscaling.upscaler(at: url)
        } catch {
            throw ScriptError.engine(EngineFailure(error), command: "set hires-upscaler")
        }
        settings.request.hiresModel = url.path
        log.line.replay = "set hires-upscaler \(absolute(url.path))"
    }

    /// `upscalers`: each upscaler file found, with what it is, then where sdrepl looked.
    func listUpscalers() {
        let folders = upscalerDirectories()
        let found = UpscalerLibrary.files(in: folders)
        for (name, url) in found {
            let what: String
            do {
                let upscaler = try Upscaler.load(url)  // the header and shapes only: weights convert on first use
                let c = upscaler.network.config
                what = "x\(upscaler.scale), \(upscaler.network.layout.rawValue) RRDBNet, \(c.blocks) blocks, \(c.features) features"
            } catch {
                what = "not usable: " + FileErrorText.reason(error)
            }
            io.output("\(name)  (\(what))")
        }
        let places = folders.map(\.path).joined(separator: ", ")
        io.output(found.isEmpty ? "no upscalers (*.safetensors, *.pth) in \(places); 'set upscaler-dir DIR' names another folder"
                                : "\(found.count) upscaler\(found.count == 1 ? "" : "s") in \(places); 'upscale [N] NAME' uses one")
    }
}
