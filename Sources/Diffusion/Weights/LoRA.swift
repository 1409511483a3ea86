import Foundation

/// What can go wrong with a `<lora:…>` tag or a LoRA file.
public enum LoRAError: Error, Equatable, CustomStringConvertible {
    case badTag(tag: String, reason: String)
    case unsupportedNetwork(tag: String, kind: String)
    case inNegativePrompt(tag: String)
    case notFound(name: String, searched: [String])
    case unreadable(path: String, reason: String)
    /// A LoHa, LoKr or CP-decomposed LoCon: a network of another form than `up · down`.
    case unsupportedFormat(path: String, kind: String, evidence: String)
    /// A LoRA for SDXL or SD2.x.
    case otherModel(path: String, kind: String, evidence: String)
    /// A file with no LoRA in it (a VAE, a checkpoint, anything); `reason` names the tensor that shows it.
    case notALoRA(path: String, reason: String)
    case missingPart(path: String, module: String, part: String)
    case unmatchedModules(path: String, modules: [String])
    case shapeMismatch(path: String, module: String, up: [Int], down: [Int], weight: [Int])

    public var description: String {
        switch self {
        case let .badTag(tag, reason):
            return "\(tag): \(reason)"
        case let .unsupportedNetwork(tag, kind):
            return "\(tag): '\(kind)' networks are not supported (only <lora:NAME:MULTIPLIER>); remove the tag"
        case let .inNegativePrompt(tag):
            return "\(tag) is in the negative prompt; LoRA tags work in the prompt only (as in A1111), move or remove it"
        case let .notFound(name, searched):
            let places = searched.isEmpty ? "no LoRA folder is set"
                : "looked for \(name).safetensors in " + searched.joined(separator: ", ") + " (and .pt, .ckpt, .pth, .bin there)"
            return "no LoRA named '\(name)': \(places); put the file there or 'set lora-dir DIR'"
        case let .unreadable(path, reason):
            return "cannot read the LoRA \(path): \(reason)"
        case let .unsupportedFormat(path, kind, evidence):
            return "\(path) is \(kind) (\(evidence)); sdrepl applies only LoRA and LoCon networks ('*.lora_up.weight' · '*.lora_down.weight'): "
                + "use a LoRA version of this network"
        case let .otherModel(path, kind, evidence):
            return "\(path) is \(kind) (\(evidence)); sdrepl applies LoRA and LoCon networks for SD1.x only: use the SD1.5 version of this LoRA"
        case let .notALoRA(path, reason):
            return "\(path) is not a LoRA: \(reason); a LoRA holds '*.lora_down.weight' and '*.lora_up.weight' (or PEFT's '*.lora_A.weight' and "
                + "'*.lora_B.weight') for each layer it changes"
        case let .missingPart(path, module, part):
            return "the LoRA \(path) has no '\(module).\(part)'; the file is incomplete"
        case let .unmatchedModules(path, modules):
            let shown = modules.prefix(3).joined(separator: ", ") + (modules.count > 3 ? ", …" : "")
            return "the LoRA \(path) changes \(modules.count) layer\(modules.count == 1 ? "" : "s") that SD1.5 does not have (\(shown)); it is for another model (SD2.x, SDXL?)"
        case let .shapeMismatch(path, module, up, down, weight):
            return "the LoRA \(path) does not fit '\(module)': up \(up) · down \(down) cannot change a weight of shape \(weight); it is for another model"
        }
    }
}

/// A LoRA (or LoCon) file in the kohya-ss layout that A1111 and civitai use, or diffusers' PEFT
/// layout, read through mmap: safetensors, or a PyTorch `.pt` read without running anything.
///
/// kohya-ss: `lora_unet_<module>` / `lora_te_<module>` with the module's diffusers path written with
/// `_` for `.`, each with `.lora_down.weight` `[r, in(, kh, kw)]`, `.lora_up.weight` `[out, r(, 1, 1)]`
/// and an optional `.alpha`. PEFT: `unet.<path>.lora_A.weight` / `.lora_B.weight` (and
/// `text_encoder.<path>`; PEFT's own `base_model.model.` in front is dropped); diffusers'
/// `…lora.down.weight` / `…lora.up.weight`. A weight `W` of shape `[out, in(, kh, kw)]` becomes
///
///     W + multiplier · (alpha / r) · up · down          (alpha defaults to r)
///
/// as in A1111's `network_lora.py` and diffusers' `fuse_lora`.
public final class LoRAFile: @unchecked Sendable {
    /// One changed layer.
    struct Module {
        /// The name in the file, without the part suffix.
        let name: String
        let up: TensorInfo
        let down: TensorInfo
        let alpha: Float?
    }

