"""Reference numbers for image-to-image sampling: where each sampler starts for a strength, the
noised latents diffusers' `add_noise` gives there, and a short run from that point to the end.

Run with the venv of make_fixtures.py (see README.md):
    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_img2img_fixtures.py
Writes schedulers/img2img.safetensors and schedulers/img2img.json.
"""
import types

import torch
from diffusers import StableDiffusionImg2ImgPipeline

from make_fixtures import (OUT, SAMPLERS, extra_step_kwargs, make_scheduler, save_tensors, synthetic_eps,
                           write_json)

STEPS = 10
STRENGTHS = [0.3, 0.6, 1.0]


def main():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    tensors, runs = {}, {}
    clean = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(7), dtype=torch.float32)
    tensors["clean"] = clean
    for name in SAMPLERS:
        for strength in STRENGTHS:
            s = make_scheduler(name)
            s.set_timesteps(STEPS)
            # The pipeline's own get_timesteps (it also sets the scheduler's begin index).
            timesteps, remaining = StableDiffusionImg2ImgPipeline.get_timesteps(
                types.SimpleNamespace(scheduler=s), STEPS, strength, "cpu")
            g = torch.Generator("cpu").manual_seed(1234)
            # prepare_latents: the noise is drawn after the (here given) clean latents.
            noise = torch.randn(clean.shape, generator=g, dtype=torch.float32)
            latents = s.add_noise(clean, noise, timesteps[:1])
            key = f"{name}/strength={strength}"
            tensors[f"{key}/noised"] = latents
            kw = extra_step_kwargs(s, g)
            for t in timesteps:
                x_in = s.scale_model_input(latents, t)
                latents = s.step(synthetic_eps(x_in, t), t, latents, **kw).prev_sample
            tensors[f"{key}/final"] = latents
            runs[key] = {"timesteps": timesteps.tolist(), "remaining_steps": remaining,
                         "first_index": len(s.timesteps) - len(timesteps)}
    save_tensors(OUT / "schedulers" / "img2img.safetensors", tensors)
    write_json(OUT / "schedulers" / "img2img.json", {
        "steps": STEPS, "strengths": STRENGTHS,
        "python": [
            "clean = torch.randn((1, 4, 8, 8), generator=torch.Generator('cpu').manual_seed(7))",
            "s = Cls.from_config(SD15_SCHEDULER_CONFIG); s.set_timesteps(10)",
            "timesteps, n = StableDiffusionImg2ImgPipeline.get_timesteps(SimpleNamespace(scheduler=s), 10, strength, 'cpu')",
            "g = torch.Generator('cpu').manual_seed(1234); noise = torch.randn(clean.shape, generator=g)",
            "latents = s.add_noise(clean, noise, timesteps[:1])",
            "for t in timesteps: latents = s.step(0.8 * s.scale_model_input(latents, t) + 0.05 * (t.float() / 1000), t, latents, **kw).prev_sample",
        ],
        "runs": runs})
    print(f"img2img: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
