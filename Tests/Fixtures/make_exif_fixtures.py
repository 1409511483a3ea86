"""A JPEG as a phone writes one: pixels stored sideways, EXIF Orientation 6 ("rotate 90° clockwise
to display"), written by PIL (little-endian TIFF, as PIL and most cameras lay it out).

    /work/venv/bin/python Tests/Fixtures/make_exif_fixtures.py
"""
import pathlib

import numpy as np
from PIL import Image, ImageOps

out = pathlib.Path(__file__).parent / "exif"
out.mkdir(exist_ok=True)
# 16 wide, 8 high, a distinct colour per 4x4 block so a wrong turn shows.
a = np.zeros((8, 16, 3), dtype=np.uint8)
for by in range(2):
    for bx in range(4):
        a[by * 4:(by + 1) * 4, bx * 4:(bx + 1) * 4] = (bx * 60, by * 200, 255 - bx * 60)
exif = Image.Exif()
exif[0x0112] = 6
Image.fromarray(a).save(out / "orientation6.jpg", quality=95, exif=exif)
shown = ImageOps.exif_transpose(Image.open(out / "orientation6.jpg"))
print(shown.size)  # (8, 16): what a viewer, and A1111's img2img, show