    public let url: URL
    let file: any TensorFile
    let modules: [Module]

    /// The names of the up and down parts in each layout: kohya, PEFT, and diffusers' own
    /// (`convert_state_dict_to_diffusers`, older text encoders).
    static let layouts = [(up: ".lora_up.weight", down: ".lora_down.weight"), (up: ".lora_B.weight", down: ".lora_A.weight"),
                          (up: ".lora.up.weight", down: ".lora.down.weight"),
                          (up: ".lora_linear_layer.up.weight", down: ".lora_linear_layer.down.weight")]

    /// Opens and checks the layout of the LoRA at `url`, and that its tensors are stored as floats;
    /// its weights are read when applied.
    /// - Throws: `LoRAError`; `WeightsError.notFloat` for a part stored as F8 or integers, which
    ///   would otherwise fail (or give wrong weights) only when applied.
    public init(url: URL) throws {
        self.url = url
        do {
            file = try openTensorFile(url)
        } catch {
            throw LoRAError.unreadable(path: url.path, reason: "\(error)")
        }
        let names = file.names
        if let (kind, evidence) = Self.unsupportedForm(names) {
            throw LoRAError.unsupportedFormat(path: url.path, kind: kind, evidence: evidence)
        }
        if let (kind, evidence) = Self.otherFamily(names: names, shapes: { _ in nil }, contextWidth: nil) {
            throw LoRAError.otherModel(path: url.path, kind: kind, evidence: evidence)
        }
        // Group the parts by module: (suffix of up, suffix of down).
        var modules: [Module] = []
        var claimed = Set<String>()
        for info in file.tensorInfos {
            guard let (upSuffix, downSuffix) = Self.layouts.first(where: { info.name.hasSuffix($0.down) }) else { continue }
            let module = String(info.name.dropLast(downSuffix.count))
            guard let up = file.tensorInfo(module + upSuffix) else {
                throw LoRAError.missingPart(path: url.path, module: module, part: String(upSuffix.dropFirst()))
            }
            // Read only when a weight they change is read, inside a model: refused now, not there.
            try file.requireWeightType(info.name)
            try file.requireWeightType(up.name)
            var alpha: Float?
            if let alphaInfo = file.tensorInfo(module + ".alpha") {
                // One number, which an integer gives as well as a float.
                guard alphaInfo.dtype.isReadableAsFloat else {
                    throw WeightsError.notFloat(tensor: alphaInfo.name, dtype: alphaInfo.dtype.rawValue, path: url.path)
                }
                guard alphaInfo.elementCount == 1, let value = try? file.tensor(alphaInfo.name).data.first else {
                    throw LoRAError.unreadable(path: url.path, reason: "'\(alphaInfo.name)' is not one number")
                }
                alpha = value
                claimed.insert(alphaInfo.name)
            }
            modules.append(Module(name: module, up: up, down: info, alpha: alpha))
            claimed.formUnion([info.name, up.name])
        }
        if let stray = names.first(where: { !claimed.contains($0) && ($0.hasSuffix(".lora_up.weight") || $0.hasSuffix(".lora_B.weight")) }) {
            throw LoRAError.missingPart(path: url.path, module: String(stray.prefix { $0 != "." }), part: "lora_down.weight")
        }
        guard !modules.isEmpty else {
            throw LoRAError.notALoRA(path: url.path, reason: Self.misfit(names))
        }
        self.modules = modules
    }

    /// A network of a form other than `up · down`, by its names: what it is and the name that shows it.
    static func unsupportedForm(_ names: [String]) -> (kind: String, evidence: String)? {
        guard let key = names.first(where: { $0.contains("hada_w") || $0.contains("lokr_w") || $0.contains(".lora_mid.") }) else { return nil }
        let kind = key.contains("hada_") ? "a LoHa" : key.contains("lokr_") ? "a LoKr" : "a LoCon with CP decomposition"
        return (kind, "it has '\(key)'")
    }

    /// What a file is when its names are a LoRA's or another network's ("a LoRA", "an SDXL LoRA",
    /// "a LoHa") with the name that shows it; nil when none is. For the loaders a LoRA is given to
    /// by mistake (`set vae`), so that it is called what it is.
    static func recognise(names: [String]) -> (kind: String, evidence: String)? {
        if let form = unsupportedForm(names) { return form }
        if let family = otherFamily(names: names, shapes: { _ in nil }, contextWidth: nil) { return family }
        let part = names.first { name in layouts.contains { name.hasSuffix($0.up) || name.hasSuffix($0.down) } }
        return part.map { ("a LoRA", "it has '\($0)'") }
    }

