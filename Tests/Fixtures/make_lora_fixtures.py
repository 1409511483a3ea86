#!/usr/bin/env python3
"""LoRA reference fixtures for sdrepl (Tests/Fixtures/lora/), computed with diffusers + peft.

Writes a deterministic kohya-ss / A1111 format LoRA for the committed tiny SD1.5 model, and the
outputs of that LoRA applied by diffusers (load_lora_weights + fuse_lora) for a few multipliers.
Run from anywhere, in the venv of requirements.txt plus peft (outside the repo; ~20 s on 2 cores):

    /work/venv/bin/pip install peft==0.21.2
    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_lora_fixtures.py
    FIXTURES_OUT=/tmp/fx HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_lora_fixtures.py  # writes /tmp/fx/lora

Outputs (see lora/manifest.json for the exact Python of every value):
  lora/tiny-lora.safetensors   kohya keys (lora_unet_* / lora_te_*), lora_down/lora_up fp16, alpha fp16 0-dim
  lora/references.safetensors  float32: inputs/latent, {case}/text, {case}/unet, {case}/image_every4th,
                               {case}/image_mean for case in none, full_0.8, unet_only_1.0, te1.0_unet0.5
  lora/manifest.json           scales per component, Python lines, versions, differences from `none`
The script checks that diffusers consumes every key without a warning, that every PEFT layer has the
file's rank and alpha/rank, and that the fused weights equal W + scale * alpha/rank * up @ down.
"""
import logging
import math
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import OUT as FIXTURES_OUT, save_tensors, write_json  # sets 1 thread + deterministic torch

import torch

HERE = Path(__file__).resolve().parent
MODEL = HERE / "models" / "tiny-sd15-diffusers"  # the committed fp32 files (not the .fp16 variants)
OUT = FIXTURES_OUT / "lora"
LORA_FILE = "tiny-lora.safetensors"
SEED = 20250101
PROMPT = "a red fox in the snow"
STRENGTH = 0.5  # the LoRA delta of every module has std STRENGTH * std(W) at multiplier 1

# (kind, rank, alpha). Every UNet transformer gets proj_in/proj_out; FULL ones get all ten inner kinds,
# the other 13 three inner kinds each in rotation (budget: 25 MB for all fixtures). The LoCon 3x3 convs
# have their own rank and alpha, as kohya's conv_dim / conv_alpha.
INNER = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
         "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2"]
FULL = ["down_blocks.0.attentions.0", "mid_block.attentions.0", "up_blocks.3.attentions.2"]
# LoCon: resnet conv1/conv2 (3x3) and time_emb_proj. In the tiny model norm2 is GroupNorm(32) over 32 channels,
# i.e. one channel per group, so a resnet's time_emb_proj (a per-channel constant added before norm2) has no
# effect at 32 channels; the 64-channel levels (down_blocks.3, mid_block, up_blocks.0) carry the real test.
RESNETS = {"down_blocks.0.resnets.1": ("conv1", "conv2", "time_emb_proj"),
           "mid_block.resnets.1": ("conv1", "conv2", "time_emb_proj"),
           "up_blocks.3.resnets.2": ("conv1", "conv2", "time_emb_proj"),
           "down_blocks.3.resnets.0": ("time_emb_proj",), "up_blocks.0.resnets.2": ("time_emb_proj",)}
RANK_ALPHA = {"attn": (4, 2.0), "proj": (4, 2.0), "ff": (4, 1.0), "time_emb_proj": (4, 1.0),
              "conv3x3": (2, 1.0), "te": (4, 1.0)}
# diffusers 0.42.1 drops the per-module alpha of UNet to_q/k/v/out and of every text-encoder module
# (PEFT: "alpha_pattern keys did not match any targeted module"); they get the most common alpha of
# their component. So those share one alpha each (attn: the UNet's most common, te: all TE modules).


