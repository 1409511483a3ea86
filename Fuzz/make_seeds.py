#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (Fuzz/corpus/TARGET/) that are not copies of existing files.

Python's standard library only. Run from anywhere: python3 Fuzz/make_seeds.py

The other seeds are copies:
  script/       examples/*.sdscript and Tests/Fixtures/transcripts/recorded-by-0.1.0.sdscript
  safetensors/  Tests/Fixtures/ti/tinyglow.safetensors and tinyneg.safetensors
  pickle/       Tests/Fixtures/pickle/*.ckpt, *.pt, *.pth (torch.save's files, for the harness's file mode)
  image/        sdrepl-written.png and .jpg, saved by sdrepl itself from this script on stdin:
                    seed 1234 / set size 64x64 / set steps 2 / set outdir out
                    prompt a red fox in snow, (highly detailed:1.2), [winter|autumn]
                    negative blurry, lowres / gen
                with --model Tests/Fixtures/models/tiny-sd15-diffusers --no-record;
                exif-sdrepl.bin is the EXIF APP1 payload of that JPEG, and sdrepl-progressive.jpg
                the same JPEG made progressive (jpegtran -progressive -copy all, libjpeg-turbo-progs).
"""
import json
import os
import shutil
import struct
import zipfile
import zlib

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


# --- safetensors -------------------------------------------------------------------------------

def safetensors(tensors, metadata=None):
    """tensors: (name, dtype, shape, raw bytes), laid out in order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


write("safetensors", "every-readable-dtype.safetensors", safetensors([
    ("f32", "F32", [2], struct.pack("<2f", 1.5, -0.0)),
    ("f16", "F16", [2, 2], struct.pack("<4H", 0x3C00, 0x0001, 0x7C00, 0x7E01)),  # 1, subnormal, inf, NaN
    ("bf16", "BF16", [3], struct.pack("<3H", 0x3F80, 0xFF80, 0x0001)),
    ("f64", "F64", [1], struct.pack("<d", 1e-310)),
    ("i64", "I64", [2], struct.pack("<2q", -(2**63), 2**53 + 1)),
    ("u64", "U64", [1], struct.pack("<Q", 2**64 - 1)),
    ("i32", "I32", [1], struct.pack("<i", -7)),
    ("u32", "U32", [1], struct.pack("<I", 7)),
    ("i16", "I16", [1], struct.pack("<h", -300)),
    ("u16", "U16", [1], struct.pack("<H", 300)),
    ("i8", "I8", [2], struct.pack("<2b", -128, 127)),
    ("u8", "U8", [1], b"\xff"),
    ("bool", "BOOL", [2], b"\x00\x01"),
    ("scalar", "F32", [], struct.pack("<f", 3.0)),
    ("empty", "F16", [0, 4], b""),
], metadata={"format": "pt", "note": "caf\u00e9 \\u escapes \"quoted\""}))

write("safetensors", "unreadable-dtypes.safetensors", safetensors([
    ("f8", "F8_E4M3", [2], b"\x38\xb8"),
    ("f4", "F4", [4], b"\x12\x34"),
    ("f6", "F6_E2M3", [4], b"\x00\x00\x00"),
    ("c64", "C64", [1], struct.pack("<2f", 1, 2)),
]))


# --- pickle ------------------------------------------------------------------------------------
# The fixtures as files (first byte 'P', even: file mode), and each one's data.pkl behind an odd
# byte (pickle mode: the harness wraps it in an archive with storages "0" to "3" of 64 bytes).

FIXTURES = os.path.join(os.path.dirname(CORPUS), "..", "Tests", "Fixtures", "pickle")
for name in sorted(os.listdir(FIXTURES)):
    if name.endswith((".ckpt", ".pt", ".pth")):
        shutil.copyfile(os.path.join(FIXTURES, name), os.path.join(CORPUS, "pickle", name))
        with zipfile.ZipFile(os.path.join(FIXTURES, name)) as z:
            pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            write("pickle", name.rsplit(".", 1)[0] + ".pkl", b"\x01" + z.read(pkl))

# A tensor over storage "0" as the wrapped archive has it (16 float32), a view with an offset and strides.
tensor = (b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
          b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x10tQK\x02K\x03K\x02\x86K\x01K\x04\x86\x89ccollections\nOrderedDict\n)RtRs.")
write("pickle", "strided-view.pkl", b"\x01" + tensor)

# --- images ------------------------------------------------------------------------------------

def png(width, height, color_type, bit_depth, raw_rows, chunks, interlace=0, palette=None):
    """A PNG from filtered scanlines (each row already prefixed by its filter byte)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace))
    if palette:
        out += chunk(b"PLTE", palette)
    for kind, body in chunks:
        out += chunk(kind, body)
    out += chunk(b"IDAT", zlib.compress(raw_rows))
    out += chunk(b"IEND", b"")
    return out


INFOTEXT = ("a cozy cabin, snow, (warm light:1.2)\nNegative prompt: lowres\n"
            "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3141592653, "
            "Size: 2x1, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
            "Lora hashes: \"ink: 0a1b2c3d4e5f\", Version: v1.10.1")

# A1111's PNG: RGBA with only the `parameters` tEXt chunk.
write("image", "a1111-parameters.png", png(2, 1, 6, 8, b"\x00" + bytes([9, 8, 7, 255, 6, 5, 4, 255]),
                                           [(b"tEXt", b"parameters\0" + INFOTEXT.encode("latin-1"))]))

# 16-bit grey, Adam7-interlaced (one pass for a 1x1 image), a compressed iTXt and a zTXt.
itxt = b"parameters\0\x01\x00en\0parameters\0" + zlib.compress("un \u00e9t\u00e9 \u2603 <lora:x:0.5>\nSteps: 1, Seed: 2, Size: 1x1".encode())
write("image", "gray16-interlaced-itxt.png", png(1, 1, 0, 16, b"\x00\x12\x34",
                                                 [(b"iTXt", itxt), (b"zTXt", b"Prompt\0\0" + zlib.compress(b"a fox"))],
                                                 interlace=1))

# A palette image with transparency, sdrepl's keys in tEXt.
write("image", "palette-sdrepl-keys.png", png(2, 2, 3, 1, b"\x00\x40\x00\x80", [
    (b"tRNS", b"\x00"), (b"tEXt", b"Prompt\0a red fox"), (b"tEXt", b"NegativePrompt\0blurry"),
    (b"tEXt", b"Style\0none")], palette=b"\x00\x00\x00\xff\xff\xff"))


def exif(text, little):
    """An EXIF APP1 payload whose Exif IFD holds UserComment = UNICODE + UTF-16 in `little` order."""
    e = "<" if little else ">"
    comment = b"UNICODE\0" + text.encode("utf-16-le" if little else "utf-16-be")
    tiff = (b"II" if little else b"MM") + struct.pack(e + "HI", 42, 8)
    tiff += struct.pack(e + "H", 1) + struct.pack(e + "HHII", 0x8769, 4, 1, 26) + struct.pack(e + "I", 0)
    tiff += struct.pack(e + "H", 1) + struct.pack(e + "HHII", 0x9286, 7, len(comment), 44) + struct.pack(e + "I", 0)
    return b"Exif\0\0" + tiff + comment


write("image", "exif-little-endian.bin", exif(INFOTEXT, little=True))
write("image", "infotext.txt", INFOTEXT.encode())
