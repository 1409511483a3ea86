import Foundation
import TestSupport
import XCTest
@testable import Diffusion
@testable import NN

/// Every weight name of SD1.5 in diffusers module names, grouped by component, built from the
/// architecture (diffusers' `UNet2DConditionModel`, `AutoencoderKL`, transformers' `CLIPTextModel`
/// with SD1.5's configs). Used to check the key table against the diffusers converter and to make
/// tiny checkpoints with every real name.
enum SD15Names {
    static func transformer(_ p: String) -> [String] {
        var names = ["norm", "proj_in", "proj_out"].flatMap { ["\(p)\($0).weight", "\(p)\($0).bias"] }
        let b = p + "transformer_blocks.0."
        for norm in ["norm1", "norm2", "norm3"] { names += ["\(b)\(norm).weight", "\(b)\(norm).bias"] }
        for attn in ["attn1", "attn2"] {
            names += ["to_q", "to_k", "to_v"].map { "\(b)\(attn).\($0).weight" }
            names += ["\(b)\(attn).to_out.0.weight", "\(b)\(attn).to_out.0.bias"]
        }
        names += ["ff.net.0.proj", "ff.net.2"].flatMap { ["\(b)\($0).weight", "\(b)\($0).bias"] }
        return names
    }

    static func wb(_ p: String) -> [String] { ["\(p).weight", "\(p).bias"] }

    static func unetResnet(_ p: String, shortcut: Bool) -> [String] {
        ["norm1", "conv1", "time_emb_proj", "norm2", "conv2"].flatMap { wb(p + $0) } + (shortcut ? wb(p + "conv_shortcut") : [])
    }

    static var unet: [String] {
        var names = wb("conv_in") + wb("time_embedding.linear_1") + wb("time_embedding.linear_2")
        for i in 0..<4 {
            for j in 0..<2 {
                names += unetResnet("down_blocks.\(i).resnets.\(j).", shortcut: j == 0 && (i == 1 || i == 2))
                if i < 3 { names += transformer("down_blocks.\(i).attentions.\(j).") }
            }
            if i < 3 { names += wb("down_blocks.\(i).downsamplers.0.conv") }
        }
        names += unetResnet("mid_block.resnets.0.", shortcut: false) + transformer("mid_block.attentions.0.")
            + unetResnet("mid_block.resnets.1.", shortcut: false)
        for i in 0..<4 {
            for j in 0..<3 {
                names += unetResnet("up_blocks.\(i).resnets.\(j).", shortcut: true)
                if i > 0 { names += transformer("up_blocks.\(i).attentions.\(j).") }
            }
            if i < 3 { names += wb("up_blocks.\(i).upsamplers.0.conv") }
        }
        return names + wb("conv_norm_out") + wb("conv_out")
    }

    static func vaeResnet(_ p: String, shortcut: Bool) -> [String] {
        ["norm1", "conv1", "norm2", "conv2"].flatMap { wb(p + $0) } + (shortcut ? wb(p + "conv_shortcut") : [])
    }

    static func vaeMid(_ p: String) -> [String] {
        vaeResnet(p + "mid_block.resnets.0.", shortcut: false)
            + ["group_norm", "to_q", "to_k", "to_v", "to_out.0"].flatMap { wb(p + "mid_block.attentions.0." + $0) }
            + vaeResnet(p + "mid_block.resnets.1.", shortcut: false)
    }

    static var vae: [String] {
        var names = wb("encoder.conv_in")
        for i in 0..<4 {
            for j in 0..<2 { names += vaeResnet("encoder.down_blocks.\(i).resnets.\(j).", shortcut: j == 0 && (i == 1 || i == 2)) }
            if i < 3 { names += wb("encoder.down_blocks.\(i).downsamplers.0.conv") }
        }
        names += vaeMid("encoder.") + wb("encoder.conv_norm_out") + wb("encoder.conv_out")
        names += wb("quant_conv") + wb("post_quant_conv")
        names += wb("decoder.conv_in") + vaeMid("decoder.")
        for i in 0..<4 {
            for j in 0..<3 { names += vaeResnet("decoder.up_blocks.\(i).resnets.\(j).", shortcut: j == 0 && (i == 2 || i == 3)) }
            if i < 3 { names += wb("decoder.up_blocks.\(i).upsamplers.0.conv") }
        }
        return names + wb("decoder.conv_norm_out") + wb("decoder.conv_out")
    }

    /// With the `text_model.` level, as transformers < 5 saves it.
    static var textEncoder: [String] {
        var names = ["text_model.embeddings.token_embedding.weight", "text_model.embeddings.position_embedding.weight"]
        for l in 0..<12 {
            let p = "text_model.encoder.layers.\(l)."
            names += ["q_proj", "k_proj", "v_proj", "out_proj"].flatMap { wb(p + "self_attn." + $0) }
            names += wb(p + "layer_norm1") + wb(p + "mlp.fc1") + wb(p + "mlp.fc2") + wb(p + "layer_norm2")
        }
        return names + wb("text_model.final_layer_norm")
    }