    /// What shows that a file with no up/down pair is not a LoRA: its first tensor (by name) that is
    /// no part of one, or, when every tensor is a lone `.alpha`, that.
    static func misfit(_ names: [String]) -> String {
        let sorted = names.sorted()
        guard let first = sorted.first else { return "it holds no tensors" }
        let isPart = { (name: String) in name.hasSuffix(".alpha") || layouts.contains { name.hasSuffix($0.up) || name.hasSuffix($0.down) } }
        guard let misfit = sorted.first(where: { !isPart($0) }) else {
            return "it has '\(first)' but no '*.lora_down.weight' or '*.lora_A.weight' beside it"
        }
        return "its first tensor, '\(misfit)', is not a LoRA's"
    }

    /// The checkpoint key (`unet.…weight`, `text_encoder.text_model.…weight`) a module changes.
    ///
    /// kohya's names drop the dots, so they are matched against the checkpoint's own keys written
    /// the same way (`index`); PEFT names are the keys themselves.
    static func target(of module: String, index: [String: String]) -> String? {
        // PEFT's own `get_peft_model_state_dict` of a wrapped UNet keeps the wrapper's `base_model.model.`.
        var module = module.replacingOccurrences(of: "base_model.model.", with: "")
        if module.hasPrefix("down_blocks.") || module.hasPrefix("mid_block.") || module.hasPrefix("up_blocks.") {
            module = "unet." + module
        }
        if module.hasPrefix("unet.") || module.hasPrefix("text_encoder.") {
            return module + ".weight"
        }
        return index[module]
    }

    /// kohya's name of each LoRA-able checkpoint weight: `unet.down_blocks.0.attentions.0.proj_in.weight`
    /// is `lora_unet_down_blocks_0_attentions_0_proj_in`, `text_encoder.text_model.encoder.layers.0.mlp.fc1.weight`
    /// is `lora_te_text_model_encoder_layers_0_mlp_fc1`.
    static func kohyaIndex(of keys: [String]) -> [String: String] {
        var index: [String: String] = [:]
        for key in keys where key.hasSuffix(".weight") {
            let path = key.dropLast(".weight".count)
            let name: String
            if path.hasPrefix("unet.") {
                name = "lora_unet_" + path.dropFirst("unet.".count)
            } else if path.hasPrefix("text_encoder.") {
                name = "lora_te_" + path.dropFirst("text_encoder.".count)
            } else {
                continue
            }
            index[name.replacingOccurrences(of: ".", with: "_")] = key
        }
        return index
    }
}

/// A checkpoint seen through one or more LoRAs: each weight they change gets their deltas added as it
/// is read (converted to Float32), so `.low` mode stays lazy and the file is never modified.
final class LoRAPatchedSource: TensorSource, @unchecked Sendable {
    /// `W += scale · up[rows × rank] · down[rank × columns]`.
    struct Patch {
        let file: any TensorFile
        let up: String
        let down: String
        let rows: Int
        let rank: Int
        let columns: Int
        let scale: Float
    }

    let base: TensorSource
    private let patches: [String: [Patch]]

    /// - Parameters:
    ///   - loras: each file with its multipliers for the text encoder and the UNet, applied in order.
    /// - Throws: `LoRAError.unmatchedModules` when a file changes layers the checkpoint lacks, and
    ///   `.shapeMismatch` when a delta does not fit its weight.
    init(base: TensorSource, loras: [(file: LoRAFile, textEncoder: Double, unet: Double)]) throws {
        self.base = base
        let index = LoRAFile.kohyaIndex(of: base.keys)
        var patches: [String: [Patch]] = [:]
        for (lora, textEncoder, unet) in loras {
            var unmatched: [String] = []
            for module in lora.modules {
                guard let key = LoRAFile.target(of: module.name, index: index), let weight = base.shape(of: key) else {
                    unmatched.append(module.name)
                    continue
                }
                let up = module.up.shape, down = module.down.shape
                let rank = down.first ?? 0
                let rows = weight.first ?? 0
                let columns = weight.dropFirst().reduce(1, *)
                // up [rows, rank(, 1, 1)], down [rank, columns…]: the kernel sizes must agree too
                // (a 1×1 kernel may be written or left out on either side).
                func kernel(_ shape: [Int]) -> [Int] {
                    var dims = Array(shape.dropFirst())
                    while dims.count > 1, dims.last == 1 { dims.removeLast() }
                    return dims
                }
                let fits = rank > 0 && up.count >= 2 && up[0] == rows && up[1] == rank && up.dropFirst(2).allSatisfy { $0 == 1 }
                    && down.dropFirst().reduce(1, *) == columns && (down.count == 2 || kernel(down) == kernel(weight))
                guard fits else {
                    try lora.refuseOtherFamily(base: base)
                    throw LoRAError.shapeMismatch(path: lora.url.path, module: module.name, up: up, down: down, weight: weight)
                }
                let multiplier = key.hasPrefix("text_encoder.") ? textEncoder : unet
                if multiplier == 0 { continue }
                let alpha = Double(module.alpha ?? Float(rank))
                patches[key, default: []].append(Patch(file: lora.file, up: module.up.name, down: module.down.name, rows: rows,
                                                       rank: rank, columns: columns, scale: Float(multiplier * alpha / Double(rank))))
            }
            if !unmatched.isEmpty {
                try lora.refuseOtherFamily(base: base)
                throw LoRAError.unmatchedModules(path: lora.url.path, modules: unmatched)
            }
        }
        self.patches = patches
    }

