#!/usr/bin/env python3
"""PyTorch pickle fixtures (Tests/Fixtures/pickle/ and models/tiny-sd15.ckpt.*): files written by torch.save,
with the tensors each holds as a safetensors reference beside them. ~5 s; see pickle/manifest.json.

    cd Tests/Fixtures && HF_HUB_OFFLINE=1 /work/venv/bin/python make_pickle_fixtures.py   # FIXTURES_OUT=/tmp/fx: /tmp/fx/...

pickle/state_dict.ckpt    torch.save({"state_dict": sd, "global_step": 5, "epoch": 1, "callbacks": {ModelCheckpoint: {...}}})
                          with fp32/fp16/bf16/int64 tensors, a transposed view, a row slice with a storage offset, a
                          strided column, shared storages, a 0-dim and an empty tensor, a Parameter, and a
                          module's state_dict() (an OrderedDict with _metadata, which the pickle sets with BUILD);
                          "callbacks" is keyed by PyTorch Lightning 1.x's ModelCheckpoint class, as in the CompVis
                          checkpoints (a stand-in module of that name is made here; Lightning is not needed).
pickle/protocol4.pt, pickle/protocol5.pt   the same state dict (without callbacks) with pickle_protocol=4 and 5
                          (STACK_GLOBAL, MEMOIZE, FRAME, SHORT_BINUNICODE).
pickle/params_ema.pth     BasicSR's layout: {"params_ema": {...}, "params": {...}}.
pickle/embedding.pt       an A1111 textual-inversion embedding: string_to_token, string_to_param {"*": [2, 8]}, name, step.
pickle/numpy_scalar.ckpt  a state dict beside a numpy float64 (numpy.core.multiarray.scalar): refused by sdrepl, as
                          by torch.load(weights_only=True).
pickle/reference.safetensors   every tensor above under the name sdrepl gives it, in its stored dtype
                          (.contiguous(): the values the views show), e.g. "state_dict/transposed".

models/tiny-sd15.ckpt.skeleton + .json: the fixture model models/tiny-sd15.safetensors saved with
torch.save({"state_dict": load_file(...), "global_step": 840000}) (5.3 MB), minus its storages' bytes, which are
exactly the safetensors file's tensor bytes: the JSON lists where each was cut and which tensor it is, with the
whole file's SHA-256, so a test rebuilds the byte-identical torch.save output without the budget paying twice.
"""
import hashlib
import json
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import OUT as FIXTURES_OUT, save_tensors, write_json  # 1 thread + deterministic torch

import numpy as np
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
OUT = FIXTURES_OUT / "pickle"
SEED = 20250315


def lightning_stand_in():
    """A module named like PyTorch Lightning's, so that pickle writes GLOBAL
    'pytorch_lightning.callbacks.model_checkpoint ModelCheckpoint' as Lightning 1.x did."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))
    module = sys.modules[names[-1]]
    cls = type("ModelCheckpoint", (), {"__module__": names[-1]})
    module.ModelCheckpoint = cls
    return cls


def state_dict(g):
    big = torch.randn(10, 4, generator=g)
    base = torch.randn(3, 5, generator=g).half()
    linear = torch.nn.Linear(4, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(2, 4, generator=g))
        linear.bias.copy_(torch.randn(2, generator=g))
    sd = OrderedDict()
    sd["f32"] = torch.randn(3, 4, generator=g)
    sd["f16"] = torch.randn(5, generator=g).half()
    sd["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["big"] = big
    sd["rows"] = big[3:7]            # storage offset 12, shares big's storage
    sd["column"] = big[:, 1]         # stride 4
    sd["base"] = base
    sd["transposed"] = base.T        # strides (1, 5)
    sd["position_ids"] = torch.arange(77).unsqueeze(0)  # int64, as in some checkpoints
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["param"] = torch.nn.Parameter(torch.randn(3, generator=g))
    sd["sub"] = linear.half().state_dict()  # OrderedDict with _metadata: BUILD
    sd["subnormal"] = torch.tensor([0x0001, 0x03FF, 0x7C00, 0xFC00 - 0x10000, 0x7E01], dtype=torch.int16).view(torch.float16)
    return sd


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, torch.Tensor):
            out[name] = v.detach().contiguous().clone()
        elif isinstance(v, dict):
            out.update(flatten(v, name))
    return out


def save(obj, name, **kwargs):
    path = OUT / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path, **kwargs)
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    return path


def same(a, b):
    """Equal dtype, shape and bits (NaN payloads included)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def check_weights_only(path, expected, weights_only=True):
    """torch's loader reads the file to the same tensors (its weights-only one reads protocol 2 only:
    protocols 4 and 5 are checked with the full unpickler, on files this script just wrote)."""
    loaded = torch.load(path, weights_only=weights_only)
    got = flatten(loaded.get("state_dict", loaded.get("params_ema", loaded)))
    for k, v in expected.items():
        assert same(got[k], v), k