    static func names(_ component: CheckpointComponent) -> [String] {
        switch component {
        case .unet: return unet
        case .vae: return vae
        case .textEncoder: return textEncoder
        }
    }
}

/// diffusers → original LDM names, written the way diffusers' own
/// `scripts/convert_diffusers_to_original_stable_diffusion.py` does it (ordered string replacement
/// tables), independently of `KeyMap`, so that the test checks one against the other.
enum DiffusersToLDM {
    static let unetWhole: [(sd: String, hf: String)] = [
        ("time_embed.0.weight", "time_embedding.linear_1.weight"), ("time_embed.0.bias", "time_embedding.linear_1.bias"),
        ("time_embed.2.weight", "time_embedding.linear_2.weight"), ("time_embed.2.bias", "time_embedding.linear_2.bias"),
        ("input_blocks.0.0.weight", "conv_in.weight"), ("input_blocks.0.0.bias", "conv_in.bias"),
        ("out.0.weight", "conv_norm_out.weight"), ("out.0.bias", "conv_norm_out.bias"),
        ("out.2.weight", "conv_out.weight"), ("out.2.bias", "conv_out.bias"),
    ]
    static let unetResnet: [(sd: String, hf: String)] = [
        ("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"), ("out_layers.3", "conv2"),
        ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut"),
    ]
    static var unetLayers: [(sd: String, hf: String)] {
        var map: [(String, String)] = []
        for i in 0..<4 {
            for j in 0..<2 {
                map.append(("input_blocks.\(3 * i + j + 1).0.", "down_blocks.\(i).resnets.\(j)."))
                if i < 3 { map.append(("input_blocks.\(3 * i + j + 1).1.", "down_blocks.\(i).attentions.\(j).")) }
            }
            for j in 0..<3 {
                map.append(("output_blocks.\(3 * i + j).0.", "up_blocks.\(i).resnets.\(j)."))
                if i > 0 { map.append(("output_blocks.\(3 * i + j).1.", "up_blocks.\(i).attentions.\(j).")) }
            }
            if i < 3 {
                map.append(("input_blocks.\(3 * (i + 1)).0.op.", "down_blocks.\(i).downsamplers.0.conv."))
                map.append(("output_blocks.\(3 * i + 2).\(i == 0 ? 1 : 2).", "up_blocks.\(i).upsamplers.0."))
            }
        }
        map.append(("middle_block.1.", "mid_block.attentions.0."))
        for j in 0..<2 { map.append(("middle_block.\(2 * j).", "mid_block.resnets.\(j).")) }
        return map
    }

    static func unet(_ name: String) -> String {
        if let whole = unetWhole.first(where: { $0.hf == name }) { return "model.diffusion_model." + whole.sd }
        var v = name
        if v.contains("resnets") { for (sd, hf) in unetResnet { v = v.replacingOccurrences(of: hf, with: sd) } }
        for (sd, hf) in unetLayers { v = v.replacingOccurrences(of: hf, with: sd) }
        return "model.diffusion_model." + v
    }

    static var vaeMap: [(sd: String, hf: String)] {
        var map: [(String, String)] = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"), ("mid.attn_1.", "mid_block.attentions.0.")]
        for i in 0..<4 {
            for j in 0..<2 { map.append(("encoder.down.\(i).block.\(j).", "encoder.down_blocks.\(i).resnets.\(j).")) }
            if i < 3 {
                map.append(("down.\(i).downsample.", "down_blocks.\(i).downsamplers.0."))
                map.append(("up.\(3 - i).upsample.", "up_blocks.\(i).upsamplers.0."))
            }
            for j in 0..<3 { map.append(("decoder.up.\(3 - i).block.\(j).", "decoder.up_blocks.\(i).resnets.\(j).")) }
        }
        for i in 0..<2 { map.append(("mid.block_\(i + 1).", "mid_block.resnets.\(i).")) }
        return map
    }
    static let vaeAttention: [(sd: String, hf: String)] = [
        ("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0."),
    ]

    /// The LDM name, and whether the LDM tensor is a 1×1 convolution where diffusers has a linear layer.
    static func vae(_ name: String) -> (String, flattened: Bool) {
        var v = name
        for (sd, hf) in vaeMap { v = v.replacingOccurrences(of: hf, with: sd) }
        if name.contains("attentions") { for (sd, hf) in vaeAttention { v = v.replacingOccurrences(of: hf, with: sd) } }
        let flattened = ["q", "k", "v", "proj_out"].contains { v.contains("mid.attn_1.\($0).weight") }
        return ("first_stage_model." + v, flattened)
    }

    static func textEncoder(_ name: String) -> String { "cond_stage_model.transformer." + name }

    /// Every SD1.5 name converted once (the string tables are slow to apply in debug builds):
    /// `cached[component][diffusers name] = (LDM name, flattened)`.
    static let cached: [CheckpointComponent: [String: (String, Bool)]] = [
        .unet: Dictionary(uniqueKeysWithValues: SD15Names.unet.map { ($0, (unet($0), false)) }),
        .vae: Dictionary(uniqueKeysWithValues: SD15Names.vae.map { ($0, vae($0)) }),
    ]
}

