import Foundation

/// The parts of an SD1.x pipeline that carry weights. In a `Checkpoint` every key starts with the
/// component's prefix (`unet.`, `vae.`, `text_encoder.`), followed by the diffusers module path.
public enum CheckpointComponent: String, CaseIterable, Sendable, CustomStringConvertible {
    case unet
    case vae
    case textEncoder = "text_encoder"

    /// The key prefix in a `Checkpoint`, and the sub-folder name in a diffusers folder.
    public var prefix: String { rawValue + "." }
    public var description: String { rawValue }
}

/// The one table of weight names: how a key of the original LDM single-file layout, or of a
/// diffusers folder, becomes the diffusers module name that the models ask for.
///
/// Sources for the correspondence: diffusers' `convert_ldm_unet_checkpoint` / `convert_ldm_vae_checkpoint`
/// (`scripts/convert_original_stable_diffusion_to_diffusers.py` and its inverse
/// `convert_diffusers_to_original_stable_diffusion.py`) and stable-diffusion.cpp's
/// `name_conversion.cpp`. The rules are tried in order and the first whose pattern matches wins; `#`
/// in a pattern matches a decimal block index, and the target is computed from the indices.
///
/// Numbering, with `L` = layers per block (2 in SD1.x) and `N` = VAE levels (4):
/// - UNet `input_blocks.0` is `conv_in`; `input_blocks.n` (n ≥ 1) is level `(n-1)/(L+1)`, slot
///   `(n-1)%(L+1)`: slots below `L` hold a resnet (`.0`) and maybe a transformer (`.1`), slot `L` the
///   downsampler (`.0.op`).
/// - UNet `output_blocks.n` is level `n/(L+1)`, slot `n%(L+1)`: a resnet (`.0`), a transformer
///   (`.1`) and, in the last slot, the upsampler (`.1.conv` in level 0, which has no attention, else
///   `.2.conv`).
/// - VAE decoder `up.i` is `up_blocks.(N-1-i)`: LDM numbers the decoder levels from the lowest
///   resolution, diffusers in execution order.
/// - The VAE mid-block attention's q/k/v/proj_out are 1×1 convolutions `[C, C, 1, 1]` in LDM and linear
///   layers `[C, C]` in diffusers; the data is the same, only the shape is flattened.
struct KeyMap {
    /// What became of a source key.
    enum Mapping: Equatable {
        /// It is the tensor `key` (a full `Checkpoint` key); with `reshape`, its stored `[C, C, 1, 1]`
        /// shape is seen as `[C, C]`.
        case tensor(key: String, reshape: Bool)
        /// A known non-weight that no model uses (EMA copies, DDPM schedule buffers, `position_ids`).
        case ignored
        /// Not part of any SD1.x component: reported by `Checkpoint.unexpectedKeys`.
        case unknown
    }

    /// One row of the table.
    struct Rule {
        /// Prefix pattern of the source key; `#` matches a decimal index.
        let from: String
        /// The target prefix for the matched indices, or nil when the indices do not fit this rule.
        let to: ([Int]) -> String?
        /// Renames of the part after the prefix (e.g. resnet sub-layers), first match wins.
        var inner: [(from: String, to: String)] = []
        /// Remainders (after `inner`) whose `[C, C, 1, 1]` weight becomes `[C, C]`.
        var flatten: Set<String> = []
    }

    let layersPerBlock: Int
    let vaeLevels: Int
    /// The UNet and VAE rows for these block counts, built once.
    let unetRules: [Rule]
    let vaeRules: [Rule]

    /// - Parameters:
    ///   - layersPerBlock: resnets per UNet down level (`layers_per_block`, 2 in SD1.x).
    ///   - vaeLevels: resolution levels of the VAE (`len(block_out_channels)`, 4 in SD1.x).
    init(layersPerBlock: Int = 2, vaeLevels: Int = 4) {
        self.layersPerBlock = layersPerBlock
        self.vaeLevels = vaeLevels
        unetRules = Self.unetRules(layersPerBlock: layersPerBlock)
        vaeRules = Self.vaeRules(levels: vaeLevels)
    }

    // MARK: The table

    /// Resnet sub-layers of the LDM UNet (`ResBlock`) → diffusers `ResnetBlock2D`.
    static let unetResnet: [(from: String, to: String)] = [
        ("in_layers.0.", "norm1."),
        ("in_layers.2.", "conv1."),
        ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."),
        ("skip_connection.", "conv_shortcut."),
    ]

    /// Resnet sub-layers of the LDM VAE (`ResnetBlock`): only the shortcut is renamed.
    static let vaeResnet: [(from: String, to: String)] = [("nin_shortcut.", "conv_shortcut.")]

