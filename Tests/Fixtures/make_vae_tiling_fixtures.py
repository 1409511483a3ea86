"""Reference images for VAE tiling on the tiny SD1.5-topology model: diffusers' pipelines with
`pipe.vae.enable_tiling()` at 128x128 (the tiny VAE's sample_size is 64, so its tiles are 8 latents /
64 pixels, stepping by 6 / 48 and blending 16 / 2 rows: 3 x 3 tiles each way).

Run with the venv of make_fixtures.py (see README.md):
    cd Tests/Fixtures && HF_HUB_OFFLINE=1 /work/venv/bin/python make_vae_tiling_fixtures.py
Writes vae_tiling/init.png, vae_tiling/{txt2img,img2img}.safetensors and vae_tiling/manifest.json.
"""
import numpy as np
import torch
from PIL import Image
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

from make_fixtures import OUT, make_scheduler, save_tensors, write_json

MODEL = OUT / "models" / "tiny-sd15-diffusers"
PROMPT, NEGATIVE = "a red fox in the snow", "blurry"
SEED, STEPS, GUIDANCE, STRENGTH, SIZE = 21, 4, 4.0, 0.6, 128


def init_image():
    """A 128x128 picture with structure at every scale, as img2img/init.png at twice the size."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    r = (x * 2) % 256
    g = (y * 2) % 256
    b = np.where((x - 64) ** 2 + (y - 56) ** 2 < 30 ** 2, 230, ((x // 16 + y // 16) % 2) * 120 + 40)
    return Image.fromarray(np.stack([r, g, b], axis=-1).astype(np.uint8), "RGB")


def image_tensor(out):
    return {"image": torch.from_numpy(out.images[0].astype(np.float32)).half()}


@torch.no_grad()
def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    d = OUT / "vae_tiling"
    d.mkdir(exist_ok=True)
    image = init_image()
    image.save(d / "init.png")
    args = dict(negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE, output_type="np")

    pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("euler")
    pipe.vae.enable_tiling()
    out = pipe(PROMPT, height=SIZE, width=SIZE, generator=torch.Generator("cpu").manual_seed(SEED), **args)
    save_tensors(d / "txt2img.safetensors", image_tensor(out))

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("euler")
    pipe.vae.enable_tiling()
    out = pipe(PROMPT, image=image, strength=STRENGTH, generator=torch.Generator("cpu").manual_seed(SEED), **args)
    save_tensors(d / "img2img.safetensors", image_tensor(out))

    write_json(d / "manifest.json", {
        "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS, "guidance": GUIDANCE,
        "strength": STRENGTH, "size": SIZE, "sampler": "euler",
        "python": [
            "pipe = StableDiffusionPipeline.from_pretrained('models/tiny-sd15-diffusers', safety_checker=None); pipe.scheduler = EulerDiscreteScheduler.from_config(SD15); pipe.vae.enable_tiling()",
            "txt2img: pipe(prompt, negative_prompt=negative, height=128, width=128, num_inference_steps=4, guidance_scale=4.0, generator=torch.Generator('cpu').manual_seed(21), output_type='np').images[0], stored as float16",
            "img2img: the same with StableDiffusionImg2ImgPipeline, image=Image.open('vae_tiling/init.png'), strength=0.6",
        ]})
    print("vae tiling:", sorted((p.name, p.stat().st_size) for p in d.iterdir()))


if __name__ == "__main__":
    main()