/// A tiny synthetic SD1.5: every real tensor name, tiny shapes, values that fp16 and bf16 hold
/// exactly (multiples of 1/16 in [-4, 4]), so every layout and dtype must give identical Float32.
struct TinySD15 {
    struct Tensor { let name: String; let shape: [Int]; let values: [Float] }
    var unet: [Tensor] = []
    var vae: [Tensor] = []
    var textEncoder: [Tensor] = []

    /// `crossAttentionWidth` and `unetInChannels` let refusal tests build SD2- or inpainting-shaped files.
    init(seed: UInt64 = 1, crossAttentionWidth: Int = 8, unetInChannels: Int = 4, textWidth: Int = 2) {
        var rng = WeightsTestRNG(seed: seed)
        func make(_ name: String, _ shape: [Int]) -> Tensor {
            Tensor(name: name, shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float(Int.random(in: -64...64, using: &rng)) / 16 })
        }
        unet = SD15Names.unet.map { name in
            if name == "conv_in.weight" { return make(name, [2, unetInChannels, 3, 3]) }
            if name.hasSuffix("attn2.to_k.weight") || name.hasSuffix("attn2.to_v.weight") { return make(name, [2, crossAttentionWidth]) }
            return make(name, [2])
        }
        vae = SD15Names.vae.map { name in
            let linear = name.contains("mid_block.attentions.0.") && name.hasSuffix(".weight") && !name.contains("group_norm")
            return make(name, linear ? [2, 2] : [2])
        }
        textEncoder = SD15Names.textEncoder.map { name in
            name.hasPrefix("text_model.final_layer_norm") ? make(name, [textWidth]) : make(name, [2])
        }
    }

    func tensors(_ component: CheckpointComponent) -> [Tensor] {
        switch component {
        case .unet: return unet
        case .vae: return vae
        case .textEncoder: return textEncoder
        }
    }

    /// Writes the single-file LDM layout. `extra` tensors are appended as they are (EMA copies,
    /// buffers, unknown keys).
    @discardableResult
    func writeSingleFile(_ url: URL, dtype: SafetensorsDType = .f16, components: [CheckpointComponent] = CheckpointComponent.allCases,
                         textModelLevel: Bool = true, extra: [(name: String, dtype: SafetensorsDType, shape: [Int], values: [Float])] = []) throws -> URL {
        var out: [(name: String, dtype: SafetensorsDType, shape: [Int], values: [Float])] = []
        for component in components {
            for t in tensors(component) {
                switch component {
                case .unet:
                    out.append((DiffusersToLDM.cached[.unet]![t.name]!.0, dtype, t.shape, t.values))
                case .vae:
                    let (name, flattened) = DiffusersToLDM.cached[.vae]![t.name]!
                    out.append((name, dtype, flattened ? t.shape + [1, 1] : t.shape, t.values))
                case .textEncoder:
                    let stored = textModelLevel ? t.name : String(t.name.dropFirst("text_model.".count))
                    out.append((DiffusersToLDM.textEncoder(stored), dtype, t.shape, t.values))
                }
            }
        }
        return try writeSafetensors(url, out + extra)
    }

    /// Writes a diffusers folder (model_index.json, configs, the three weight files).
    @discardableResult
    func writeDiffusersFolder(_ folder: URL, dtype: SafetensorsDType = .f32, variant: String? = nil,
                              components: [CheckpointComponent] = CheckpointComponent.allCases,
                              textModelLevel: Bool = true, modelIndex: String? = nil) throws -> URL {
        let fm = FileManager.default
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data((modelIndex ?? #"{"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.31.0"}"#).utf8)
            .write(to: folder.appendingPathComponent("model_index.json"))
        for component in components {
            let dir = folder.appendingPathComponent(component.rawValue)
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data("{\"component\": \"\(component.rawValue)\"}".utf8).write(to: dir.appendingPathComponent("config.json"))
            let stem = component == .textEncoder ? "model" : "diffusion_pytorch_model"
            let name = variant.map { "\(stem).\($0).safetensors" } ?? "\(stem).safetensors"
            let stored = tensors(component).map { t -> (name: String, dtype: SafetensorsDType, shape: [Int], values: [Float]) in
                let key = component == .textEncoder && !textModelLevel ? String(t.name.dropFirst("text_model.".count)) : t.name
                return (key, dtype, t.shape, t.values)
            }
            try writeSafetensors(dir.appendingPathComponent(name), stored)
        }
        return folder
    }
}

/// Runs `body` and returns the `CheckpointError` it throws, failing the test otherwise.
func checkpointError(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> CheckpointError? {
    do {
        try body()
        XCTFail("expected a CheckpointError, but nothing was thrown", file: file, line: line)
    } catch let e as CheckpointError {
        return e
    } catch {
        XCTFail("expected a CheckpointError, got \(error)", file: file, line: line)
    }
    return nil
}