def tiny_checkpoint_twin():
    """models/tiny-sd15.ckpt.skeleton + .json (see the module docstring)."""
    models = FIXTURES_OUT / "models"
    models.mkdir(parents=True, exist_ok=True)
    single = load_file(str(HERE / "models" / "tiny-sd15.safetensors"))
    tmp = models / "tiny-sd15.ckpt"
    torch.save({"state_dict": single, "global_step": 840000}, tmp)
    data = tmp.read_bytes()
    # Which storage is which tensor: the pickle names storages in order; each tensor has its own.
    with zipfile.ZipFile(tmp) as z:
        infos = {i.filename: i for i in z.infolist()}
        loaded = torch.load(tmp, weights_only=True, mmap=False)["state_dict"]
    keys = list(single.keys())
    splices = []
    for index, key in enumerate(keys):
        info = infos[f"tiny-sd15/data/{index}"]
        # the local header's extra field (alignment padding) is not the central directory's: read it
        name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
            int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        raw = single[key].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        assert data[start:start + info.file_size] == raw and info.file_size == len(raw), key
        splices.append([start, info.file_size, key])
        assert same(loaded[key], single[key]), key
    skeleton, cursor = bytearray(), 0
    for offset, length, _ in splices:
        skeleton += data[cursor:offset]
        cursor = offset + length
    skeleton += data[cursor:]
    (models / "tiny-sd15.ckpt.skeleton").write_bytes(bytes(skeleton))
    head = {"made_by": "torch.save({'state_dict': safetensors.torch.load_file('models/tiny-sd15.safetensors'), "
                       "'global_step': 840000}, 'tiny-sd15.ckpt')",
            "torch": torch.__version__, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "splices": "[offset in the .ckpt, bytes, tensor of tiny-sd15.safetensors whose bytes go there], in file order"}
    with open(models / "tiny-sd15.ckpt.json", "w", encoding="utf-8") as f:  # one splice a line: 990 lines, not 5000
        f.write(json.dumps(head, indent=1)[:-2] + ',\n "splice_list": [\n')
        f.write(",\n".join(json.dumps(s) for s in splices) + "\n ]\n}\n")
    assert json.load(open(models / "tiny-sd15.ckpt.json"))["splice_list"] == splices
    tmp.unlink()


def main():
    g = torch.Generator("cpu").manual_seed(SEED)
    sd = state_dict(g)
    ModelCheckpoint = lightning_stand_in()
    refs, manifest = {}, {}

    save({"state_dict": sd, "global_step": 5, "epoch": 1,
          "callbacks": {ModelCheckpoint: {"monitor": None, "best_model_score": None}}}, "state_dict.ckpt")
    with torch.serialization.safe_globals([ModelCheckpoint]):
        check_weights_only(OUT / "state_dict.ckpt", flatten(sd))
    flat = flatten(sd)
    refs.update({f"state_dict/{k}": v for k, v in flat.items()})
    manifest["state_dict.ckpt"] = "torch.save({'state_dict': sd, 'global_step': 5, 'epoch': 1, 'callbacks': {ModelCheckpoint: {...}}}, path)"

    plain = {k: v for k, v in sd.items()}
    for protocol in (4, 5):
        save(plain, f"protocol{protocol}.pt", pickle_protocol=protocol)
        check_weights_only(OUT / f"protocol{protocol}.pt", flat, weights_only=False)
        manifest[f"protocol{protocol}.pt"] = f"torch.save(sd, path, pickle_protocol={protocol})"

    ema = OrderedDict(conv_first_weight=torch.randn(4, 3, 3, 3, generator=g), conv_first_bias=torch.randn(4, generator=g))
    ema = OrderedDict((k.replace("_weight", ".weight").replace("_bias", ".bias"), v) for k, v in ema.items())
    params = OrderedDict((k, v + 1) for k, v in ema.items())
    save({"params_ema": ema, "params": params}, "params_ema.pth")
    check_weights_only(OUT / "params_ema.pth", ema)
    refs.update({f"params_ema/{k}": v for k, v in ema.items()})
    manifest["params_ema.pth"] = "torch.save({'params_ema': ema, 'params': params}, path)  # params = ema + 1"

    vectors = torch.randn(2, 8, generator=g).requires_grad_(True)
    save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors}, "name": "tinypickle", "step": 100,
          "sd_checkpoint": "1234abcd", "sd_checkpoint_name": "tiny-sd15"}, "embedding.pt")
    refs["embedding/string_to_param.*"] = vectors.detach()
    manifest["embedding.pt"] = ("torch.save({'string_to_token': {'*': 265}, 'string_to_param': {'*': vectors}, 'name': 'tinypickle', "
                                "'step': 100, 'sd_checkpoint': '1234abcd', 'sd_checkpoint_name': 'tiny-sd15'}, path)")

    save({"state_dict": {"w": torch.ones(2)}, "epoch": np.float64(1.0)}, "numpy_scalar.ckpt")
    manifest["numpy_scalar.ckpt"] = "torch.save({'state_dict': {'w': torch.ones(2)}, 'epoch': np.float64(1.0)}, path)"
    try:
        torch.load(OUT / "numpy_scalar.ckpt", weights_only=True)
        raise AssertionError("torch's weights-only loader accepted a numpy scalar")
    except Exception as e:
        refusal = next(line for line in str(e).splitlines() if "GLOBAL" in line)
        manifest["numpy_scalar.ckpt torch.load(weights_only=True)"] = refusal.strip()[:300]

    save_tensors(OUT / "reference.safetensors", refs)
    write_json(OUT / "manifest.json", {"torch": torch.__version__, "files": manifest,
                                        "reference": "every tensor, .contiguous(), under '<file stem>/<name sdrepl gives it>'"})
    tiny_checkpoint_twin()


if __name__ == "__main__":
    main()
