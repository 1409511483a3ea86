"""Reference images for inpainting on the tiny SD1.5-topology models: diffusers'
StableDiffusionInpaintPipeline with a 9-channel UNet (the sd-v1-5-inpainting topology) and with the
ordinary 4-channel UNet (diffusers' latent blending), for every sampler; PIL's Lanczos resize; and
A1111's mask blur (cv2.GaussianBlur, as modules/processing.py applies it).

Run with the venv of make_fixtures.py (see README.md):
    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_inpaint_fixtures.py
Writes models/tiny-sd15-inpainting/ (a 9-channel UNet in fp16, its other parts linked to
tiny-sd15-diffusers), inpaint/mask.png and mask_alpha.png (the same mask as alpha), inpaint/<model>_<sampler>_<strength>.safetensors,
inpaint/resize.safetensors, inpaint/blur.safetensors, inpaint/manifest.json.
"""
import json
import os
import shutil

import numpy as np
import torch
from PIL import Image
from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

from make_fixtures import OUT, SAMPLERS, make_scheduler, save_tensors, write_json

BASE = OUT / "models" / "tiny-sd15-diffusers"
INPAINT = OUT / "models" / "tiny-sd15-inpainting"
PROMPT, NEGATIVE = "a red fox in the snow", "blurry"
SEED, STEPS, GUIDANCE = 21, 10, 4.0


