"""Reference images for image-to-image on the tiny SD1.5-topology model: diffusers'
StableDiffusionImg2ImgPipeline for every sampler, and the VAE encoder's posterior on the init image.

Run with the venv of make_fixtures.py (see README.md):
    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_img2img_pipeline_fixtures.py
Writes img2img/init.png, img2img/encoder.safetensors, img2img/<sampler>.safetensors, img2img/manifest.json.
"""
import numpy as np
import torch
from PIL import Image
from diffusers import StableDiffusionImg2ImgPipeline

from make_fixtures import OUT, SAMPLERS, make_scheduler, save_tensors, write_json

MODEL = OUT / "models" / "tiny-sd15-diffusers"
PROMPT, NEGATIVE = "a red fox in the snow", "blurry"
SEED, STEPS, STRENGTH, GUIDANCE = 21, 10, 0.6, 4.0


def init_image():
    """A 64x64 RGB picture with structure at every scale: gradients, a disc and a checker."""
    y, x = np.mgrid[0:64, 0:64]
    r = (x * 4) % 256
    g = (y * 4) % 256
    b = np.where((x - 32) ** 2 + (y - 28) ** 2 < 15 ** 2, 230, ((x // 8 + y // 8) % 2) * 120 + 40)
    return Image.fromarray(np.stack([r, g, b], axis=-1).astype(np.uint8), "RGB")


@torch.no_grad()
def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    d = OUT / "img2img"
    d.mkdir(exist_ok=True)
    image = init_image()
    image.save(d / "init.png")
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pixels = pipe.image_processor.preprocess(image)  # [1, 3, 64, 64] in [-1, 1]
    posterior = pipe.vae.encode(pixels).latent_dist
    save_tensors(d / "encoder.safetensors", {"pixels": pixels, "mean": posterior.mean, "logvar": posterior.logvar})
    cases = []
    for name in SAMPLERS:
        pipe.scheduler = make_scheduler(name)
        out = pipe(PROMPT, negative_prompt=NEGATIVE, image=image, strength=STRENGTH, num_inference_steps=STEPS,
                   guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(SEED), output_type="np")
        save_tensors(d / f"{name}.safetensors", {"image": torch.from_numpy(out.images[0].astype(np.float32))})
        cases.append({"sampler": name, "file": f"{name}.safetensors"})
    write_json(d / "manifest.json", {
        "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS, "strength": STRENGTH,
        "guidance": GUIDANCE, "init": "init.png", "cases": cases,
        "python": [
            "pipe = StableDiffusionImg2ImgPipeline.from_pretrained('models/tiny-sd15-diffusers', safety_checker=None)",
            "pipe.scheduler = Cls.from_config(SD15_SCHEDULER_CONFIG)",
            "pipe(prompt, negative_prompt=negative, image=Image.open('img2img/init.png'), strength=0.6, num_inference_steps=10, guidance_scale=4.0, generator=torch.Generator('cpu').manual_seed(21), output_type='np').images[0]",
            "posterior = pipe.vae.encode(pipe.image_processor.preprocess(image)).latent_dist  # encoder.safetensors: mean, logvar",
        ]})
    print(f"img2img: {len(cases)} cases")


if __name__ == "__main__":
    main()
