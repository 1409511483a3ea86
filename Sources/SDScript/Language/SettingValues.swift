import Diffusion
import FileErrors
import Foundation
import Imaging

// The value parsers `set` shares with the commands that take the same values (`seed`, `model`, `init`, `mask`).

/// The step counts `sampler` takes, when `steps` is not one of them; nil when it is. The engine's
/// own check (`Sampler.makeScheduler`) with SD1.5's scheduler config, so `set` refuses what `gen`
/// would.
func acceptedSteps(_ steps: Int, by sampler: Sampler) -> ClosedRange<Int>? {
    do {
        _ = try sampler.makeScheduler(config: .sd15, steps: steps)
        return nil
    } catch SchedulerError.invalidSteps(_, _, let range) {
        return range
    } catch {
        return nil  // a config option this port lacks is the model's problem, reported at gen
    }
}

/// `N` (0 … 2^64-1), `random`, or `last`: the seed of the last image made (A1111's recycle button).
func parseSeed(_ value: String, command: String, session: Session) throws -> SeedMode {
    if value.lowercased() == "random" || value == "-1" { return .random }
    if value.lowercased() == "last" {
        guard let last = session.images.last else {
            throw ScriptError.notReady(command: command, reason: "no image yet; 'seed last' takes the seed of the last image made")
        }
        return .fixed(last.request.engine.seed)
    }
    guard let seed = UInt64(value) else {
        throw ScriptError.badArgument(command: command, argument: value,
                                      reason: "expected a whole number from 0 to \(UInt64.max), 'random' or 'last', got",
                                      suggestion: closestWord(to: value, in: ["random", "last"]))
    }
    return .fixed(seed)
}

/// `path` if a file or folder is there.
func checkedModelPath(_ path: String, command: String) throws -> String {
    let expanded = path.expandingTilde
    guard FileManager.default.fileExists(atPath: expanded) else {
        throw ScriptError.file(command: command, path: path, reason: "no such file or folder")
    }
    return path
}

/// `set hires`: a scale (`2`, `1.5`, `x2`), a size (`1024x768`), or `off`.
func parseHires(_ value: String) throws -> HiresSize? {
    let word = value.lowercased()
    if ["off", "none", "0", "1"].contains(word) { return nil }
    let parts = word.split(separator: "x", omittingEmptySubsequences: false)
    if parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]) {
        guard RequestLimits.acceptsSide(w), RequestLimits.acceptsSide(h) else {
            throw ScriptError.badArgument(command: "set hires", argument: value, reason: "expected sides that are \(RequestLimits.sideDescription), got")
        }
        return .size(width: w, height: h)
    }
    let number = word.hasPrefix("x") ? String(word.dropFirst()) : word
    guard let scale = Double(number), scale.isFinite, scale > 1, scale <= 8 else {
        throw ScriptError.badArgument(command: "set hires", argument: value,
                                      reason: "expected a scale above 1 and at most 8 (e.g. 2), a size WxH, or off (also 0, 1 or none), got")
    }
    return .scale(scale)
}

/// `value` expanded, when it names a file that starts as a PNG or JPEG does: what `init` and `mask`
/// can tell when they are typed, rather than at the next `gen` (which reads the whole picture).
func checkedImagePath(_ value: String, command: String) throws -> String {
    let path = value.expandingTilde
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
        throw ScriptError.file(command: command, path: value, reason: "no such file")
    }
    if isFolder.boolValue { throw ScriptError.file(command: command, path: value, reason: "is a folder, not a file") }
    // Decoded whole, once, when typed: a file cut short or one libpng or libjpeg refuses is named
    // here, not at the next `gen`. (A 4000×3000 photo decodes in a tenth of a second.)
    do {
        _ = try ImageRecipeReader.pixelsAndAlpha(URL(fileURLWithPath: path))
    } catch ImagingError.readFailed(_, let reason) {
        throw ScriptError.file(command: command, path: value, reason: reason)
    }
    return path
}

/// `init FILE` (a path, resolved as typed), `init N` (image N of this session) or `init last` (the
/// last image made, A1111's "send to img2img").
///
/// The transcript keeps `N` as the PNG that image was saved to, when it was, so a replay from
/// anywhere starts from the same pixels; an unsaved image's number is kept (the replay makes it again).
func parseInit(_ value: String, session: Session, command: String = "init") throws -> InitImage {
    if isLastImage(value) {
        guard !session.images.isEmpty else {
            throw ScriptError.notReady(command: command, reason: "no image yet; 'init last' starts from the last image made, 'gen' first")
        }
        session.log.line.replay = "\(command) \(session.images.count)"
        return try parseInit(String(session.images.count), session: session, command: command)
    }
    if let index = Int(value) {
        guard !session.images.isEmpty else {
            throw ScriptError.notReady(command: command, reason: "no image yet; 'init FILE' starts from a picture, or 'gen' first")
        }
        guard (1...session.images.count).contains(index) else {
            throw ScriptError.badArgument(command: command, argument: value,
                                          reason: "expected an image number from 1 to \(session.images.count), or a file, got")
        }
        if let png = session.images[index - 1].savedPaths.first(where: { $0.lowercased().hasSuffix(".png") }) {
            session.log.line.replay = "\(command) \(absolute(png))"
        }
        return .history(index)
    }
    return .file(try checkedImagePath(value, command: command))
}

/// `last` where an image number is taken (`init last`): the last image made.
func isLastImage(_ value: String) -> Bool { value.lowercased() == "last" }
