import Diffusion
import FileErrors
import Foundation

/// One key of `set KEY VALUE` / `unset KEY`: how to read, show and reset it.
public struct SettingKey {
    public let name: String
    /// The accepted values, for `help set` ("1…1000", "auto|sixel|off").
    public let values: String
    let kind: ArgumentKind
    /// The words completion offers for the value (nil: file paths, or none).
    let choices: (Session) -> [String]?
    let completesPaths: Bool
    /// Validates `value` and stores it; throws `ScriptError.badArgument` naming the key.
    let apply: (Session, String) throws -> Void
    let show: (SessionSettings) -> String
    let reset: (inout SessionSettings) -> Void
    /// How the transcript records `set KEY VALUE` (input paths absolute, a random seed as a comment).
    var transcript: TranscriptRule = .asTyped

    /// Whether `value` is a file or folder to read, found as the commands that take paths find theirs
    /// (in a script, relative to its folder; `model x`, `set model x` alike): an input path key's
    /// value other than a history number (`set init 3`), or a path for a key that also takes names
    /// (`set vae auto`, `set hires-upscaler 4x-UltraSharp`). `outdir` is where outputs go, and goes
    /// where the user is.
    func readsPath(_ value: String) -> Bool {
        guard completesPaths, name != "outdir", Int(value) == nil else { return false }
        if case .inputPath = transcript { return true }
        return value.contains("/")
    }

    /// What `set clip-skip` takes (and `load` keeps).
    static let clipSkipRange = 1...12

    /// What `set strength` and `set hires-strength` take (and `load` keeps).
    static let strengthRange: ClosedRange<Double> = 0.01...1