    /// LDM VAE `AttnBlock` → diffusers `Attention`.
    static let vaeAttention: [(from: String, to: String)] = [
        ("norm.", "group_norm."),
        ("q.", "to_q."),
        ("k.", "to_k."),
        ("v.", "to_v."),
        ("proj_out.", "to_out.0."),
    ]

    /// Names that diffusers < 0.14 wrote for the VAE attention, normalised in diffusers folders.
    static let deprecatedVAEAttention: [(from: String, to: String)] = [
        ("query.", "to_q."),
        ("key.", "to_k."),
        ("value.", "to_v."),
        ("proj_attn.", "to_out.0."),
    ]

    /// The UNet of a single file: `model.diffusion_model.` → `unet.`.
    static func unetRules(layersPerBlock L: Int) -> [Rule] {
        func level(_ n: Int) -> (Int, Int) { ((n - 1) / (L + 1), (n - 1) % (L + 1)) }
        return [
            Rule(from: "time_embed.0.", to: { _ in "time_embedding.linear_1." }),
            Rule(from: "time_embed.2.", to: { _ in "time_embedding.linear_2." }),
            Rule(from: "input_blocks.0.0.", to: { _ in "conv_in." }),
            Rule(from: "input_blocks.#.0.op.", to: { ix in
                let (i, j) = level(ix[0]); return j == L ? "down_blocks.\(i).downsamplers.0.conv." : nil
            }),
            Rule(from: "input_blocks.#.0.", to: { ix in
                let (i, j) = level(ix[0]); return ix[0] >= 1 && j < L ? "down_blocks.\(i).resnets.\(j)." : nil
            }, inner: Self.unetResnet),
            Rule(from: "input_blocks.#.1.", to: { ix in
                let (i, j) = level(ix[0]); return ix[0] >= 1 && j < L ? "down_blocks.\(i).attentions.\(j)." : nil
            }),
            Rule(from: "middle_block.0.", to: { _ in "mid_block.resnets.0." }, inner: Self.unetResnet),
            Rule(from: "middle_block.1.", to: { _ in "mid_block.attentions.0." }),
            Rule(from: "middle_block.2.", to: { _ in "mid_block.resnets.1." }, inner: Self.unetResnet),
            Rule(from: "output_blocks.#.0.", to: { ix in
                "up_blocks.\(ix[0] / (L + 1)).resnets.\(ix[0] % (L + 1))."
            }, inner: Self.unetResnet),
            Rule(from: "output_blocks.#.1.conv.", to: { ix in
                ix[0] % (L + 1) == L ? "up_blocks.\(ix[0] / (L + 1)).upsamplers.0.conv." : nil
            }),
            Rule(from: "output_blocks.#.1.", to: { ix in
                "up_blocks.\(ix[0] / (L + 1)).attentions.\(ix[0] % (L + 1))."
            }),
            Rule(from: "output_blocks.#.2.conv.", to: { ix in
                ix[0] % (L + 1) == L ? "up_blocks.\(ix[0] / (L + 1)).upsamplers.0.conv." : nil
            }),
            Rule(from: "out.0.", to: { _ in "conv_norm_out." }),
            Rule(from: "out.2.", to: { _ in "conv_out." }),
        ]
    }

    /// The VAE of a single file: `first_stage_model.` → `vae.`.
    static func vaeRules(levels N: Int) -> [Rule] {
        var rules: [Rule] = []
        for part in ["encoder", "decoder"] {
            rules += [
                Rule(from: "\(part).conv_in.", to: { _ in "\(part).conv_in." }),
                Rule(from: "\(part).mid.block_#.", to: { ix in
                    (1...2).contains(ix[0]) ? "\(part).mid_block.resnets.\(ix[0] - 1)." : nil
                }, inner: Self.vaeResnet),
                Rule(from: "\(part).mid.attn_1.", to: { _ in "\(part).mid_block.attentions.0." },
                     inner: Self.vaeAttention, flatten: ["to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight"]),
                Rule(from: "\(part).norm_out.", to: { _ in "\(part).conv_norm_out." }),
                Rule(from: "\(part).conv_out.", to: { _ in "\(part).conv_out." }),
            ]
        }
        rules += [
            Rule(from: "encoder.down.#.block.#.", to: { ix in "encoder.down_blocks.\(ix[0]).resnets.\(ix[1])." },
                 inner: Self.vaeResnet),
            Rule(from: "encoder.down.#.downsample.", to: { ix in "encoder.down_blocks.\(ix[0]).downsamplers.0." }),
            Rule(from: "decoder.up.#.block.#.", to: { ix in
                ix[0] < N ? "decoder.up_blocks.\(N - 1 - ix[0]).resnets.\(ix[1])." : nil
            }, inner: Self.vaeResnet),
            Rule(from: "decoder.up.#.upsample.", to: { ix in
                ix[0] < N ? "decoder.up_blocks.\(N - 1 - ix[0]).upsamplers.0." : nil
            }),
            Rule(from: "quant_conv.", to: { _ in "quant_conv." }),
            Rule(from: "post_quant_conv.", to: { _ in "post_quant_conv." }),
        ]
        return rules
    }

