"""A tiny random TAESD (diffusers' AutoencoderTiny) in both layouts users have, and its decoding.

Run with the venv of make_fixtures.py (see README.md):
    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_taesd_fixtures.py
Writes taesd/tiny-taesd/ (a diffusers folder: config.json + diffusion_pytorch_model.safetensors),
taesd/taesd_decoder.safetensors (madebyollin's own layout: the decoder's nn.Sequential, index 0 the
clamp, saved with safetensors.torch.save_file(decoder.state_dict())) and taesd/reference.safetensors.
"""
import torch
import torch.nn as nn
from diffusers import AutoencoderTiny
from safetensors.torch import save_file

from make_fixtures import OUT, save_tensors, write_json

CHANNELS = (16, 16, 16, 16)


# madebyollin/taesd's taesd.py, decoder half: the module whose state_dict is the released
# taesd_decoder.pth / .safetensors.
def conv(n_in, n_out, **kwargs):
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x):
        return self.fuse(self.conv(x) + self.skip(x))


def original_decoder(c, latent_channels=4):
    return nn.Sequential(
        Clamp(), conv(latent_channels, c), nn.ReLU(),
        Block(c, c), Block(c, c), Block(c, c), nn.Upsample(scale_factor=2), conv(c, c, bias=False),
        Block(c, c), Block(c, c), Block(c, c), nn.Upsample(scale_factor=2), conv(c, c, bias=False),
        Block(c, c), Block(c, c), Block(c, c), nn.Upsample(scale_factor=2), conv(c, c, bias=False),
        Block(c, c), conv(c, 3),
    )


@torch.no_grad()
def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    d = OUT / "taesd"
    model = AutoencoderTiny(encoder_block_out_channels=CHANNELS, decoder_block_out_channels=CHANNELS).eval()
    g = torch.Generator("cpu").manual_seed(11)
    for name, p in model.named_parameters():
        fan_in = p[0].numel() if p.ndim > 1 else 1
        p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in**0.5 if p.ndim > 1 else 0.05))
    model.save_pretrained(d / "tiny-taesd")
    # The same decoder in madebyollin's layout: diffusers' decoder.layers.N is the original's N + 1.
    original = original_decoder(CHANNELS[0]).eval()
    state = {}
    for k, v in model.decoder.state_dict().items():
        assert k.startswith("layers."), k
        index, rest = k[len("layers."):].split(".", 1)
        state[f"{int(index) + 1}.{rest}"] = v
    original.load_state_dict(state)
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, d / "taesd_decoder.safetensors")
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(3)) * 2
    image = model.decode(latents).sample  # [-1, 1]
    check = original(latents).mul(2).sub(1)
    assert torch.equal(image, check), (image - check).abs().max()
    save_tensors(d / "reference.safetensors", {"latents": latents, "image": image})
    write_json(d / "reference.json", {
        "channels": list(CHANNELS),
        "python": [
            "model = AutoencoderTiny(encoder_block_out_channels=(16,)*4, decoder_block_out_channels=(16,)*4)  # random weights, seed 11",
            "latents = torch.randn((1, 4, 8, 8), generator=torch.Generator('cpu').manual_seed(3)) * 2",
            "image = model.decode(latents).sample  # == original_decoder(latents) * 2 - 1, checked",
        ]})
    print("taesd:", sorted(p.name for p in d.rglob("*") if p.is_file()))


if __name__ == "__main__":
    main()
