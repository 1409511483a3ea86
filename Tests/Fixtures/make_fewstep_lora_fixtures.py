#!/usr/bin/env python3
"""Few-step LoRA layout fixtures (Tests/Fixtures/fewstep_lora/), written by the code that writes the real files.

The published SD1.5 few-step LoRAs come out of three writers:

  kohya   `get_module_kohya_state_dict(unet, "lora_unet", dtype)` of diffusers'
          examples/consistency_distillation/train_lcm_distill_lora_sd_wds.py (latent-consistency/lcm-lora-sdv1-5),
          the same function in PCM's code/text_to_image_sd15/train_pcm_lora_sd15.py (the `*_converted`
          files of wangfuyun/PCM_Weights): `lora_unet_<path with _>.lora_down.weight | .lora_up.weight | .alpha`.
  (PCM's final save, `save_lora_weights(dir, get_peft_model_state_dict(unet))`, gives
          `unet.base_model.model.<path>.lora_A.weight`, which diffusers 0.42.1 cannot load ("Target modules
          {'base_model.model.down_blocks.0...'} not found"): PCM publishes the kohya `*_converted` files instead.)
  diffusers  `save_lora_weights(dir, unet_lora_layers=get_peft_model_state_dict(unet))` after diffusers'
          `unet.add_adapter(config)`: `unet.<path>.lora_A.weight | .lora_B.weight`, no alpha (diffusers reads it
          as alpha = rank). (Passed through `convert_state_dict_to_diffusers` first, as diffusers' 2024 scripts
          did, attention keys become `…to_q.lora.down.weight` and diffusers 0.42.1 silently skips those: its
          `load_lora_weights` leaves attn1.to_q without a LoRA layer. Not a parity fixture, then.)

One PEFT adapter (rank 4, lora_alpha 8, the LCM script's target modules, deterministic random A and B) on the
committed tiny SD1.5 UNet is written in each layout; diffusers loads each file with
`pipe.load_lora_weights(DIR, weight_name=FILE)` + `pipe.fuse_lora()` and the UNet output and a 4-step LCM
image are recorded.

    cd Tests/Fixtures && HF_HUB_OFFLINE=1 /work/venv/bin/python make_fewstep_lora_fixtures.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import OUT as FIXTURES_OUT, save_tensors, write_json  # 1 thread + deterministic torch

import torch

HERE = Path(__file__).resolve().parent
MODEL = HERE / "models" / "tiny-sd15-diffusers"
OUT = FIXTURES_OUT / "fewstep_lora"
PROMPT = "a red fox in the snow"
RANK, ALPHA, SEED, STRENGTH = 2, 4.0, 20251207, 0.5
# train_lcm_distill_lora_sd_wds.py, LoraConfig(target_modules=...)
LCM_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
               "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]
# The diffusers layout names modules by their plain paths, so a few kinds cover its key mapping
# (budget); the kohya file has every LCM target (its `_` for `.` must be undone for each kind).
FEW_TARGETS = ["to_q", "to_out.0", "proj_in", "ff.net.2", "conv1", "conv_shortcut", "downsamplers.0.conv", "time_emb_proj"]
FILES = {"kohya": "lcm-lora-layout.safetensors", "diffusers": "diffusers-layout.safetensors"}


def get_module_kohya_state_dict(module, prefix, dtype, adapter_name="default"):
    """As in train_lcm_distill_lora_sd_wds.py and PCM's train_pcm_lora_sd15.py (identical there)."""
    from peft import get_peft_model_state_dict
    kohya_ss_state_dict = {}
    for peft_key, weight in get_peft_model_state_dict(module, adapter_name=adapter_name).items():
        kohya_key = peft_key.replace("base_model.model", prefix)
        kohya_key = kohya_key.replace("lora_A", "lora_down")
        kohya_key = kohya_key.replace("lora_B", "lora_up")
        kohya_key = kohya_key.replace(".", "_", kohya_key.count(".") - 2)
        kohya_ss_state_dict[kohya_key] = weight.to(dtype)
        if "lora_down" in kohya_key:
            alpha_key = f'{kohya_key.split(".")[0]}.alpha'
            kohya_ss_state_dict[alpha_key] = torch.tensor(module.peft_config[adapter_name].lora_alpha).to(dtype)
    return kohya_ss_state_dict