def make_inpainting_model():
    """The tiny UNet's config with in_channels 9, cut to two levels of one resnet each (the fixture
    budget; the block types and everything inpainting changes are SD1.5's), random weights rounded
    to fp16 and stored in fp16 (the fp32 values diffusers computes with are exactly the stored ones)."""
    if INPAINT.exists():
        shutil.rmtree(INPAINT)
    INPAINT.mkdir(parents=True)
    for part in ["scheduler", "text_encoder", "tokenizer", "vae"]:
        os.symlink(f"../tiny-sd15-diffusers/{part}", INPAINT / part)
    index = json.loads((BASE / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionInpaintPipeline"
    write_json(INPAINT / "model_index.json", index)
    config = UNet2DConditionModel.load_config(BASE / "unet")
    config["in_channels"] = 9
    config["layers_per_block"] = 1
    config["block_out_channels"] = [32, 32]
    config["down_block_types"] = ["CrossAttnDownBlock2D", "DownBlock2D"]
    config["up_block_types"] = ["UpBlock2D", "CrossAttnUpBlock2D"]
    torch.manual_seed(9)
    unet = UNet2DConditionModel.from_config(config)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(p.half().float())
    unet.half().save_pretrained(INPAINT / "unet", safe_serialization=True)


def init_image():
    """The img2img fixture's init picture."""
    return Image.open(OUT / "img2img" / "init.png").convert("RGB")


def mask_image():
    """White repaints: a rectangle, a disc, and a band of grays around 127.5 that the 0.5 threshold
    splits (127 keeps, 128 repaints)."""
    y, x = np.mgrid[0:64, 0:64]
    m = np.zeros((64, 64), np.uint8)
    m[8:30, 36:60] = 255
    m[(x - 20) ** 2 + (y - 44) ** 2 < 11 ** 2] = 255
    m[56:64, :] = np.where(x[56:64, :] % 2 == 0, 127, 128)
    return Image.fromarray(m, "L")


def run(pipe, name, image, mask, strength):
    pipe.scheduler = make_scheduler(name)
    out = pipe(PROMPT, negative_prompt=NEGATIVE, image=image, mask_image=mask, strength=strength, height=64, width=64,
               num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(SEED),
               output_type="np")
    return torch.from_numpy(out.images[0].astype(np.float32)).half()


def lanczos_cases(d):
    """PIL's Lanczos resize (what diffusers' VaeImageProcessor.resize uses) down, up and to another
    aspect, on the init picture."""
    image = init_image()
    tensors = {}
    sizes = [(40, 24), (96, 80), (64, 72), (17, 64)]
    for w, h in sizes:
        tensors[f"{w}x{h}"] = torch.from_numpy(np.asarray(image.resize((w, h), resample=Image.LANCZOS)).copy())
    save_tensors(d / "resize.safetensors", tensors)
    return [f"{w}x{h}" for w, h in sizes]


def blur_cases(d):
    """A1111's mask blur: cv2.GaussianBlur(mask, (2 * int(2.5 * r + 0.5) + 1, 1), r) across, then the
    same down (processing.py, StableDiffusionProcessingImg2Img.init); with the mask itself as "mask"."""
    import cv2
    m = np.asarray(mask_image())
    tensors = {"mask": torch.from_numpy(m.copy())}
    for r in [1, 4, 7]:
        k = 2 * int(2.5 * r + 0.5) + 1
        b = cv2.GaussianBlur(m, (k, 1), r)
        b = cv2.GaussianBlur(b, (1, k), r)
        tensors[f"r{r}"] = torch.from_numpy(b.copy())
    save_tensors(d / "blur.safetensors", tensors)
    return [1, 4, 7]


@torch.no_grad()
def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    d = OUT / "inpaint"
    d.mkdir(exist_ok=True)
    make_inpainting_model()
    mask = mask_image()
    mask.save(d / "mask.png")
    # The same mask as a PNG's alpha (A1111's convention for a drawn mask: opaque repaints), over
    # colours that must not matter.
    m = np.asarray(mask)
    rgba = np.stack([np.full_like(m, 200), np.full_like(m, 30), m // 2, np.where(m >= 128, 255, 0).astype(np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(d / "mask_alpha.png")
    image = init_image()
    white = Image.new("L", (64, 64), 255)
    cases = []
    for model, path in [("nine", INPAINT), ("four", BASE)]:
        pipe = StableDiffusionInpaintPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
        pipe.to(torch.float32)
        assert pipe.unet.conv_in.weight.dtype == torch.float32
        assert pipe.unet.config.in_channels == (9 if model == "nine" else 4)
        pipe.set_progress_bar_config(disable=True)
        # The legacy blend is sampler-independent code around add_noise: four samplers cover it.
        samplers = SAMPLERS if model == "nine" else ["ddim", "euler", "euler-a", "dpmpp-2m"]
        runs = [(name, 0.75, "mask.png") for name in samplers]
        runs += [("euler", 1.0, "mask.png"), ("ddim", 1.0, "white")]
        for name, strength, which in runs:
            file = f"{model}_{name}_{strength}{'_white' if which == 'white' else ''}.safetensors"
            save_tensors(d / file, {"image": run(pipe, name, image, white if which == "white" else mask, strength)})
            cases.append({"model": model, "sampler": name, "strength": strength, "mask": which, "file": file})
    write_json(d / "manifest.json", {
        "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS, "guidance": GUIDANCE,
        "init": "../img2img/init.png", "mask": "mask.png", "models": {"nine": "models/tiny-sd15-inpainting",
                                                                      "four": "models/tiny-sd15-diffusers"},
        "cases": cases, "resize": lanczos_cases(d), "blur": blur_cases(d),
        "python": [
            "pipe = StableDiffusionInpaintPipeline.from_pretrained(model, safety_checker=None).to(torch.float32)",
            "pipe.scheduler = Cls.from_config(SD15_SCHEDULER_CONFIG)",
            "pipe(prompt, negative_prompt=negative, image=Image.open('img2img/init.png'), mask_image=Image.open('inpaint/mask.png'), strength=s, height=64, width=64, num_inference_steps=10, guidance_scale=4.0, generator=torch.Generator('cpu').manual_seed(21), output_type='np').images[0]  # stored as float16",
            "resize.safetensors: np.asarray(Image.open('img2img/init.png').resize((w, h), resample=Image.LANCZOS))",
            "blur.safetensors: cv2.GaussianBlur(cv2.GaussianBlur(mask, (k, 1), r), (1, k), r) with k = 2 * int(2.5 * r + 0.5) + 1",
        ]})
    print(f"inpaint: {len(cases)} cases")


if __name__ == "__main__":
    main()
