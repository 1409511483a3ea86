"""A print-ready CMYK JPEG, as Photoshop and print workflows save them, and the RGB pixels A1111 starts
img2img from when given it: PIL reads every CMYK JPEG as Adobe's inverted CMYK and `convert("RGB")`
turns it into RGB with its own formula (Convert.c's cmyk2rgb).

    /work/venv/bin/python Tests/Fixtures/make_jpeg_colour_fixtures.py
"""
import pathlib

import numpy as np
from PIL import Image

out = pathlib.Path(__file__).parent / "jpeg"
out.mkdir(exist_ok=True)
# 48x32: smooth ramps in C, M and Y over a K that steps, plus noise, so both the colour formula and the
# inversion show, and the file is large enough to be cut short inside its scan data.
rng = np.random.default_rng(7)
y, x = np.mgrid[0:32, 0:48]
cmyk = np.stack([x * 5, y * 7, (x + y) * 3, (x // 12) * 60], axis=-1).astype(np.int64)
cmyk = np.clip(cmyk + rng.integers(-20, 21, cmyk.shape), 0, 255).astype(np.uint8)
Image.fromarray(cmyk, "CMYK").save(out / "cmyk.jpg", quality=95)
Image.open(out / "cmyk.jpg").convert("RGB").save(out / "cmyk_as_rgb.png")
print((out / "cmyk.jpg").stat().st_size, Image.open(out / "cmyk.jpg").mode)