def load_pipe():
    from diffusers import LCMScheduler, StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL), local_files_only=True, safety_checker=None)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_adapter(targets, peft_model):
    """The LCM script's adapter on the tiny UNet, A and B random (a trained LoRA is far from B = 0): through
    peft's `get_peft_model` as the LCM script does, or diffusers' `unet.add_adapter` as its other LoRA scripts do."""
    from peft import LoraConfig, get_peft_model
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(str(MODEL), subfolder="unet", local_files_only=True)
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets)
    if peft_model:
        unet = get_peft_model(unet, config)
    else:
        unet.add_adapter(config)
    g = torch.Generator("cpu").manual_seed(SEED)
    with torch.no_grad():
        for name, m in unet.named_modules():
            if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {}):
                a, b, w = m.lora_A["default"].weight, m.lora_B["default"].weight, m.base_layer.weight
                fan_in = w[0].numel()
                a.copy_(torch.randn(a.shape, generator=g) / fan_in ** 0.5)
                # std(alpha/r * B @ A) ≈ STRENGTH * std(W)
                b.copy_(torch.randn(b.shape, generator=g) * STRENGTH * float(w.std()) * (fan_in * RANK) ** 0.5 / ALPHA)
    return unet


def write_layouts(unet, few):
    from diffusers import StableDiffusionPipeline
    from peft import get_peft_model_state_dict
    OUT.mkdir(parents=True, exist_ok=True)
    save_tensors(OUT / FILES["kohya"], get_module_kohya_state_dict(unet, "lora_unet", torch.float16))
    peft_sd = {k: v.half() for k, v in get_peft_model_state_dict(few).items()}
    StableDiffusionPipeline.save_lora_weights(str(OUT), unet_lora_layers=peft_sd,
                                              weight_name=FILES["diffusers"])


@torch.no_grad()
def outputs(pipe, latent):
    ids = torch.tensor([pipe.tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True).input_ids])
    text = pipe.text_encoder(ids).last_hidden_state
    eps = pipe.unet(latent, 500, encoder_hidden_states=text).sample
    img = pipe(PROMPT, num_inference_steps=4, guidance_scale=1.0, height=96, width=96,
               generator=torch.Generator("cpu").manual_seed(33), output_type="np").images[0]
    return eps, torch.from_numpy(img.copy())[::4, ::4]  # [24, 24, 3] of [96, 96, 3] (budget)


def main():
    import diffusers, peft
    from safetensors import safe_open
    write_layouts(make_adapter(LCM_TARGETS, True), make_adapter(FEW_TARGETS, False))
    latent = torch.randn((1, 4, 12, 12), generator=torch.Generator("cpu").manual_seed(5))
    refs = {"inputs/latent": latent}
    eps, img = outputs(load_pipe(), latent)
    refs["none/unet"], refs["none/image"] = eps, img
    layouts = {}
    for layout, name in FILES.items():
        pipe = load_pipe()
        pipe.load_lora_weights(str(OUT), weight_name=name)
        pipe.fuse_lora()
        pipe.unload_lora_weights()
        eps, img = outputs(pipe, latent)
        refs[f"{layout}/unet"], refs[f"{layout}/image"] = eps, img
        with safe_open(str(OUT / name), "pt") as f:
            keys = sorted(f.keys())
        layouts[layout] = {"file": name, "n_tensors": len(keys), "example_keys": keys[:3],
                           "max_abs_unet_change": float((eps - refs["none/unet"]).abs().max()),
                           "max_abs_image_change": float((img - refs["none/image"]).abs().max())}
        assert layouts[layout]["max_abs_unet_change"] > 0.05, layouts[layout]
        print(layout, layouts[layout])
    save_tensors(OUT / "references.safetensors", refs)
    write_json(OUT / "manifest.json", {
        "adapter_python": f"get_peft_model(unet, LoraConfig(r={RANK}, lora_alpha={ALPHA}, target_modules=targets)); "
                          f"A = randn/sqrt(fan_in), B = randn * {STRENGTH} * W.std() * sqrt(fan_in * r) / alpha (seed {SEED}), saved fp16",
        "load_python": "pipe.load_lora_weights('fewstep_lora', weight_name=FILE); pipe.fuse_lora(); pipe.unload_lora_weights()",
        "outputs_python": {
            "{layout}/unet": "pipe.unet(latent, 500, encoder_hidden_states=pipe.text_encoder(ids).last_hidden_state).sample",
            "{layout}/image": "pipe(prompt, num_inference_steps=4, guidance_scale=1.0, height=96, width=96, "
                              "generator=torch.Generator('cpu').manual_seed(33), output_type='np').images[0][::4, ::4]  # LCMScheduler",
            "inputs/latent": "torch.randn((1, 4, 12, 12), generator=torch.Generator('cpu').manual_seed(5))"},
        "lcm_targets": LCM_TARGETS, "few_targets": FEW_TARGETS, "prompt": PROMPT, "layouts": layouts,
        "versions": {"diffusers": diffusers.__version__, "peft": peft.__version__, "torch": torch.__version__}})


if __name__ == "__main__":
    main()
