"""Reference images for DeepCache on the tiny SD1.5-topology model: diffusers' pipelines wrapped by the
paper's own helper, `DeepCache.DeepCacheSDHelper` (PyPI `DeepCache` 0.1.1, the code of
github.com/horseee/DeepCache), with its SD1.5 default branch and a uniform interval:

    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=N, cache_branch_id=0)   # cache_layer_id 0, cache_block_id 0
    helper.enable()
    pipe(...)
    helper.disable()

The tiny model has SD1.5's topology (four levels of two resnets, cross-attention in the first three
down levels and the last three up levels), only narrower, so branch 0 is the same skip connection as
in SD1.5: conv_in's output, which feeds the last resnet of the last up level.

For each call of the UNet the helper takes `list(scheduler.timesteps).index(t)` (the first position of
the timestep) and runs the whole UNet when `(index - index of the first call) % N == 0`; each case
records those positions and which calls were full, as the helper decided them.

Run with the venv of make_fixtures.py (see README.md), after `pip install DeepCache==0.1.1`:
    cd Tests/Fixtures && HF_HUB_OFFLINE=1 /work/venv/bin/python make_deepcache_fixtures.py
Writes deepcache/<case>.safetensors (the image, float16) and deepcache/manifest.json.
"""
import numpy as np
import torch
from PIL import Image
from DeepCache import DeepCacheSDHelper
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

from make_fixtures import OUT, make_scheduler, save_tensors, write_json

MODEL = OUT / "models" / "tiny-sd15-diffusers"
PROMPT, NEGATIVE = "a red fox in the snow", "blurry"
SEED, STEPS, GUIDANCE = 21, 10, 4.0
CASES = [
    # name, sampler, interval, guidance, (width, height), img2img strength (None: text to image).
    # Without guidance the batch is 1, and at 64x64 the deepest level's 1x1 GroupNorm has one value per
    # group, which torch refuses: that case is 80x96.
    ("pndm_2", "pndm", 2, GUIDANCE, (64, 64), None),
    ("pndm_3", "pndm", 3, GUIDANCE, (64, 64), None),
    ("dpmpp-2m_2", "dpmpp-2m", 2, GUIDANCE, (64, 64), None),
    ("dpmpp-2m_3", "dpmpp-2m", 3, GUIDANCE, (64, 64), None),
    ("euler_3", "euler", 3, GUIDANCE, (64, 64), None),
    ("ddim_2_g1", "ddim", 2, 1.0, (80, 96), None),
    ("dpmpp-2m_3_img2img", "dpmpp-2m", 3, GUIDANCE, (64, 64), 0.6),
]


def generate(pipe, sampler, guidance, size, strength, init):
    pipe.scheduler = make_scheduler(sampler)
    kwargs = dict(negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=guidance,
                  generator=torch.Generator("cpu").manual_seed(SEED), output_type="np")
    if strength is None:
        return pipe(PROMPT, width=size[0], height=size[1], **kwargs).images[0]
    return pipe(PROMPT, image=init, strength=strength, **kwargs).images[0]


def run(pipe, sampler, interval, guidance, size, strength, init):
    """One generation under the helper; returns the image and, per UNet call, the helper's timestep
    position and whether the call ran the whole UNet."""
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=0)
    helper.enable()
    calls = []
    wrapped = pipe.unet.forward

    def recording(*args, **kwargs):
        out = wrapped(*args, **kwargs)
        calls.append((helper.cur_timestep, (helper.cur_timestep - helper.start_timestep) % interval == 0))
        return out

    pipe.unet.forward = recording
    image = generate(pipe, sampler, guidance, size, strength, init)
    pipe.unet.forward = wrapped
    helper.disable()
    return image, calls


@torch.no_grad()
def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    d = OUT / "deepcache"
    d.mkdir(exist_ok=True)
    txt2img = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    txt2img.set_progress_bar_config(disable=True)
    img2img = StableDiffusionImg2ImgPipeline(**txt2img.components)
    img2img.set_progress_bar_config(disable=True)
    init = Image.open(OUT / "img2img" / "init.png").convert("RGB")
    cases = []
    for name, sampler, interval, guidance, size, strength in CASES:
        pipe = txt2img if strength is None else img2img
        image, calls = run(pipe, sampler, interval, guidance, size, strength, init)
        # The same generation without DeepCache, only to show how far the cached steps move the picture.
        plain = generate(pipe, sampler, guidance, size, strength, init)
        save_tensors(d / f"{name}.safetensors", {"image": torch.from_numpy(image.astype(np.float32)).half()})
        cases.append({"name": name, "sampler": sampler, "interval": interval, "guidance": guidance,
                      "width": size[0], "height": size[1], "strength": strength, "timestep_positions": [c[0] for c in calls],
                      "full": [c[1] for c in calls],
                      "max_difference_from_plain": float(np.abs(image - plain).max())})
        print(f"{name}: full {[int(c[1]) for c in calls]} positions {[c[0] for c in calls]}, "
              f"max |deepcache - plain| {np.abs(image - plain).max() * 255:.1f}/255")
    write_json(d / "manifest.json", {
        "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS,
        "init": "img2img/init.png", "cases": cases,
        "python": [
            "helper = DeepCacheSDHelper(pipe=pipe); helper.set_params(cache_interval=interval, cache_branch_id=0); helper.enable()",
            "pipe(prompt, negative_prompt=negative, width=w, height=h, num_inference_steps=10, guidance_scale=guidance, generator=torch.Generator('cpu').manual_seed(21), output_type='np').images[0]  # stored as float16",
            "img2img: StableDiffusionImg2ImgPipeline(**pipe.components)(..., image=Image.open('img2img/init.png'), strength=0.6)",
        ]})


if __name__ == "__main__":
    main()
