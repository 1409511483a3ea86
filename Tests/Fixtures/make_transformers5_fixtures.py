#!/usr/bin/env python3
"""The tiny model's tokenizer and text encoder as transformers 5 saves them
(Tests/Fixtures/models/tiny-sd15-transformers5/{tokenizer,text_encoder}). ~10 s, 1 thread.

    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_transformers5_fixtures.py   # FIXTURES_OUT=/tmp/fx: /tmp/fx/models/...

Both parts are loaded from models/tiny-sd15-diffusers with transformers and written back with
save_pretrained, the same code that writes the folders users download today. If save_pretrained
writes vocab.json or merges.txt, they are deleted, so that the fixture exercises tokenizer.json
alone (manifest.json says what was written and what was deleted).

Checked here, so the Swift tests can reuse the existing references:
- CLIPTokenizerFast.from_pretrained(<new tokenizer folder>) gives tokenizer/corpus.json's ids
  (tok(p).input_ids and tok(p, padding="max_length", max_length=77, truncation=True).input_ids) for
  every prompt;
- transformers 5.23's save_pretrained keeps the key layout a model was loaded from (the tiny folder's
  "text_model." keys), and writes a model built in memory without the prefix; the fixture is the
  latter, holding exactly the original's tensors and giving the same outputs;
- diffusers' StableDiffusionPipeline.from_pretrained loads a folder made of the tiny model's UNet,
  VAE and scheduler with these two parts, and encode_prompt gives the original's embeddings.
"""
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import OUT as FIXTURES_OUT, write_json  # 1 thread + deterministic torch

import torch
from safetensors import safe_open

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "models" / "tiny-sd15-diffusers"
OUT = FIXTURES_OUT / "models" / "tiny-sd15-transformers5"
PROMPT = "an astronaut riding a horse on mars, highly detailed"