def kind_of(name):
    if ".attn1." in name or ".attn2." in name:
        return "attn"
    if name.endswith(("proj_in", "proj_out")):
        return "proj"
    if ".ff." in name:
        return "ff"
    return "time_emb_proj" if name.endswith("time_emb_proj") else "conv3x3"


def lora_targets(unet, te):
    """[(kohya name, component, module name, module, rank, alpha)] in a fixed order."""
    out = []
    transformers = [n for n, _ in unet.named_modules() if n.split(".")[-2:-1] == ["attentions"]]
    partial = [t for t in transformers if t not in FULL]
    for t in transformers:
        kinds = INNER if t in FULL else [INNER[(2 * partial.index(t) + j) % len(INNER)] for j in range(2)]
        names = [f"{t}.proj_in"] + [f"{t}.transformer_blocks.0.{k}" for k in kinds] + [f"{t}.proj_out"]
        out += [("unet", n, *RANK_ALPHA[kind_of(n)]) for n in names]
    for r, mods in RESNETS.items():
        out += [("unet", f"{r}.{m}", *RANK_ALPHA[kind_of(f'{r}.{m}')]) for m in mods]
    for n, _ in te.named_modules():
        if n.endswith(("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")):
            out.append(("te", n, *RANK_ALPHA["te"]))
    res = []
    for comp, n, rank, alpha in out:
        model = unet if comp == "unet" else te
        kohya = "lora_unet_" + n.replace(".", "_") if comp == "unet" else "lora_te_text_model_" + n.replace(".", "_")
        res.append((kohya, comp, n, model.get_submodule(n), rank, alpha))
    return res


def make_lora(unet, te):
    g = torch.Generator("cpu").manual_seed(SEED)
    sd = {}
    for kohya, comp, n, m, r, alpha in lora_targets(unet, te):
        w = m.weight.detach()
        fan_in = w[0].numel()
        down_shape = (r, *w.shape[1:])  # Linear [r, in]; Conv2d [r, in, kh, kw]
        up_shape = (w.shape[0], r) + ((1, 1) if w.ndim == 4 else ())
        down = torch.randn(down_shape, generator=g) / math.sqrt(fan_in)
        # std(alpha/r * up @ down) = alpha/r * sqrt(r) * std(up) * std(down) = STRENGTH * std(W)
        up = torch.randn(up_shape, generator=g) * (STRENGTH * float(w.std()) * math.sqrt(fan_in) * math.sqrt(r) / alpha)
        sd[f"{kohya}.lora_down.weight"] = down.half()
        sd[f"{kohya}.lora_up.weight"] = up.half()
        sd[f"{kohya}.alpha"] = torch.tensor(alpha, dtype=torch.float16)
    # one metadata entry only: safetensors writes __metadata__ in hash-map order (not reproducible with several)
    save_tensors(OUT / LORA_FILE, sd, {"ss_network_module": "networks.lora"})
    return sd


def load_pipe():
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL), local_files_only=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(f"{record.name}: {record.getMessage()}")


