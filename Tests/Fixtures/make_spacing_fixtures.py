"""Text-to-image on the tiny SD1.5-topology model for every sampler with each of diffusers'
`timestep_spacing` values (the schedules Hyper-SD, PCM and other few-step models need).

Run with the venv of make_fixtures.py (see README.md):
    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_spacing_fixtures.py
Writes spacing/images.safetensors and spacing/manifest.json.
"""
import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from make_fixtures import OUT, SAMPLERS, make_scheduler, save_tensors, write_json

MODEL = OUT / "models" / "tiny-sd15-diffusers"
PROMPT, NEGATIVE, SEED, STEPS, GUIDANCE, SIZE = "a red fox in the snow", "blurry", 33, 6, 4.0, 64
SPACINGS = ["leading", "linspace", "trailing"]


@torch.no_grad()
def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    images, cases = {}, []
    for name in SAMPLERS:
        if name in ("lcm", "tcd"):
            continue  # LCM and TCD have their own skipping schedule; timestep_spacing does not change it
        for spacing in SPACINGS:
            base = make_scheduler(name)
            pipe.scheduler = type(base).from_config(base.config, timestep_spacing=spacing)
            out = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                       height=SIZE, width=SIZE, generator=torch.Generator("cpu").manual_seed(SEED), output_type="np")
            key = f"{name}/{spacing}"
            images[key] = torch.from_numpy(out.images[0].astype(np.float32))
            cases.append({"sampler": name, "spacing": spacing, "timesteps": pipe.scheduler.timesteps.tolist()})
    save_tensors(OUT / "spacing" / "images.safetensors", images)
    write_json(OUT / "spacing" / "manifest.json", {
        "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS, "guidance": GUIDANCE,
        "size": SIZE, "cases": cases,
        "python": [
            "pipe.scheduler = Cls.from_config(Cls.from_config(SD15_SCHEDULER_CONFIG).config, timestep_spacing=spacing)",
            "pipe(prompt, negative_prompt=negative, num_inference_steps=6, guidance_scale=4.0, height=64, width=64, generator=torch.Generator('cpu').manual_seed(33), output_type='np').images[0]",
        ]})
    print(f"spacing: {len(cases)} cases")


if __name__ == "__main__":
    main()
