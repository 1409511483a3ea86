#!/usr/bin/env python3
"""models/tiny-sd15-pickled-vae/: the tiny diffusers folder with its VAE as an older folder holds it, a
torch.save pickle written by diffusers' own `save_pretrained(safe_serialization=False)`; the other parts
are links to models/tiny-sd15-diffusers.

    cd Tests/Fixtures && HF_HUB_OFFLINE=1 /work/venv/bin/python make_pickled_folder_fixture.py

vae/diffusion_pytorch_model.fp16.bin   AutoencoderKL.from_pretrained(tiny/vae, variant="fp16", torch_dtype=torch.float16)
                                       .save_pretrained(out/vae, safe_serialization=False, variant="fp16")
so its tensors are bit for bit those of tiny-sd15-diffusers/vae/diffusion_pytorch_model.fp16.safetensors.
"""
import json
import os
import shutil

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from make_fixtures import OUT

SOURCE = OUT / "models" / "tiny-sd15-diffusers"
DEST = OUT / "models" / "tiny-sd15-pickled-vae"


def main():
    shutil.rmtree(DEST, ignore_errors=True)
    DEST.mkdir(parents=True)
    for part in ["scheduler", "text_encoder", "tokenizer", "unet"]:
        os.symlink(f"../tiny-sd15-diffusers/{part}", DEST / part)
    shutil.copy(SOURCE / "model_index.json", DEST / "model_index.json")
    vae = AutoencoderKL.from_pretrained(SOURCE / "vae", variant="fp16", torch_dtype=torch.float16)
    vae.save_pretrained(DEST / "vae", safe_serialization=False, variant="fp16")
    written = torch.load(DEST / "vae" / "diffusion_pytorch_model.fp16.bin", weights_only=True)
    original = load_file(SOURCE / "vae" / "diffusion_pytorch_model.fp16.safetensors")
    assert written.keys() == original.keys() and all(torch.equal(written[k], original[k]) for k in original)
    print("pickled vae:", sorted(p.name for p in (DEST / "vae").iterdir()),
          (DEST / "vae" / "diffusion_pytorch_model.fp16.bin").stat().st_size)


if __name__ == "__main__":
    main()