    var sourceDescription: String { base.sourceDescription }
    var keys: [String] { base.keys }
    func shape(of key: String) -> [Int]? { base.shape(of: key) }
    // The LoRA's own tensors were checked when its file was opened (`LoRAFile.init`).
    func storedTensor(_ key: String) -> StoredTensor? { base.storedTensor(key) }

    func filesChangedOnDisk() -> [String] {
        var seen = Set<ObjectIdentifier>(), changed = base.filesChangedOnDisk()
        for patch in patches.values.joined() where seen.insert(ObjectIdentifier(patch.file)).inserted {
            changed += patch.file.filesChangedOnDisk()
        }
        return changed
    }

    func readRows(_ key: String, rows: [Int], width: Int, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        // A patched weight is read whole, with its deltas, before its rows are taken.
        guard patches[key] == nil else { return try readRowsOfWholeTensor(key, rows: rows, width: width, into: buffer) }
        try base.readRows(key, rows: rows, width: width, into: buffer)
    }

    func storedHalfElements(_ key: String) -> HalfElements? {
        patches[key] == nil ? base.storedHalfElements(key) : nil
    }

    func read(_ key: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        try base.read(key, into: buffer)
        for patch in patches[key] ?? [] {
            let up = try patch.file.tensor(patch.up).data
            let down = try patch.file.tensor(patch.down).data
            up.withUnsafeBufferPointer { u in
                down.withUnsafeBufferPointer { d in
                    BLAS.sgemm(m: patch.rows, n: patch.columns, k: patch.rank, alpha: patch.scale,
                               a: u.baseAddress!, lda: patch.rank, b: d.baseAddress!, ldb: patch.columns,
                               beta: 1, c: buffer.baseAddress!, ldc: patch.columns, inputs: .fp32)
                }
            }
        }
    }
}

/// Finds LoRA files by name, as A1111 does in its `models/Lora` folder.
public enum LoRALibrary {
    /// The extensions of LoRA files: safetensors first, then the pickles `LoRAFile` reads (or refuses
    /// with the reason, under `PicklePolicy.refuse`).
    static let extensions = ["safetensors", "pt", "ckpt", "pth", "bin"]

    /// `NAME.safetensors` in the first of `directories` that has it, searching sub-folders too, or
    /// else the first `NAME.pt`, `.ckpt`, `.pth` or `.bin` there.
    /// - Throws: `LoRAError.notFound`.
    public static func locate(_ name: String, in directories: [URL]) throws -> URL {
        let fm = FileManager.default
        for directory in directories {
            let direct = directory.appendingPathComponent(name + ".safetensors")
            if fm.fileExists(atPath: direct.path) { return direct }
            guard let walker = fm.enumerator(at: directory, includingPropertiesForKeys: nil) else { continue }
            var found: [String: URL] = [:]
            for case let url as URL in walker where url.deletingPathExtension().lastPathComponent == name {
                let ext = url.pathExtension.lowercased()
                if extensions.contains(ext), found[ext] == nil { found[ext] = url }
            }
            if let best = extensions.lazy.compactMap({ found[$0] }).first { return best }
        }
        throw LoRAError.notFound(name: name, searched: directories.map(\.path))
    }

    /// The names (file stems) of the LoRAs in `directories`, sorted, for completion and listings.
    public static func names(in directories: [URL]) -> [String] {
        Set(files(in: directories).map(\.name)).sorted()
    }

    /// Every LoRA file in `directories` with its name, in the folders' order. Several files may share
    /// a name (every Hugging Face snapshot is `pytorch_lora_weights.safetensors`); `locate` picks one.
    public static func files(in directories: [URL]) -> [(name: String, url: URL)] {
        var files: [(name: String, url: URL)] = []
        for directory in directories {
            guard let walker = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil) else { continue }
            for case let url as URL in walker where extensions.contains(url.pathExtension.lowercased()) {
                files.append((url.deletingPathExtension().lastPathComponent, url))
            }
        }
        return files
    }
}
