"""Reference images for the hires fix on the tiny SD1.5-topology model: A1111's two passes as a loop
over diffusers' components. diffusers has no hires fix; this is A1111's `sample_hr_pass` with
diffusers' samplers and generator:

  1. StableDiffusionPipeline at the request's size, output_type="latent";
  2. the latents resized with F.interpolate (bilinear, nearest, nearest-exact or bicubic, no
     antialias, A1111's "Latent" upscalers), or decoded, enlarged by an upscaler network if one is
     named, resized with Pillow's Lanczos and encoded again (the posterior sampled with the second
     pass's generator);
  3. img2img at the new size with a fresh torch.Generator("cpu").manual_seed(seed): A1111's step rule
     for the second pass (`setup_img2img_steps` with steps given: a schedule of
     int(hires_steps / min(strength, 0.999)) steps of which the last hires_steps run), the noise drawn
     after the posterior, `add_noise` at the first timestep that runs.

Run with the venv of make_fixtures.py (see README.md):
    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_hires_fixtures.py
Writes hires/<case>.safetensors and hires/manifest.json.
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from diffusers import StableDiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor

from safetensors.torch import load_file

from make_esrgan_fixtures import NUM_BLOCK, NUM_FEAT, NUM_GROW, RRDBNet, realesrganer
from make_fixtures import OUT, make_scheduler, save_tensors, write_json

MODEL = OUT / "models" / "tiny-sd15-diffusers"
PROMPT, NEGATIVE = "a red fox in the snow", "blurry"
SEED, STEPS, GUIDANCE = 21, 6, 4.0
LATENT_MODES = {"latent": "bilinear", "latent-nearest": "nearest", "latent-nearest-exact": "nearest-exact",
                "latent-bicubic": "bicubic"}
CASES = [
    # name, sampler, upscaler, target (w, h), hires steps (0: as the first pass), strength
    ("euler_latent_x2", "euler", "latent", (128, 128), 4, 0.5),
    ("euler-a_bicubic", "euler-a", "latent-bicubic", (96, 80), 0, 0.7),
    ("ddim_nearest", "ddim", "latent-nearest", (128, 64), 3, 0.6),
    ("dpmpp-2m_lanczos", "dpmpp-2m", "lanczos", (96, 96), 5, 0.75),
    # An upscaler network: the tiny x4 RRDBNet of make_esrgan_fixtures.py, 64 -> 256, then Lanczos to 96.
    ("euler_esrgan-x4", "euler", "esrgan/tiny-x4.safetensors", (96, 96), 3, 0.6),
]


def esrgan_upscale(path, image, target):
    """A1111's `Upscaler.upscale` with an RRDBNet: the network (RealESRGANer's RGB in [0, 1], clamp,
    round to 8 bits) until the image covers the target, at most 3 times; the caller then resizes."""
    state = load_file(str(OUT / path))
    net = RRDBNet(3, 3, scale=4, num_feat=NUM_FEAT, num_block=NUM_BLOCK, num_grow_ch=NUM_GROW).eval()
    net.load_state_dict(state)
    for _ in range(3):
        if image.width >= target[0] and image.height >= target[1]:
            break
        x = torch.from_numpy(np.array(image).astype(np.float32) / 255).permute(2, 0, 1)[None]
        y = realesrganer(net, x, 4, tile=0, tile_pad=0, pre_pad=0)
        image = Image.fromarray((y[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8))
    return image


@torch.no_grad()
def hires(pipe, sampler, upscaler, target, hires_steps, strength):
    pipe.scheduler = make_scheduler(sampler)
    first = pipe(PROMPT, negative_prompt=NEGATIVE, height=64, width=64, num_inference_steps=STEPS,
                 guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(SEED), output_type="latent").images
    tw, th = target
    sf = pipe.vae.config.scaling_factor
    g = torch.Generator("cpu").manual_seed(SEED)
    if upscaler in LATENT_MODES:
        mode = LATENT_MODES[upscaler]
        extra = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        clean = F.interpolate(first, size=(th // 8, tw // 8), mode=mode, **extra)
    else:
        image = pipe.image_processor.postprocess(pipe.vae.decode(first / sf).sample, output_type="pil")[0]
        if upscaler.startswith("esrgan/"):
            image = esrgan_upscale(upscaler, image, (tw, th))
        up = image.resize((tw, th), resample=Image.LANCZOS)
        clean = pipe.vae.encode(pipe.image_processor.preprocess(up)).latent_dist.sample(g) * sf
    steps = hires_steps or STEPS
    total = int(steps / min(strength, 0.999))
    scheduler = make_scheduler(sampler)
    scheduler.set_timesteps(total)
    start = total - steps
    timesteps = scheduler.timesteps[start * scheduler.order:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * scheduler.order)
    noise = randn_tensor(clean.shape, generator=g)
    latents = scheduler.add_noise(clean, noise, timesteps[:1])
    cond, uncond = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
    context = torch.cat([uncond, cond])
    kwargs = pipe.prepare_extra_step_kwargs(g, 0.0)
    for t in timesteps:
        x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        u, c = pipe.unet(x, t, encoder_hidden_states=context).sample.chunk(2)
        latents = scheduler.step(u + GUIDANCE * (c - u), t, latents, **kwargs).prev_sample
    out = pipe.image_processor.postprocess(pipe.vae.decode(latents / sf).sample, output_type="np")[0]
    return torch.from_numpy(out.astype(np.float32)).half(), len(timesteps)


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    d = OUT / "hires"
    d.mkdir(exist_ok=True)
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    cases = []
    for name, sampler, upscaler, target, hires_steps, strength in CASES:
        image, evaluated = hires(pipe, sampler, upscaler, target, hires_steps, strength)
        save_tensors(d / f"{name}.safetensors", {"image": image})
        cases.append({"name": name, "sampler": sampler, "upscaler": upscaler, "width": target[0], "height": target[1],
                      "hires_steps": hires_steps, "strength": strength, "second_pass_timesteps": evaluated})
    write_json(d / "manifest.json", {
        "prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "steps": STEPS, "guidance": GUIDANCE,
        "width": 64, "height": 64, "cases": cases,
        "python": "make_hires_fixtures.py: hires(pipe, sampler, upscaler, (w, h), hires_steps, strength), stored as float16",
    })
    print(f"hires: {len(cases)} cases")


if __name__ == "__main__":
    main()