def load_lora_checked(pipe, sd):
    """pipe.load_lora_weights, asserting no warning and that every module got the file's rank and alpha/rank."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    h = Records()
    loggers = [logging.getLogger(n) for n in ("diffusers", "transformers", "peft")]
    for lg in loggers:
        lg.addHandler(h)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.load_lora_weights(str(OUT), weight_name=LORA_FILE)
    for lg in loggers:
        lg.removeHandler(h)
    problems = h.records + [f"{w.category.__name__}: {w.message}" for w in caught]
    assert not problems, "diffusers warned while loading the LoRA:\n" + "\n".join(problems)
    targets = {(comp, n): (r, alpha) for _, comp, n, _, r, alpha in lora_targets(pipe.unet, pipe.text_encoder)}
    layers = {}
    for comp, model in (("unet", pipe.unet), ("te", pipe.text_encoder)):
        for n, m in model.named_modules():
            if isinstance(m, BaseTunerLayer):
                (ad,) = m.r.keys()
                layers[(comp, n)] = (m.r[ad], m.scaling[ad])
    assert set(layers) == set(targets), set(layers) ^ set(targets)
    for k, (r, alpha) in targets.items():
        assert layers[k][0] == r and layers[k][1] == alpha / r, (k, layers[k], (r, alpha / r))
    assert len(sd) == 3 * len(targets)


def check_fused(pipe, base, sd, te_scale, unet_scale):
    """The fused weights are W + scale * alpha/rank * up @ down (3x3: up[o,r] contracted with down[r,i,kh,kw])."""
    worst = 0.0
    for kohya, comp, n, m, r, alpha in lora_targets(pipe.unet, pipe.text_encoder):
        s = unet_scale if comp == "unet" else te_scale
        up, down = sd[f"{kohya}.lora_up.weight"].float(), sd[f"{kohya}.lora_down.weight"].float()
        delta = torch.einsum("or,r...->o...", up.flatten(1), down)
        w0 = base[(comp, n)]
        want = w0 + s * (float(sd[f"{kohya}.alpha"]) / down.shape[0]) * delta
        got = m.weight.detach()
        assert got.shape == w0.shape
        if s == 0:
            assert torch.equal(got, w0), n
        worst = max(worst, float((got - want).abs().max() / want.abs().max()))
    assert worst < 1e-6, worst
    return worst


CASES = [("none", None, None), ("full_0.8", 0.8, 0.8), ("unet_only_1.0", 0.0, 1.0), ("te1.0_unet0.5", 1.0, 0.5)]
IMAGE_CALL = ('pipe("a red fox in the snow", num_inference_steps=4, guidance_scale=7.5, height=96, width=96, '
              'generator=torch.Generator("cpu").manual_seed(33), output_type="np").images[0]')


def fuse_lines(te_scale, unet_scale):
    if te_scale is None:
        return ["pipe = StableDiffusionPipeline.from_pretrained('models/tiny-sd15-diffusers', local_files_only=True, safety_checker=None)  # no LoRA"]
    lines = ["pipe = StableDiffusionPipeline.from_pretrained('models/tiny-sd15-diffusers', local_files_only=True, safety_checker=None)",
             "pipe.load_lora_weights('lora', weight_name='tiny-lora.safetensors')"]
    if te_scale == unet_scale:
        lines.append(f"pipe.fuse_lora(lora_scale={unet_scale})")
    else:
        lines += [f"pipe.fuse_lora(components=[{c!r}], lora_scale={s})" for c, s in (("unet", unet_scale), ("text_encoder", te_scale)) if s]
    lines.append("pipe.unload_lora_weights()  # drops the (unfused) LoRA layers, keeps the fused weights")
    return lines


@torch.no_grad()
def run_case(sd, te_scale, unet_scale, latent):
    pipe = load_pipe()
    base = {(c, n): m.weight.detach().clone() for _, c, n, m, _, _ in lora_targets(pipe.unet, pipe.text_encoder)}
    info = {}
    if te_scale is not None:
        load_lora_checked(pipe, sd)
        if te_scale == unet_scale:
            pipe.fuse_lora(lora_scale=unet_scale)
        else:
            for comp, s in (("unet", unet_scale), ("text_encoder", te_scale)):
                if s:
                    pipe.fuse_lora(components=[comp], lora_scale=s)
        pipe.unload_lora_weights()
        info["fused_weight_max_rel_err_vs_formula"] = check_fused(pipe, base, sd, te_scale, unet_scale)
    out = outputs(pipe, latent)
    assert type(pipe.scheduler).__name__ == "PNDMScheduler" and out["image"].shape == (96, 96, 3)
    for k, v in out.items():
        assert torch.isfinite(v).all(), k
    # the same in float64 (PNDM draws nothing after the initial latents): how far fp32 is from exact
    quiet = logging.getLogger("diffusers").level
    logging.getLogger("diffusers").setLevel(logging.ERROR)  # pipe.to(float64) notes "modules to keep in float32: []"
    out64 = outputs(pipe.to(torch.float64), latent.double())
    info["fp32_vs_fp64_max_abs"] = {k: float((out[k].double() - out64[k]).abs().max()) for k in out}
    pipe.to(torch.float32)
    logging.getLogger("diffusers").setLevel(quiet)
    if te_scale == unet_scale == 0.8:
        info.update(module_effects(pipe, base, latent, out))
    return out, info


def outputs(pipe, latent):
    ids = torch.tensor([pipe.tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True).input_ids])
    text = pipe.text_encoder(ids).last_hidden_state
    eps = pipe.unet(latent, 500, encoder_hidden_states=text).sample
    if latent.dtype == torch.float32:  # exactly the call of the brief: the pipeline draws its latents itself
        img = pipe(PROMPT, num_inference_steps=4, guidance_scale=7.5, height=96, width=96,
                   generator=torch.Generator("cpu").manual_seed(33), output_type="np").images[0]
    else:  # the same latents (torch draws float32 first), passed in as float64
        lat = torch.randn((1, 4, 12, 12), generator=torch.Generator("cpu").manual_seed(33)).double()
        img = pipe(PROMPT, num_inference_steps=4, guidance_scale=7.5, height=96, width=96, latents=lat,
                   output_type="np").images[0]
    return {"text": text, "unet": eps, "image": torch.from_numpy(img.copy())}


@torch.no_grad()
def module_effects(pipe, base, latent, out):
    """Max abs change of the component output (text for TE modules, unet for UNet modules, same inputs)
    when one module's LoRA is left out: every module's delta must matter."""
    ids = torch.tensor([pipe.tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True).input_ids])
    per_kind, no_effect = {}, []
    for kohya, comp, n, m, _, _ in lora_targets(pipe.unet, pipe.text_encoder):
        fused = m.weight.detach().clone()
        m.weight.copy_(base[(comp, n)])
        if comp == "te":
            d = pipe.text_encoder(ids).last_hidden_state - out["text"]
        else:
            d = pipe.unet(latent, 500, encoder_hidden_states=out["text"]).sample - out["unet"]
        m.weight.copy_(fused)
        kind = comp + ":" + (n.rsplit(".", 1)[-1] if comp == "te" else kind_of(n))
        e = float(d.abs().max())
        if e < 1e-4:  # only the time_emb_proj of 32-channel resnets (see RESNETS)
            assert n.endswith("time_emb_proj") and m.weight.shape[0] == 32, (n, e)
            no_effect.append(kohya)
            continue
        if kind not in per_kind or e < per_kind[kind]["min"]:
            per_kind[kind] = {"min": e, "module": kohya}
    return {"leave_one_module_out_min_max_abs_change": per_kind, "no_effect_groupnorm_1_channel_per_group": no_effect}


def main():
    import diffusers, peft, safetensors, transformers
    pipe = load_pipe()
    sd = make_lora(pipe.unet, pipe.text_encoder)
    latent = torch.randn((1, 4, 12, 12), generator=torch.Generator("cpu").manual_seed(5))
    refs, results, cases = {"inputs/latent": latent}, {}, []
    for name, te_scale, unet_scale in CASES:
        res, info = run_case(sd, te_scale, unet_scale, latent)
        results[name] = res
        refs[f"{name}/text"], refs[f"{name}/unet"] = res["text"], res["unet"]
        refs[f"{name}/image_every4th"] = res["image"][::4, ::4]
        refs[f"{name}/image_mean"] = res["image"].double().mean(dim=(0, 1)).float()
        entry = {"name": name, "text_encoder_scale": te_scale or 0.0, "unet_scale": unet_scale or 0.0,
                 "a1111_prompt": None if te_scale is None else
                 (f"<lora:tiny-lora:{unet_scale}>" if te_scale == unet_scale else
                  f"<lora:tiny-lora:{te_scale:g}:{unet_scale:g}>"),
                 "python": fuse_lines(te_scale, unet_scale), **info}
        cases.append(entry)
        print(f"lora: {name}: text std {res['text'].std():.3f} unet std {res['unet'].std():.3f} image mean {res['image'].mean():.3f}")
    for entry in cases:
        d = {k: float((results[entry["name"]][k] - results["none"][k]).abs().max()) for k in ("text", "unet", "image")}
        d["image_every4th"] = float((results[entry["name"]]["image"] - results["none"]["image"])[::4, ::4].abs().max())
        entry["max_abs_diff_from_none"] = d
        print(f"lora: {entry['name']}: max abs diff from none {d}")
        if entry["name"] != "none":
            assert d["unet"] > 0.1 and d["image_every4th"] > 10 / 255, d
            assert d["text"] > 0.1 if entry["text_encoder_scale"] else d["text"] == 0, d
    save_tensors(OUT / "references.safetensors", refs)
    targets = lora_targets(pipe.unet, pipe.text_encoder)
    write_json(OUT / "manifest.json", {
        "lora_file": LORA_FILE,
        "format": "kohya-ss sd-scripts networks.lora (+ LoCon 3x3 convs): '<lora_unet_|lora_te_text_model_><module path, . -> _>'"
                  " + '.lora_down.weight' | '.lora_up.weight' (F16) | '.alpha' (F16, 0-dim)",
        "formula": "W' = W + scale * (alpha / rank) * up @ down, rank = lora_down.shape[0]; 3x3 conv: "
                   "delta[o,i,kh,kw] = sum_r up[o,r,0,0] * down[r,i,kh,kw]; 1x1 conv (proj_in/out): down [r,in,1,1], up [out,r,1,1]",
        "a1111_syntax": "<lora:name:te_multiplier[:unet_multiplier]> (unet defaults to te; or te=/unet= named)",
        "seed": SEED, "strength": STRENGTH,
        "lora_python": "g = torch.Generator('cpu').manual_seed(seed); per module in file order: down = randn(down_shape, g) / sqrt(fan_in); "
                       "up = randn(up_shape, g) * strength * W.std() * sqrt(fan_in) * sqrt(rank) / alpha; both .half()",
        "rank_alpha_by_kind": {k: {"rank": r, "alpha": a} for k, (r, a) in RANK_ALPHA.items()},
        "coverage": {"full_transformers": FULL, "inner_kinds": INNER, "locon_resnets": RESNETS,
                     "rule": "every transformer: proj_in, proj_out; FULL: all inner kinds; the other 13 (named_modules order, i): "
                             "INNER[(2i+j) % 10], j = 0..1; every text-encoder layer: q/k/v/out_proj, fc1, fc2"},
        "n_modules": {"unet": sum(t[1] == "unet" for t in targets), "text_encoder": sum(t[1] == "te" for t in targets)},
        "inputs": {"prompt": PROMPT, "ids": pipe.tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True).input_ids,
                   "ids_python": 'pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids',
                   "latent_python": 'torch.randn((1, 4, 12, 12), generator=torch.Generator("cpu").manual_seed(5))  # inputs/latent'},
        "outputs_python": {
            "{case}/text": "pipe.text_encoder(ids).last_hidden_state",
            "{case}/unet": "pipe.unet(latent, 500, encoder_hidden_states=text).sample",
            "{case}/image_every4th": IMAGE_CALL + "[::4, ::4]  # [24,24,3] of the [96,96,3] image (budget)",
            "{case}/image_mean": "image.astype(float64).mean(axis=(0, 1))  # over the full [96,96,3] image",
        },
        "cases": cases,
        "versions": {"diffusers": diffusers.__version__, "peft": peft.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "safetensors": safetensors.__version__},
    })
    print(f"lora: {len(targets)} modules, {len(sd)} tensors; wrote {OUT}")


if __name__ == "__main__":
    main()
