"""How far diffusers' own bfloat16 run is from its float32 run, on the cases of pipeline/manifest.json.

For each case of `pipeline/manifest.json` (same sampler, prompt, negative prompt, seed, steps, guidance,
size and eta) the tiny model folder runs twice in diffusers' `StableDiffusionPipeline`, once as loaded
(float32) and once after `pipe.to(torch.bfloat16)`, the whole pipeline in bf16 (text encoder, UNet,
VAE; diffusers' usual way to run bf16 on CPU):

    pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = Cls.from_config(SD15_SCHEDULER_CONFIG, **extra)       # make_fixtures.make_scheduler
    fp32 = pipe(prompt, negative_prompt=..., num_inference_steps=..., guidance_scale=..., height=..., width=...,
                generator=torch.Generator("cpu").manual_seed(seed), output_type="np"[, eta=...]).images[0]
    pipe.to(torch.bfloat16)                                                 # on a second, fresh load
    bf16 = pipe(...the same arguments...).images[0].astype(np.float32)

and records, per case, mean |bf16 - fp32| and max |bf16 - fp32| over all pixel channels (images as
float in [0, 1]; also in units of 1/255), with the mean of the per-case means and the overall max.
The float32 run is checked against the stored `pipeline/<case>.safetensors` "image".
A case whose bf16 run raises is kept in the manifest with the error.

Run with the venv of make_fixtures.py (see README.md):
    cd Tests/Fixtures && HF_HUB_OFFLINE=1 /work/venv/bin/python make_bf16_fixtures.py
Writes bf16/manifest.json only (no images).
"""
import json
import traceback

import diffusers
import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from make_fixtures import OUT, make_scheduler, write_json

MODEL = OUT / "models" / "tiny-sd15-diffusers"


def load(dtype=None):
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    if dtype is not None:
        pipe.to(dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, case):
    pipe.scheduler = make_scheduler(case["sampler"])
    kwargs = dict(negative_prompt=case["negative_prompt"], num_inference_steps=case["steps"],
                  guidance_scale=case["guidance"], height=case["height"], width=case["width"],
                  generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="np")
    if "eta" in case:
        kwargs["eta"] = case["eta"]
    return np.asarray(pipe(case["prompt"], **kwargs).images[0]).astype(np.float32)


def call_line(case):
    return (f'pipe({case["prompt"]!r}, negative_prompt={case["negative_prompt"]!r}, num_inference_steps={case["steps"]}, '
            f'guidance_scale={case["guidance"]}, height={case["height"]}, width={case["width"]}, '
            f'generator=torch.Generator("cpu").manual_seed({case["seed"]})'
            + (f', eta={case["eta"]}' if "eta" in case else "") + ', output_type="np").images[0]')


def bf16_noise_matches(case):
    """Whether prepare_latents' bf16 draw (torch.randn(..., dtype=torch.bfloat16)) is the fp32 draw rounded."""
    shape = (1, 4, case["height"] // 8, case["width"] // 8)
    a = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(case["seed"]), dtype=torch.bfloat16)
    b = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(case["seed"])).bfloat16()
    return bool(torch.equal(a, b))


@torch.no_grad()
def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    cases_in = json.load(open(OUT / "pipeline" / "manifest.json"))["cases"]
    fp32_pipe = load()
    bf16_pipe = load(torch.bfloat16)
    assert bf16_pipe.unet.dtype == bf16_pipe.vae.dtype == bf16_pipe.text_encoder.dtype == torch.bfloat16
    cases = []
    for c in cases_in:
        case = {k: c[k] for k in ("name", "sampler", "prompt", "negative_prompt", "seed", "steps", "guidance",
                                  "height", "width")}
        if "eta" in c:
            case["eta"] = c["eta"]
        assert c.get("weights", "fp32") == "fp32", c["name"]
        case["scheduler_class"] = type(make_scheduler(case["sampler"])).__name__
        case["python"] = call_line(case)
        fp32 = generate(fp32_pipe, case)
        stored = load_file(str(OUT / "pipeline" / c["file"]))["image"]
        case["fp32_vs_stored_fixture_max_abs"] = float(np.abs(fp32 - stored.float().numpy()).max())
        case["bf16_initial_noise_is_fp32_noise_rounded"] = bf16_noise_matches(case)
        try:
            bf16 = generate(bf16_pipe, case)
        except Exception as e:  # keep the case, with the reason
            case["error"] = f"{type(e).__name__}: {e}"
            print(f"{case['name']}: bf16 FAILED: {case['error']}")
            traceback.print_exc()
            cases.append(case)
            continue
        d = np.abs(bf16 - fp32)
        case["finite"] = bool(np.isfinite(bf16).all())
        case["mean_abs"] = float(d.mean())
        case["max_abs"] = float(d.max())
        case["mean_abs_255"] = round(case["mean_abs"] * 255, 4)
        case["max_abs_255"] = round(case["max_abs"] * 255, 4)
        cases.append(case)
        print(f"{case['name']}: |fp32 - stored| max {case['fp32_vs_stored_fixture_max_abs']:.2e}; "
              f"|bf16 - fp32| mean {case['mean_abs_255']:.3f}/255 max {case['max_abs_255']:.3f}/255"
              f"{'' if case['bf16_initial_noise_is_fp32_noise_rounded'] else ' (bf16 noise differs)'}")
    ok = [c for c in cases if "error" not in c]
    overall = {}
    if ok:
        overall = {"mean_abs": float(np.mean([c["mean_abs"] for c in ok])), "max_abs": max(c["max_abs"] for c in ok)}
        overall["mean_abs_255"] = round(overall["mean_abs"] * 255, 4)
        overall["max_abs_255"] = round(overall["max_abs"] * 255, 4)
        overall["cases"] = len(ok)
        print(f"overall ({len(ok)} cases): mean of means {overall['mean_abs_255']:.3f}/255, max {overall['max_abs_255']:.3f}/255")
    write_json(OUT / "bf16" / "manifest.json", {
        "torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
        "model": "models/tiny-sd15-diffusers",
        "what": "diffusers' StableDiffusionPipeline in bfloat16 (pipe.to(torch.bfloat16)) against the same pipeline in float32; "
                "mean_abs / max_abs over all pixel channels of the output_type='np' image, float in [0,1]; *_255 in units of 1/255",
        "python": [
            "pipe = StableDiffusionPipeline.from_pretrained('models/tiny-sd15-diffusers', safety_checker=None, requires_safety_checker=False)",
            "pipe.scheduler = Cls.from_config(SD15_SCHEDULER_CONFIG, **extra)  # make_fixtures.make_scheduler(sampler)",
            "fp32 = " + 'pipe(prompt, negative_prompt=negative_prompt, num_inference_steps=steps, guidance_scale=guidance, height=height, width=width, '
                        'generator=torch.Generator("cpu").manual_seed(seed), output_type="np"[, eta=eta]).images[0]',
            "pipe.to(torch.bfloat16)  # a second, fresh load: text encoder, UNet and VAE in bf16",
            "bf16 = " + 'pipe(prompt, negative_prompt=negative_prompt, num_inference_steps=steps, guidance_scale=guidance, height=height, width=width, '
                        'generator=torch.Generator("cpu").manual_seed(seed), output_type="np"[, eta=eta]).images[0].astype(np.float32)',
            "mean_abs = np.abs(bf16 - fp32).mean(); max_abs = np.abs(bf16 - fp32).max()",
            "torch.use_deterministic_algorithms(True); torch.set_num_threads(1); with torch.no_grad()",
        ],
        "overall": overall, "cases": cases})


if __name__ == "__main__":
    main()