def tensors(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@torch.no_grad()
def main():
    import diffusers
    import tokenizers
    import transformers
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPTokenizerFast

    assert transformers.__version__ == "5.23.0", transformers.__version__
    for part in ("tokenizer", "text_encoder"):
        shutil.rmtree(OUT / part, ignore_errors=True)

    # The class diffusers' StableDiffusionPipeline loads for tokenizer/.
    tokenizer = CLIPTokenizer.from_pretrained(str(SOURCE / "tokenizer"))
    tokenizer.save_pretrained(str(OUT / "tokenizer"))
    # save_pretrained writes the key layout a model was loaded from: loaded from the tiny folder's
    # model.safetensors ("text_model." keys) it writes them back with the prefix; a model built in
    # memory, as a training or conversion script builds it, is written under transformers 5's own
    # module names, without the prefix. Both are checked; the fixture is the unprefixed one (the
    # prefixed layout is the tiny folder's own model.safetensors).
    loaded = CLIPTextModel.from_pretrained(str(SOURCE / "text_encoder"))  # model.safetensors, fp32
    with tempfile.TemporaryDirectory() as scratch:
        loaded.save_pretrained(scratch)
        resaved = tensors(Path(scratch) / "model.safetensors")
    assert all(k.startswith("text_model.") for k in resaved), sorted(resaved)[:3]
    text_encoder = CLIPTextModel(loaded.config)
    text_encoder.load_state_dict(loaded.state_dict())
    text_encoder.eval()
    text_encoder.save_pretrained(str(OUT / "text_encoder"))

    written = {part: sorted(os.listdir(OUT / part)) for part in ("tokenizer", "text_encoder")}
    deleted = []
    for name in ("vocab.json", "merges.txt"):
        if (OUT / "tokenizer" / name).exists():
            (OUT / "tokenizer" / name).unlink()
            deleted.append(f"tokenizer/{name}")
    tokenizer_json = json.loads((OUT / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    merges = tokenizer_json["model"]["merges"]
    print("written:", written, "deleted:", deleted, "merges given as", type(merges[0]).__name__)

    # The text encoder's keys as save_pretrained wrote them, and the same numbers as the source.
    saved = tensors(OUT / "text_encoder" / "model.safetensors")
    original = tensors(SOURCE / "text_encoder" / "model.safetensors")
    strip = lambda k: k[len("text_model."):] if k.startswith("text_model.") else k
    assert {strip(k): v.shape for k, v in original.items()} == {strip(k): v.shape for k, v in saved.items()}
    assert all(torch.equal(v, original.get(k, original.get("text_model." + k))) for k, v in saved.items())
    prefixed = sum(k.startswith("text_model.") for k in saved)
    assert prefixed == 0, sorted(saved)[:3]
    print(f"text encoder: {len(saved)} tensors, {prefixed} with the text_model. prefix; e.g. {sorted(saved)[:2]}")

    # Reference ids: the fast tokenizer from the new folder against the committed corpus.
    fast = CLIPTokenizerFast.from_pretrained(str(OUT / "tokenizer"))
    corpus = json.loads((HERE / "tokenizer" / "corpus.json").read_text(encoding="utf-8"))
    differ = []
    for entry in corpus["entries"]:
        p = entry["prompt"]
        if (fast(p).input_ids != entry["ids"]
                or fast(p, padding="max_length", max_length=77, truncation=True).input_ids != entry["ids_77"]):
            differ.append(p)
    assert not differ, f"{len(differ)} corpus prompts tokenize differently from tokenizer.json: {differ[:5]}"
    print(f"corpus: all {len(corpus['entries'])} prompts give the recorded ids with {type(fast).__name__} from tokenizer.json")

    # The saved text encoder gives the same outputs.
    reloaded = CLIPTextModel.from_pretrained(str(OUT / "text_encoder"))
    ids = torch.tensor([fast(PROMPT, padding="max_length", max_length=77, truncation=True).input_ids])
    assert torch.equal(reloaded(ids).last_hidden_state, loaded(ids).last_hidden_state)

    # diffusers loads a folder assembled from these parts, as the Swift test assembles it.
    from diffusers import StableDiffusionPipeline
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for part in ("unet", "vae", "scheduler", "model_index.json"):
            (shutil.copytree if (SOURCE / part).is_dir() else shutil.copy)(SOURCE / part, folder / part)
        for part in ("tokenizer", "text_encoder"):
            shutil.copytree(OUT / part, folder / part)
        load = lambda path: StableDiffusionPipeline.from_pretrained(str(path), local_files_only=True, safety_checker=None)
        new, old = load(folder), load(SOURCE)
        embeds = lambda pipe: pipe.encode_prompt(PROMPT, "cpu", 1, False)[0]
        assert torch.equal(embeds(new), embeds(old))
    print("diffusers loads the assembled folder; encode_prompt equals the original's")

    write_json(OUT / "manifest.json", {
        "what": "models/tiny-sd15-diffusers/{tokenizer,text_encoder} loaded with transformers and written back with save_pretrained",
        "python": [
            "CLIPTokenizer.from_pretrained('models/tiny-sd15-diffusers/tokenizer').save_pretrained('models/tiny-sd15-transformers5/tokenizer')",
            "loaded = CLIPTextModel.from_pretrained('models/tiny-sd15-diffusers/text_encoder')",
            "te = CLIPTextModel(loaded.config); te.load_state_dict(loaded.state_dict()); te.save_pretrained('models/tiny-sd15-transformers5/text_encoder')",
        ],
        "loaded_model_save_pretrained_keys": "with the text_model. prefix (the layout it was loaded from)",
        "written_by_save_pretrained": written,
        "deleted_after_saving": deleted,
        "merges_format": "pairs" if isinstance(merges[0], list) else "strings",
        "text_encoder_keys_with_text_model_prefix": prefixed,
        "text_encoder_keys": len(saved),
        "corpus_ids_equal": True,
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "diffusers": diffusers.__version__, "torch": torch.__version__},
    })


if __name__ == "__main__":
    main()