    /// The table, in the order `set` lists it.
    public static let all: [SettingKey] = [
        text("prompt", values: "TEXT", \.request.prompt, default: ""),
        text("negative", values: "TEXT", \.request.negative, default: ""),
        SettingKey(name: "style", values: "a name from 'styles'", kind: .words, choices: { $0.components.styles.names },
                   completesPaths: false,
                   apply: { session, value in
                       let names = session.components.styles.names
                       guard let match = names.first(where: { $0.lowercased() == value.lowercased() }) else {
                           throw ScriptError.badArgument(command: "set style", argument: value, reason: "unknown style",
                                                         suggestion: closestWord(to: value, in: names))
                       }
                       session.settings.request.style = match
                   },
                   show: { $0.request.style }, reset: { $0.request.style = RequestDefaults().style }),
        SettingKey(name: "seed", values: "N|random|last", kind: .words, choices: { _ in ["random", "last"] }, completesPaths: false,
                   apply: { session, value in session.settings.request.seed = try parseSeed(value, command: "set seed", session: session) },
                   show: { settings in
                       if case .fixed(let seed) = settings.request.seed { return String(seed) }
                       return "random"
                   },
                   reset: { $0.request.seed = RequestDefaults().seed }, transcript: .seedChoice),
        integer("steps", range: RequestLimits.steps, \.request.steps) { session, steps in
            if let range = acceptedSteps(steps, by: session.settings.request.sampler) {
                throw ScriptError.badArgument(command: "set steps", argument: String(steps),
                                              reason: "\(session.settings.request.sampler) takes \(range.lowerBound) to \(range.upperBound) steps, got")
            }
        },
        SettingKey(name: "cfg", values: "\(Int(RequestLimits.guidance.lowerBound))…\(Int(RequestLimits.guidance.upperBound))",
                   kind: .words, choices: { _ in nil }, completesPaths: false,
                   apply: { session, value in
                       guard let cfg = Float(value), cfg.isFinite, RequestLimits.guidance.contains(cfg) else {
                           throw ScriptError.badArgument(command: "set cfg", argument: value,
                                                         reason: "expected a number from \(RequestLimits.guidanceDescription), got")
                       }
                       session.settings.request.cfg = cfg
                   },
                   show: { formatNumber($0.request.cfg) }, reset: { $0.request.cfg = RequestDefaults().cfg }),
        SettingKey(name: "size", values: "WxH or N (NxN), \(RequestLimits.sideDescription.replacingOccurrences(of: "a multiple", with: "multiples"))",
                   kind: .words, choices: { _ in ["512x512", "512x768", "768x512", "640x640", "256x256"] }, completesPaths: false,
                   apply: { session, value in
                       guard let size = parseSize(value) ?? Int(value).map({ (width: $0, height: $0) }) else {
                           throw ScriptError.badArgument(command: "set size", argument: value,
                                                         reason: "expected WxH (e.g. 512x768) or N for NxN, got")
                       }
                       for side in [size.width, size.height] where !RequestLimits.acceptsSide(side) {
                           throw ScriptError.badArgument(command: "set size", argument: value,
                                                         reason: "width and height must be \(RequestLimits.sideDescription.replacingOccurrences(of: "a multiple", with: "multiples")), got")
                       }
                       session.settings.request.width = size.width
                       session.settings.request.height = size.height
                   },
                   show: { "\($0.request.width)x\($0.request.height)" },
                   reset: { $0.request.width = RequestDefaults().width; $0.request.height = RequestDefaults().height }),
        SettingKey(name: "sampler", values: Sampler.allCases.map(\.rawValue).joined(separator: "|") + " (or A1111's names)",
                   kind: .words, choices: { _ in Sampler.allCases.map(\.rawValue) }, completesPaths: false,
                   apply: { session, value in
                       guard let sampler = try? Sampler(name: value) else {
                           throw ScriptError.badArgument(command: "set sampler", argument: value, reason: "unknown sampler",
                                                         suggestion: closestWord(to: value, in: Sampler.allNames)
                                                             .flatMap { try? Sampler(name: $0) }?.rawValue)
                       }
                       let steps = session.settings.request.steps
                       if let range = acceptedSteps(steps, by: sampler) {
                           throw ScriptError.notReady(command: "set sampler", reason: "\(sampler) takes \(range.lowerBound) to \(range.upperBound) steps "
                                                      + "and steps is \(steps): 'set steps \(range.upperBound)' or fewer first")
                       }
                       session.settings.request.sampler = sampler
                   },
                   show: { $0.request.sampler.rawValue }, reset: { $0.request.sampler = RequestDefaults().sampler }),
        integer("batch", range: RequestLimits.batch, \.request.batch),
        SettingKey(name: "model", values: "PATH (a .safetensors or .ckpt file, or a diffusers folder)", kind: .text,
                   choices: { _ in nil }, completesPaths: true,
                   apply: { session, value in session.settings.resources.model = try checkedModelPath(value, command: "set model") },
                   show: { settings in
                       settings.resources.model
                           ?? settings.resources.replayedModel.map { "\($0) (as the transcript being replayed recorded)" }
                           ?? "(found by discovery; see 'models')"
                   },
                   reset: { $0.resources.model = nil },
                   transcript: .inputPath()),
        integer("clip-skip", range: clipSkipRange, \.request.clipSkip),
        choice("preview", PreviewMode.self, \.output.preview),
        SettingKey(name: "outdir", values: "DIR", kind: .text, choices: { _ in nil }, completesPaths: true,
                   apply: { session, value in
                       // Said now rather than at the first save; a check writes nothing, so it need not.
                       if !session.savingDisabled, let reason = FileErrorText.unwritableFolderReason(value.expandingTilde) {
                           throw ScriptError.file(command: "set outdir", path: value, reason: reason + "; give a folder images can be written to")
                       }
                       session.settings.output.outdir = value
                   },
                   show: { $0.output.outdir }, reset: { $0.output.outdir = OutputSettings().outdir }),
        choice("memory", MemoryMode.self, \.resources.memory),
        SettingKey(name: "styles", values: "FILE (an A1111 styles.csv)", kind: .text, choices: { _ in nil },
                   completesPaths: true,
                   apply: { session, value in
                       do {
                           try session.components.styles.load(csv: value)
                       } catch let error as ScriptError {
                           throw error
                       } catch {
                           throw ScriptError.file(command: "set styles", path: value, reason: fileProblem(error))
                       }
                       session.settings.resources.stylesFile = value
                   },
                   show: { $0.resources.stylesFile ?? "(built-in presets only)" }, reset: { $0.resources.stylesFile = nil },
                   transcript: .inputPath()),
        integer("jpeg-quality", range: 1...100, \.output.jpegQuality),
        onOff("autosave", \.output.autosave, help: "gen saves each image at once"),
        folder("lora-dir", "where <lora:NAME> finds NAME.safetensors (or .pt)", \.resources.loraDir,
               defaults: "(models/Lora, and Lora beside the model's folder)"),
        folder("embeddings", "textual-inversion NAME.safetensors or .pt, used by writing NAME", \.resources.embeddingsDir,
               defaults: "(embeddings, and embeddings beside the models folder)"),
        integer("upscale-tile", range: 0...1024, \.resources.upscaleTile, values: "0 (the whole image at once) or 32…1024", check: { _, tile in
            guard tile == 0 || tile >= 32 else {
                throw ScriptError.badArgument(command: "set upscale-tile", argument: String(tile),
                                              reason: "expected 0 (the whole image at once) or a side from 32 to 1024 pixels, got")
            }
        }),
        folder("upscaler-dir", "where 'upscale NAME' finds NAME.safetensors or NAME.pth", \.resources.upscalerDir,
               defaults: "(models/ESRGAN, models/RealESRGAN, and ESRGAN, RealESRGAN beside the model's folder)"),
        SettingKey(name: "init", values: "FILE (a PNG or JPEG), N (image N of this session) or last: image-to-image",
                   kind: .text, choices: { _ in nil }, completesPaths: true,
                   apply: { session, value in session.settings.request.initImage = try parseInit(value, session: session, command: "set init") },
                   show: { $0.request.initImage.map { "\($0)" } ?? "(none: text to image)" },
                   reset: { $0.request.initImage = nil }, transcript: .inputPath()),
        fraction("strength", range: strengthRange, \.request.strength, help: "image-to-image: how much is repainted"),
        SettingKey(name: "mask", values: "FILE (white repaints; a grayscale image or a PNG's alpha): inpainting, with 'init'",
                   kind: .text, choices: { _ in nil }, completesPaths: true,
                   apply: { session, value in session.settings.request.mask = try checkedImagePath(value, command: "set mask") },
                   show: { $0.request.mask ?? "(none)" }, reset: { $0.request.mask = nil }, transcript: .inputPath()),
        integer("mask-blur", range: RequestLimits.maskBlur, \.request.maskBlur),
        onOff("inpaint-paste", \.request.inpaintPaste, help: "inpainting: the original kept outside the blurred mask, as A1111"),
        onOff("exif-rotate", \.request.exifOrientation,
              help: "turn a JPEG init image or mask upright as its EXIF orientation says, as A1111 does; off: as stored"),
        SettingKey(name: "vae-tiling", values: "auto|on|off (images over 512 encoded and decoded in tiles, as diffusers' enable_vae_tiling: "
                   + "less memory, slightly other pixels; auto: on in low-memory mode)",
                   kind: .words, choices: { _ in VAETiling.allCases.map(\.rawValue) }, completesPaths: false,
                   apply: { session, value in
                       guard let choice = VAETiling(setting: value) else {
                           throw ScriptError.badArgument(command: "set vae-tiling", argument: value, reason: "expected auto, on or off, got",
                                                         suggestion: closestWord(to: value, in: VAETiling.allCases.map(\.rawValue)))
                       }
                       session.settings.request.vaeTiling = choice
                   },
                   show: { $0.request.vaeTiling.rawValue }, reset: { $0.request.vaeTiling = RequestDefaults().vaeTiling }),
        SettingKey(name: "hires", values: "SCALE|WxH|off (hires fix: a second pass at a larger size)", kind: .words,
                   choices: { _ in ["off", "1.5", "2"] }, completesPaths: false,
                   apply: { session, value in session.settings.request.hires = try parseHires(value) },
                   show: { $0.request.hires.map { "\($0)" } ?? "off" }, reset: { $0.request.hires = nil }),
        integer("hires-steps", range: 0...RequestLimits.steps.upperBound, \.request.hiresSteps),
        fraction("hires-strength", range: strengthRange, \.request.hiresStrength, help: "hires fix: how much the second pass repaints"),
        SettingKey(name: "hires-upscaler", values: HiresUpscaler.allCases.map(\.rawValue).joined(separator: "|") + "|an upscaler's NAME or PATH",
                   kind: .text, choices: { session in HiresUpscaler.allCases.map(\.rawValue) + UpscalerLibrary.files(in: session.upscalerDirectories()).map(\.name) },
                   completesPaths: true,
                   apply: { session, value in try session.setHiresUpscaler(value) },
                   show: { $0.request.hiresModel.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent } ?? $0.request.hiresUpscaler.rawValue },
                   reset: { $0.request.hiresUpscaler = RequestDefaults().hiresUpscaler; $0.request.hiresModel = nil },
                   transcript: .resolved),
        SettingKey(name: "spacing", values: "model|" + TimestepSpacing.allCases.map(\.rawValue).joined(separator: "|"),
                   kind: .words, choices: { _ in ["model"] + TimestepSpacing.allCases.map(\.rawValue) }, completesPaths: false,
                   apply: { session, value in
                       let word = value.lowercased()
                       let options = ["model"] + TimestepSpacing.allCases.map(\.rawValue)
                       guard word == "model" || TimestepSpacing(rawValue: word) != nil else {
                           throw ScriptError.badArgument(command: "set spacing", argument: value,
                                                         reason: "unknown spacing (\(options.joined(separator: ", "))):",
                                                         suggestion: closestWord(to: value, in: options))
                       }
                       session.settings.request.spacing = TimestepSpacing(rawValue: word)
                       let sampler = session.settings.request.sampler
                       if word != "model", !sampler.takesTimestepSpacing {
                           session.io.output("note: \(sampler.rawValue) sets its own timesteps whatever the spacing (as in diffusers); "
                                             + "spacing changes the other samplers")
                       }
                   },
                   show: { $0.request.spacing?.rawValue ?? "model" }, reset: { $0.request.spacing = nil }),
        fraction("eta", range: 0...1, \.request.eta, help: "TCD's stochasticity (gamma)") { session in
            let sampler = session.settings.request.sampler
            if sampler != .tcd {
                session.io.output("note: eta is TCD's gamma; the tcd sampler uses it, \(sampler.rawValue) does not")
            }
        },
        deepCache,
        precision,
        SettingKey(name: "mode", values: "draft (a few-step LoRA from the LoRA folders, its sampling, TAESD) | final (your own settings)",
                   kind: .text, choices: { _ in ["draft", "final"] }, completesPaths: false, apply: { try $0.setMode($1) },
                   show: { $0.resources.draft.map { "draft " + $0.words } ?? "final" }, reset: { $0.resources.draft = nil },
                   transcript: .resolved),
        SettingKey(name: "vae", values: vaeValues, kind: .text, choices: { vaeChoices($0) }, completesPaths: true,
                   apply: { try applyVAE($0, $1) },
                   show: { $0.resources.vae ?? "(the model's own VAE)" }, reset: { $0.resources.vae = nil }, transcript: .resolved),
        // Process-wide, as the environment variable it overrides: loaders consult PicklePolicy.current.
        SettingKey(name: "pickles", values: "on|off (read .ckpt/.pt/.pth weights without running anything in them, or refuse every pickle)",
                   kind: .words, choices: { _ in ["on", "off"] }, completesPaths: false,
                   apply: { session, value in
                       guard let policy = PicklePolicy(word: value) else {
                           throw ScriptError.badArgument(command: "set pickles", argument: value, reason: "expected on or off, got",
                                                         suggestion: closestWord(to: value, in: ["on", "off"]))
                       }
                       session.settings.resources.pickles = policy
                       PicklePolicy.current = policy
                   },
                   show: { $0.resources.pickles.rawValue },
                   reset: {
                       $0.resources.pickles = .environmentDefault
                       PicklePolicy.current = .environmentDefault
                   }),
    ]

    public static var names: [String] { all.map(\.name) }

    /// The value a new session starts with, as `set` shows it.
    public var defaultValue: String { show(SessionSettings()) }

    /// Other spellings `set` and `unset` accept (A1111's and diffusers' words).
    static let aliases = ["guidance": "cfg", "guidance-scale": "cfg", "cfg-scale": "cfg", "scale": "cfg",
                          "negative-prompt": "negative", "clipskip": "clip-skip", "sampler-name": "sampler",
                          "scheduler": "sampler", "quality": "jpeg-quality", "output": "outdir", "n": "batch"]

    /// `set width N` / `set height N`: one side of `size`, hidden from the listing.
    static let sides: [SettingKey] = [side("width", \.request.width), side("height", \.request.height)]

    public static func named(_ name: String) -> SettingKey? {
        let key = name.lowercased().replacingOccurrences(of: "_", with: "-")
        let canonical = aliases[key] ?? key
        return all.first { $0.name == canonical } ?? sides.first { $0.name == canonical }
    }

    private static func side(_ name: String, _ path: WritableKeyPath<SessionSettings, Int>) -> SettingKey {
        SettingKey(name: name, values: RequestLimits.sideDescription.replacingOccurrences(of: "a multiple", with: "multiples"),
                   kind: .words, choices: { _ in nil }, completesPaths: false,
                   apply: { session, value in
                       guard let number = Int(value), RequestLimits.acceptsSide(number) else {
                           throw ScriptError.badArgument(command: "set \(name)", argument: value,
                                                         reason: "expected \(RequestLimits.sideDescription), got")
                       }
                       session.settings[keyPath: path] = number
                   },
                   show: { String($0[keyPath: path]) },
                   reset: { $0[keyPath: path] = SessionSettings()[keyPath: path] })
    }

    private static func text(_ name: String, values: String, _ path: WritableKeyPath<SessionSettings, String>,
                             default value: String) -> SettingKey {
        SettingKey(name: name, values: values, kind: .text, choices: { _ in nil }, completesPaths: false,
                   apply: { session, text in session.settings[keyPath: path] = text },
                   show: { $0[keyPath: path].isEmpty ? "(empty)" : $0[keyPath: path] },
                   reset: { $0[keyPath: path] = value })
    }

    /// A folder searched before the defaults; it must exist when set.
    private static func folder(_ name: String, _ purpose: String, _ path: WritableKeyPath<SessionSettings, String?>,
                               defaults: String) -> SettingKey {
        SettingKey(name: name, values: "DIR (\(purpose))", kind: .text, choices: { _ in nil }, completesPaths: true,
                   apply: { session, value in
                       var isDirectory: ObjCBool = false
                       let expanded = value.expandingTilde
                       guard FileManager.default.fileExists(atPath: expanded, isDirectory: &isDirectory) else {
                           throw ScriptError.file(command: "set \(name)", path: value, reason: "no such folder")
                       }
                       guard isDirectory.boolValue else {
                           throw ScriptError.file(command: "set \(name)", path: value,
                                                  reason: "is a file, not a folder; give the folder that holds such files")
                       }
                       session.settings[keyPath: path] = value
                   },
                   show: { $0[keyPath: path] ?? defaults }, reset: { $0[keyPath: path] = nil }, transcript: .inputPath())
    }

    /// - Parameter check: a further check of a number in `range` (the sampler's steps).
    /// A number in `range` (strength, eta).
    /// `then` runs after the value is set (for a note on what it changes).
    private static func fraction(_ name: String, range: ClosedRange<Double>, _ path: WritableKeyPath<SessionSettings, Double>,
                                 help: String, then: @escaping (Session) -> Void = { _ in }) -> SettingKey {
        SettingKey(name: name, values: "\(formatNumber(Float(range.lowerBound)))…\(formatNumber(Float(range.upperBound))) (\(help))",
                   kind: .words, choices: { _ in nil }, completesPaths: false,
                   apply: { session, value in
                       guard let number = Double(value), number.isFinite, range.contains(number) else {
                           throw ScriptError.badArgument(command: "set \(name)", argument: value,
                                                         reason: "expected a number from \(formatNumber(Float(range.lowerBound))) to \(formatNumber(Float(range.upperBound))), got")
                       }
                       session.settings[keyPath: path] = number
                       then(session)
                   },
                   show: { formatNumber(Float($0[keyPath: path])) },
                   reset: { $0[keyPath: path] = SessionSettings()[keyPath: path] })
    }

    private static func integer(_ name: String, range: ClosedRange<Int>, _ path: WritableKeyPath<SessionSettings, Int>,
                                values: String? = nil, check: @escaping (Session, Int) throws -> Void = { _, _ in }) -> SettingKey {
        SettingKey(name: name, values: values ?? "\(range.lowerBound)…\(range.upperBound)", kind: .words, choices: { _ in nil },
                   completesPaths: false,
                   apply: { session, value in
                       guard let number = Int(value), range.contains(number) else {
                           throw ScriptError.badArgument(command: "set \(name)", argument: value,
                                                         reason: "expected a whole number from \(range.lowerBound) to \(range.upperBound), got")
                       }
                       try check(session, number)
                       session.settings[keyPath: path] = number
                   },
                   show: { String($0[keyPath: path]) },
                   reset: { $0[keyPath: path] = SessionSettings()[keyPath: path] })
    }

    private static func onOff(_ name: String, _ path: WritableKeyPath<SessionSettings, Bool>, help: String) -> SettingKey {
        SettingKey(name: name, values: "on|off (\(help))", kind: .words, choices: { _ in ["on", "off"] }, completesPaths: false,
                   apply: { session, value in
                       switch value.lowercased() {
                       case "on", "yes", "true", "1": session.settings[keyPath: path] = true
                       case "off", "no", "false", "0": session.settings[keyPath: path] = false
                       default:
                           throw ScriptError.badArgument(command: "set \(name)", argument: value, reason: "expected on or off, got",
                                                         suggestion: closestWord(to: value, in: ["on", "off"]))
                       }
                   },
                   show: { $0[keyPath: path] ? "on" : "off" }, reset: { $0[keyPath: path] = SessionSettings()[keyPath: path] })
    }

    private static func choice<Mode: RawRepresentable & CaseIterable>(
        _ name: String, _ type: Mode.Type, _ path: WritableKeyPath<SessionSettings, Mode>
    ) -> SettingKey where Mode.RawValue == String {
        let options = Mode.allCases.map(\.rawValue)
        return SettingKey(name: name, values: options.joined(separator: "|"), kind: .words, choices: { _ in options },
                          completesPaths: false,
                          apply: { session, value in
                              guard let mode = Mode(rawValue: value.lowercased()) else {
                                  throw ScriptError.badArgument(command: "set \(name)", argument: value,
                                                                reason: "expected \(options.joined(separator: ", ")), got",
                                                                suggestion: closestWord(to: value, in: options))
                              }
                              session.settings[keyPath: path] = mode
                          },
                          show: { $0[keyPath: path].rawValue },
                          reset: { $0[keyPath: path] = SessionSettings()[keyPath: path] })
    }
}