    /// The CLIP text encoder of a single file: `cond_stage_model.transformer.` → `text_encoder.`,
    /// with or without transformers' `text_model.` level.
    static let textEncoderRules: [Rule] = [
        Rule(from: "text_model.", to: { _ in "text_model." }),
        Rule(from: "", to: { _ in "text_model." }),
    ]

    /// Top-level prefixes of a single file, and the component each belongs to.
    static let ldmComponents: [(prefix: String, component: CheckpointComponent)] = [
        ("model.diffusion_model.", .unet),
        ("first_stage_model.", .vae),
        ("cond_stage_model.transformer.", .textEncoder),
    ]

    /// Keys of a single file that are not weights of the inference model: the EMA copy (`model_ema.`,
    /// as in `v1-5-pruned.safetensors`; the EMA-only files already hold the EMA weights under the
    /// normal names), the VAE's training loss, and the DDPM schedule buffers, which the samplers
    /// compute themselves.
    static let ldmIgnoredPrefixes = ["model_ema.", "first_stage_model.loss."]
    static let ldmIgnoredKeys: Set<String> = [
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "logvar",
    ]

    // MARK: Mapping

    /// Maps a key of an original LDM single file.
    func mapLDM(_ key: String) -> Mapping {
        if Self.ldmIgnoredKeys.contains(key) || Self.ldmIgnoredPrefixes.contains(where: key.hasPrefix) { return .ignored }
        if key.hasSuffix("position_ids") { return .ignored }  // a transformers buffer (I64 0..<77), not a weight
        for (prefix, component) in Self.ldmComponents where key.hasPrefix(prefix) {
            let rest = key.dropFirst(prefix.count)
            let rules: [Rule]
            switch component {
            case .unet: rules = unetRules
            case .vae: rules = vaeRules
            case .textEncoder: rules = Self.textEncoderRules
            }
            return Self.apply(rules, to: rest, component: component)
        }
        return .unknown
    }

    /// Maps a key of one component file of a diffusers folder.
    func mapDiffusers(_ key: String, component: CheckpointComponent) -> Mapping {
        switch component {
        case .unet:
            return .tensor(key: component.prefix + key, reshape: false)
        case .vae:
            for head in ["encoder.mid_block.attentions.0.", "decoder.mid_block.attentions.0."] where key.hasPrefix(head) {
                let rest = key.dropFirst(head.count)
                for (from, to) in Self.deprecatedVAEAttention where rest.hasPrefix(from) {
                    return .tensor(key: component.prefix + head + to + rest.dropFirst(from.count), reshape: false)
                }
            }
            return .tensor(key: component.prefix + key, reshape: false)
        case .textEncoder:
            if key.hasSuffix("position_ids") { return .ignored }
            return Self.apply(Self.textEncoderRules, to: Substring(key), component: component)
        }
    }

    private static func apply(_ rules: [Rule], to rest: Substring, component: CheckpointComponent) -> Mapping {
        for rule in rules {
            guard let (indices, tail) = match(rule.from, rest), let target = rule.to(indices) else { continue }
            var inner = String(tail)
            for (from, to) in rule.inner where inner.hasPrefix(from) {
                inner = to + inner.dropFirst(from.count)
                break
            }
            return .tensor(key: component.prefix + target + inner, reshape: rule.flatten.contains(inner))
        }
        return .unknown
    }

    /// Matches `pattern` (with `#` for a decimal index) against the start of `key`; returns the
    /// indices and the rest of the key.
    static func match(_ pattern: String, _ key: Substring) -> ([Int], Substring)? {
        var indices: [Int] = []
        var k = key.utf8[...]
        for p in pattern.utf8 {
            if p == UInt8(ascii: "#") {
                let digits = k.prefix { (48...57).contains($0) }
                guard !digits.isEmpty, digits.count <= 6, let n = Int(Substring(digits)) else { return nil }
                indices.append(n)
                k = k.dropFirst(digits.count)
            } else {
                guard k.first == p else { return nil }
                k = k.dropFirst()
            }
        }
        return (indices, Substring(k))
    }
}
