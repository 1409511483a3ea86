"""Tiny random RRDBNet upscalers (RealESRGAN's and old ESRGAN's key layouts) and their outputs.

Run with the venv of make_fixtures.py (see README.md):
    cd Tests/Fixtures && HF_HUB_OFFLINE=1 /work/venv/bin/python make_esrgan_fixtures.py
Writes esrgan/:
  tiny-x4.safetensors      basicsr RRDBNet(scale=4), 2 blocks, num_feat 8, num_grow_ch 4, fp32
  tiny-x2.safetensors      basicsr RRDBNet(scale=2) (pixel-unshuffled input, 12 channels), same sizes, fp16
  tiny-old-x4.safetensors  the x4 weights renamed to old ESRGAN's `model.N` layout (as 4x-UltraSharp-style files)
  reference.safetensors    inputs and outputs (see reference.json for the Python of each)
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from make_fixtures import OUT, save_tensors, write_json

NUM_FEAT, NUM_GROW, NUM_BLOCK = 8, 4, 2


# basicsr/archs/rrdbnet_arch.py (BasicSR 1.4.2), structure unchanged; default_init_weights left out
# (the script draws its own random weights).
def pixel_unshuffle(x, scale):
    b, c, hh, hw = x.size()
    out_channel = c * (scale**2)
    assert hh % scale == 0 and hw % scale == 0
    h = hh // scale
    w = hw // scale
    x_view = x.view(b, c, h, scale, w, scale)
    return x_view.permute(0, 1, 3, 5, 2, 4).reshape(b, out_channel, h, w)


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat=64, num_grow_ch=32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        # Empirically, we use 0.2 to scale the residual for better performance
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat, num_grow_ch=32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x):
        out = self.rdb1(x)
        out = self.rdb2(out)
        out = self.rdb3(out)
        return out * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, num_in_ch, num_out_ch, scale=4, num_feat=64, num_block=23, num_grow_ch=32):
        super().__init__()
        self.scale = scale
        if scale == 2:
            num_in_ch = num_in_ch * 4
        elif scale == 1:
            num_in_ch = num_in_ch * 16
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat=num_feat, num_grow_ch=num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        # upsample
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        if self.scale == 2:
            feat = pixel_unshuffle(x, scale=2)
        elif self.scale == 1:
            feat = pixel_unshuffle(x, scale=4)
        else:
            feat = x
        feat = self.conv_first(feat)
        body_feat = self.conv_body(self.body(feat))
        feat = feat + body_feat
        # upsample
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode='nearest')))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode='nearest')))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out


# Old ESRGAN (xinntao's original RRDBNet_arch, A1111's esrgan_model_arch) names the same modules by
# their place in one nn.Sequential: model.0 conv_first; model.1.sub.N.RDB1..3.convK.0 (a conv in a
# Sequential with its LeakyReLU; conv5 has none), model.1.sub.<blocks> conv_body; then per upsampling
# [Upsample, conv, LeakyReLU]; then conv_hr, LeakyReLU, conv_last.
def old_layout(state, num_block, upsamplings=2):
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "conv_first":
            new = "model.0." + parts[1]
        elif parts[0] == "body":
            block, rdb, conv, tensor = parts[1], parts[2], parts[3], parts[4]
            new = f"model.1.sub.{block}.RDB{rdb[3:]}.{conv}.0.{tensor}"
        elif parts[0] == "conv_body":
            new = f"model.1.sub.{num_block}.{parts[1]}"
        elif parts[0].startswith("conv_up"):
            n = int(parts[0][len("conv_up"):])
            new = f"model.{3 * n}.{parts[1]}"
        elif parts[0] == "conv_hr":
            new = f"model.{3 * upsamplings + 2}.{parts[1]}"
        elif parts[0] == "conv_last":
            new = f"model.{3 * upsamplings + 4}.{parts[1]}"
        else:
            raise KeyError(key)
        renamed[new] = value
    return renamed


# realesrgan/utils.py RealESRGANer: pre_process (pre_pad, then the mod pad for the pixel-unshuffle
# scales, both 'reflect' on the right and bottom), tile_process, post_process, and enhance's clamp.
def realesrganer(model, img, scale, tile, tile_pad, pre_pad):
    x = img
    if pre_pad != 0:
        x = F.pad(x, (0, pre_pad, 0, pre_pad), 'reflect')
    mod_scale = {2: 2, 1: 4}.get(scale)
    mod_pad_h = mod_pad_w = 0
    if mod_scale is not None:
        _, _, h, w = x.size()
        if h % mod_scale != 0:
            mod_pad_h = mod_scale - h % mod_scale
        if w % mod_scale != 0:
            mod_pad_w = mod_scale - w % mod_scale
        x = F.pad(x, (0, mod_pad_w, 0, mod_pad_h), 'reflect')
    if tile == 0:
        output = model(x)
    else:
        batch, channel, height, width = x.shape
        output = x.new_zeros((batch, channel, height * scale, width * scale))
        tiles_x = math.ceil(width / tile)
        tiles_y = math.ceil(height / tile)
        for y in range(tiles_y):
            for xx in range(tiles_x):
                ofs_x, ofs_y = xx * tile, y * tile
                input_start_x, input_end_x = ofs_x, min(ofs_x + tile, width)
                input_start_y, input_end_y = ofs_y, min(ofs_y + tile, height)
                input_start_x_pad = max(input_start_x - tile_pad, 0)
                input_end_x_pad = min(input_end_x + tile_pad, width)
                input_start_y_pad = max(input_start_y - tile_pad, 0)
                input_end_y_pad = min(input_end_y + tile_pad, height)
                input_tile_width = input_end_x - input_start_x
                input_tile_height = input_end_y - input_start_y
                input_tile = x[:, :, input_start_y_pad:input_end_y_pad, input_start_x_pad:input_end_x_pad]
                output_tile = model(input_tile)
                output_start_x, output_end_x = input_start_x * scale, input_end_x * scale
                output_start_y, output_end_y = input_start_y * scale, input_end_y * scale
                output_start_x_tile = (input_start_x - input_start_x_pad) * scale
                output_end_x_tile = output_start_x_tile + input_tile_width * scale
                output_start_y_tile = (input_start_y - input_start_y_pad) * scale
                output_end_y_tile = output_start_y_tile + input_tile_height * scale
                output[:, :, output_start_y:output_end_y, output_start_x:output_end_x] = \
                    output_tile[:, :, output_start_y_tile:output_end_y_tile, output_start_x_tile:output_end_x_tile]
    if mod_scale is not None:
        _, _, h, w = output.size()
        output = output[:, :, 0:h - mod_pad_h * scale, 0:w - mod_pad_w * scale]
    if pre_pad != 0:
        _, _, h, w = output.size()
        output = output[:, :, 0:h - pre_pad * scale, 0:w - pre_pad * scale]
    return output.clamp_(0, 1)


def randomize(model, seed):
    # Weights ~ N(0, 1/fan_in), biases ~ N(0, 0.05), conv_last's bias 0.5 so the image sits mid-range
    # and the clamp to [0, 1] cuts few pixels (a parity test on clamped values would test little).
    g = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in**0.5 if p.ndim > 1 else 0.05))
        model.conv_last.weight.mul_(0.3)
        model.conv_last.bias.add_(0.5)


@torch.no_grad()
def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    d = OUT / "esrgan"
    d.mkdir(parents=True, exist_ok=True)

    x4 = RRDBNet(3, 3, scale=4, num_feat=NUM_FEAT, num_block=NUM_BLOCK, num_grow_ch=NUM_GROW).eval()
    randomize(x4, 21)
    save_file({k: v.contiguous() for k, v in x4.state_dict().items()}, str(d / "tiny-x4.safetensors"))
    save_file({k: v.contiguous() for k, v in old_layout(x4.state_dict(), NUM_BLOCK).items()},
              str(d / "tiny-old-x4.safetensors"))

    x2 = RRDBNet(3, 3, scale=2, num_feat=NUM_FEAT, num_block=NUM_BLOCK, num_grow_ch=NUM_GROW).eval()
    randomize(x2, 22)
    # Stored in fp16, as many released upscalers are; the reference runs on the rounded weights.
    half = {k: v.half().contiguous() for k, v in x2.state_dict().items()}
    save_file(half, str(d / "tiny-x2.safetensors"))
    x2.load_state_dict({k: v.float() for k, v in half.items()})

    g = torch.Generator("cpu").manual_seed(5)
    image = torch.randint(0, 256, (1, 3, 20, 24), generator=g).float() / 255    # even: both nets take it
    odd = torch.randint(0, 256, (1, 3, 15, 13), generator=g).float() / 255      # odd: x2 needs the mod pad
    refs = {
        "image": image,
        "odd": odd,
        "x4_net": x4(image),
        "x2_net": x2(image),
        "x4_tiled": realesrganer(x4, image, 4, tile=8, tile_pad=3, pre_pad=0),
        "x2_tiled_odd": realesrganer(x2, odd, 2, tile=6, tile_pad=2, pre_pad=2),
    }
    save_tensors(d / "reference.safetensors", refs)

    write_json(d / "reference.json", {
        "sizes": {"num_feat": NUM_FEAT, "num_grow_ch": NUM_GROW, "num_block": NUM_BLOCK},
        "python": {
            "models": "RRDBNet(3, 3, scale=4|2, num_feat=8, num_block=2, num_grow_ch=4), weights N(0, 1/fan_in) (seed 21, 22), "
                      "conv_last weight * 0.3 and bias + 0.5; x2 stored in fp16",
            "image": "torch.randint(0, 256, (1, 3, 20, 24), generator=torch.Generator().manual_seed(5)).float() / 255",
            "odd": "torch.randint(0, 256, (1, 3, 15, 13), generator=g).float() / 255  # the same generator, next draw",
            "x4_net": "x4(image)",
            "x2_net": "x2(image)",
            "x4_tiled": "realesrganer(x4, image, 4, tile=8, tile_pad=3, pre_pad=0)  # RealESRGANer's pre_process, tile_process, post_process, clamp",
            "x2_tiled_odd": "realesrganer(x2, odd, 2, tile=6, tile_pad=2, pre_pad=2)",
        },
    })
    print("esrgan:", sorted((p.name, p.stat().st_size) for p in d.rglob("*") if p.is_file()))


if __name__ == "__main__":
    main()
