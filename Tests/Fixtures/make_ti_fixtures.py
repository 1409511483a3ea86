#!/usr/bin/env python3
"""Textual-inversion fixtures (Tests/Fixtures/ti/): two A1111-layout embeddings for the tiny model and the
outputs of diffusers' pipe.load_textual_inversion with them. ~10 s, 1 thread; see ti/manifest.json.

    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_ti_fixtures.py   # FIXTURES_OUT=/tmp/fx: /tmp/fx/ti

"glow" cannot be a diffusers token name ("glow" is in CLIP's vocab), so the 1-vector one is "tinyglow".
Budget (25 MB for Tests/Fixtures): images as [::16, ::16] + means; neg/text, none/text are not stored
(bit-identical to lora/references.safetensors none/text, asserted).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import OUT as FIXTURES_OUT, save_tensors, write_json  # 1 thread + deterministic torch

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
OUT = FIXTURES_OUT / "ti"
SEED, SCALE, STEP = 20250202, 3.0, 16
EMBS = [("tinyneg", 3), ("tinyglow", 1)]  # (name, vectors), created and loaded in this order
# (case, prompt, negative, embeddings loaded, encoder outputs stored)
CASES = [("neg", "a red fox in the snow", "tinyneg, blurry", True, ["text_negative"]),
         ("pos", "a tinyglow fox in the snow", "", True, ["text"]),
         ("none", "a red fox in the snow", "tinyneg, blurry", False, ["text_negative"])]
PIPE = "pipe = StableDiffusionPipeline.from_pretrained('models/tiny-sd15-diffusers', local_files_only=True, safety_checker=None)"
LOADS = [f"pipe.load_textual_inversion('ti/{n}.safetensors', token='{n}')" for n, _ in EMBS]
CALL = ('pipe({!r}, negative_prompt={!r}, num_inference_steps=4, guidance_scale=7.5, height=96, width=96, '
        'generator=torch.Generator("cpu").manual_seed(33), output_type="np").images[0]')
PROBES = ["tinynegx", "xtinyneg", "tinyneg,tinyglow", "(tinyneg:1.2)", "TinyNeg", "tinyneg_1"]


def load_pipe():
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(str(HERE / "models" / "tiny-sd15-diffusers"),
                                                   local_files_only=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def run_case(pipe, prompt, negative, added):
    out, info = {}, {}
    for key, text in (("text", prompt), ("text_negative", negative)):
        conv = pipe.maybe_convert_prompt(text, pipe.tokenizer)
        ids = pipe.tokenizer(conv, padding="max_length", max_length=77, truncation=True).input_ids
        out[key] = pipe.text_encoder(torch.tensor([ids])).last_hidden_state
        end = ids.index(49407) + 1
        assert len(ids) == 77 and set(ids[end:]) <= {49407}
        info[key] = {"text": text, "converted": conv, "ids": ids[:end],
                     "embedding_positions": {t: ids.index(i) for t, i in added.items() if i in ids}}
    pe, ne = pipe.encode_prompt(prompt, "cpu", 1, True, negative_prompt=negative)  # the pipeline's own encoding
    assert torch.equal(pe, out["text"]) and torch.equal(ne, out["text_negative"])
    img = pipe(prompt, negative_prompt=negative, num_inference_steps=4, guidance_scale=7.5, height=96, width=96,
               generator=torch.Generator("cpu").manual_seed(33), output_type="np").images[0]
    out["image"] = torch.from_numpy(img.copy())
    assert out["image"].shape == (96, 96, 3) and all(torch.isfinite(v).all() for v in out.values())
    return out, info


def main():
    import diffusers, safetensors, transformers
    pipe, plain = load_pipe(), load_pipe()  # plain: nothing loaded (case none)
    w = pipe.text_encoder.get_input_embeddings().weight.detach().clone()
    assert w.shape == (49408, 8), w.shape
    g, std = torch.Generator("cpu").manual_seed(SEED), float(w.std())
    embs = {n: torch.randn((k, 8), generator=g) * (SCALE * std) for n, k in EMBS}
    for n, e in embs.items():
        save_tensors(OUT / f"{n}.safetensors", {"emb_params": e})
        pipe.load_textual_inversion(str(OUT / f"{n}.safetensors"), token=n)
    names = ["tinyneg", "tinyneg_1", "tinyneg_2", "tinyglow"]
    added = {t: pipe.tokenizer.convert_tokens_to_ids(t) for t in names}
    assert list(added.values()) == list(range(49408, 49412)), added
    W = pipe.text_encoder.get_input_embeddings().weight.detach()
    assert torch.equal(W[:49408], w) and torch.equal(W[49408:], torch.cat([embs[n] for n, _ in EMBS]))

    refs, res, cases = {}, {}, []
    for name, prompt, negative, loaded, keep in CASES:
        res[name], info = run_case(pipe if loaded else plain, prompt, negative, added)
        refs.update({f"{name}/{k}": res[name][k] for k in keep})
        refs[f"{name}/image_every{STEP}th"] = res[name]["image"][::STEP, ::STEP]
        refs[f"{name}/image_mean"] = res[name]["image"].double().mean(dim=(0, 1)).float()
        py = [PIPE] + (LOADS if loaded else ["# no embedding loaded: 'tinyneg' is plain text"])
        cases.append({"name": name, "stored": keep, "python": py + ["image = " + CALL.format(prompt, negative)], **info})
    assert cases[0]["text_negative"]["converted"] == "tinyneg tinyneg_1 tinyneg_2, blurry"
    lora_text = load_file(str(HERE / "lora" / "references.safetensors"))["none/text"]
    assert torch.equal(res["neg"]["text"], lora_text) and torch.equal(res["none"]["text"], lora_text)
    for c in cases:
        a, b = res[c["name"]], res["none"]
        d = {k: float((a[k] - b[k]).abs().max()) for k in ("text", "text_negative", "image")}
        d[f"image_every{STEP}th"] = float((a["image"] - b["image"])[::STEP, ::STEP].abs().max())
        c["max_abs_diff_from_none"] = d
        print(f"ti: {c['name']}: {c['text']['ids']} / {c['text_negative']['ids']}: diff from none {d}")
    assert min(cases[0]["max_abs_diff_from_none"]["text_negative"], cases[1]["max_abs_diff_from_none"]["text"]) > 0.1
    assert min(c["max_abs_diff_from_none"][k] for c in cases[:2] for k in ("image", f"image_every{STEP}th")) > 0.05
    save_tensors(OUT / "references.safetensors", refs)
    write_json(OUT / "manifest.json", {
        "embeddings": {n: {"file": f"{n}.safetensors", "key": "emb_params", "shape": [k, 8], "dtype": "F32"} for n, k in EMBS},
        "embedding_python": f"g = torch.Generator('cpu').manual_seed({SEED}); std = text_encoder.get_input_embeddings().weight.std()"
                            f" = {std:.6g}; for (name, n) in {EMBS}: randn((n, 8), generator=g) * {SCALE} * std",
        "added_token_ids": added,
        "ids": "pipe.tokenizer(pipe.maybe_convert_prompt(text, pipe.tokenizer), padding='max_length', max_length=77, "
               "truncation=True).input_ids, listed up to the first 49407 (the rest is 49407); embedding_positions index them",
        "outputs_python": {
            "{case}/text, {case}/text_negative": "pipe.text_encoder(torch.tensor([ids])).last_hidden_state  # == pipe.encode_prompt (asserted)",
            f"{{case}}/image_every{STEP}th": f"image[::{STEP}, ::{STEP}]  # [6, 6, 3] of [96, 96, 3]",
            "{case}/image_mean": "image.astype(float64).mean(axis=(0, 1))",
            "neg/text, none/text (not stored)": "== lora/references.safetensors none/text (asserted)"},
        "cases": cases,
        "probes_maybe_convert_prompt": {s: pipe.maybe_convert_prompt(s, pipe.tokenizer) for s in PROBES},
        "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "safetensors": safetensors.__version__}})
    print(f"ti: wrote {OUT}")


if __name__ == "__main__":
    main()
