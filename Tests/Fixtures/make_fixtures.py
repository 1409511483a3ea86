#!/usr/bin/env python3
"""Generate sdrepl's reference fixtures with diffusers / transformers / torch.

Run from anywhere, in a venv made from requirements.txt (outside the repo):

    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_fixtures.py            # everything
    HF_HUB_OFFLINE=1 /work/venv/bin/python Tests/Fixtures/make_fixtures.py tokenizer rng

Groups: tokenizer, rng, schedulers, models, reference, pipeline, perturb.
Nothing is fetched from the Hugging Face hub: every config is written here.
All outputs are deterministic (fixed seeds, single thread); see check_determinism.sh.
"""
import gzip
from fnmatch import fnmatchcase as fnmatch
import hashlib
import html
import inspect
import json
import os
import sys
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")

import numpy as np
import torch
from safetensors.torch import save_file

torch.set_num_threads(1)  # reproducible reductions, and the machine is shared
torch.use_deterministic_algorithms(True)

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("FIXTURES_OUT", HERE))
# FIXTURES_TRACE=1 adds each pipeline run's intermediates (initial latents, latents after every step,
# prompt embeddings) to its file: useful when debugging, left out of the committed files (budget).
TRACE = os.environ.get("FIXTURES_TRACE") == "1"

# SD1.5's scheduler/scheduler_config.json (runwayml/stable-diffusion-v1-5), verbatim values.
SD15_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def write_json(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=False)
        f.write("\n")


def save_tensors(path: Path, tensors: dict, metadata: dict | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=metadata)


# ---------------------------------------------------------------------------------------------
# 1. Tokenizer
# ---------------------------------------------------------------------------------------------

def bpe_gz_path() -> Path:
    # open-clip-torch is installed with --no-deps only for this file; importing open_clip would
    # need torchvision, so locate the package directory without importing it.
    import importlib.util
    spec = importlib.util.find_spec("open_clip")
    return Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode():
    """OpenAI CLIP's byte -> printable unicode char table (clip/simple_tokenizer.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_vocab_and_merges():
    """vocab and merges exactly as CLIP's SimpleTokenizer builds them from the BPE file."""
    lines = gzip.open(bpe_gz_path()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    for m in merges:
        vocab.append("".join(m))
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    return {tok: i for i, tok in enumerate(vocab)}, merges


def write_tokenizer_folder(folder: Path):
    """A diffusers-style tokenizer/ folder like SD1.5's (vocab.json, merges.txt, configs)."""
    vocab, merges = clip_vocab_and_merges()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))  # compact: ~100 kB less
    with open(folder / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    write_json(folder / "special_tokens_map.json", special)
    write_json(folder / "tokenizer_config.json", {
        "add_prefix_space": False, "do_lower_case": True, "errors": "replace",
        "model_max_length": 77, "tokenizer_class": "CLIPTokenizer", **special})


@lru_cache(None)
def hf_tokenizer():
    from transformers import CLIPTokenizer
    folder = OUT / "models" / "tiny-sd15-diffusers" / "tokenizer"
    write_tokenizer_folder(folder)
    tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    return tok


def openai_clip_reference_ids(text: str, vocab, merges):
    """OpenAI CLIP's original SimpleTokenizer (ftfy + double html.unescape + whitespace clean),
    re-implemented here only to flag prompts where it disagrees with transformers'."""
    import ftfy
    import regex as re
    b2u = bytes_to_unicode()
    ranks = dict(zip(merges, range(len(merges))))
    pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", re.IGNORECASE)

    def bpe(token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            first, second = best
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return word

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    text = re.sub(r"\s+", " ", text).strip().lower()
    ids = []
    for t in re.findall(pat, text):
        t = "".join(b2u[b] for b in t.encode("utf-8"))
        ids.extend(vocab[p] for p in bpe(t))
    return [49406] + ids + [49407]


def tokenizer_corpus():
    base = [
        "", " ", "a", "A", "a photo of a cat", "a photo of a dog", "A Photo Of A Cat",
        "A PHOTO OF AN ASTRONAUT RIDING A HORSE ON MARS",
        "an astronaut riding a horse on mars", "a painting of a fox sitting in a field at sunrise",
        "hello world", "Hello, World!", "hello,world", "hello , world", "hello;world:again",
        "it's", "It's a dog's life", "don't stop", "they're here", "we've got it", "I'm fine",
        "you'll see", "she'd go", "IT'S LOUD", "it’s curly", "rock 'n' roll", "'s 't 're 've 'm 'll 'd",
        "'quoted'", "\"double quoted\"", "o'clock", "rock'n'roll",
        "1", "12", "123", "2024", "3.14159", "1,000,000 stars", "4k", "8k uhd", "1girl", "2boys",
        "50mm f/1.8", "ISO 100", "x1.5", "v1.5", "sd1.5", "#1", "100%", "$5.99", "-273.15",
        "café", "naïve façade", "Ångström", "Über", "résumé", "crème brûlée", "piñata", "ßtraße",
        "Ελληνικά", "Россия", "Łódź", "Ørsted", "Dvořák", "É", "e\u0301 (decomposed e-acute)",
        "東京タワー", "一只猫", "猫", "안녕하세요", "こんにちは世界", "中文 and English mixed", "ｆｕｌｌｗｉｄｔｈ",
        "🐱", "a cat 🐱 on a mat", "🔥🔥🔥", "👩‍🚀 astronaut", "✨sparkles✨", "🇯🇵 flag", "❤️", "☕ coffee",
        "a  b", "a   b    c", "a\tb", "a\nb", "a\r\nb", "  leading", "trailing  ", "\t\ttabs\t\t",
        "line one\nline two\n\nline four", "\u00a0non-breaking\u00a0space", "zero\u200bwidth",
        "&amp;", "&lt;tag&gt;", "Tom &amp; Jerry", "&quot;quoted&quot;", "&#39;apos&#39;", "&nbsp;",
        "&amp;amp;", "<b>bold</b>", "<|startoftext|>", "<|endoftext|>", "a <|endoftext|> b",
        "(masterpiece)", "((best quality))", "(((ultra detailed)))", "[blurry]", "[[ugly]]",
        "(red hair:1.3)", "(blue eyes:0.8), [freckles]", "\\(escaped\\) parentheses", "a \\[literal\\] bracket",
        "portrait, (masterpiece:1.2), best quality, [low quality:0.5]", "cat BREAK dog", "cat, BREAK, dog",
        "(a (nested:1.1) prompt:1.2)", "a:b:c", "key: value", "a\\b", "back\\\\slash", "((((((deep))))))",
        "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry",
        "masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile, (detailed eyes:1.2), outdoors, cherry blossoms",
        "a photograph of an astronaut riding a horse, trending on artstation, by greg rutkowski, octane render, 8k",
        "beautiful landscape, mountains, lake, reflection, golden hour, volumetric lighting, highly detailed, sharp focus",
        "cyberpunk city at night, neon lights, rain, reflections, blade runner style, cinematic",
        "an oil painting of a lighthouse in a storm, dramatic, waves crashing",
        "studio ghibli style, a girl walking through a field of flowers",
        "ugly, deformed, disfigured, poor details, bad anatomy",
        "photo of a red apple on a wooden table, soft light, shallow depth of field",
        "isometric pixel art of a tiny cozy cabin in the woods",
        "hyperrealistic portrait of an old fisherman, wrinkles, weathered skin, 85mm",
        "!!!", "???", "...", "—", "–", "a—b", "...and then", "wow!!!", "what?!", "@user", "#hashtag", "email@example.com",
        "https://example.com/path?q=1&x=2", "C:\\path\\to\\file", "snake_case_word", "kebab-case-word", "CamelCaseWord",
        "Mixed123Alpha456", "abc123def", "a1b2c3", "x²", "½ cup", "™ ® ©", "°C", "µm", "∞", "→ arrow", "½",
        "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "the the the the", "Thé", "ﬁne ligature", "Ⅻ roman",
    ]
    words = ["cat", "dog", "house", "tree", "river", "mountain", "city", "robot", "dragon", "castle",
             "forest", "ocean", "portrait", "sunset", "flower", "knight", "wizard", "spaceship"]
    adjectives = ["red", "giant", "tiny", "ancient", "futuristic", "glowing", "dark", "golden", "misty"]
    rng = np.random.RandomState(1234)
    generated = []
    for i in range(40):
        n = 3 + i % 9
        parts = []
        for _ in range(n):
            w = words[rng.randint(len(words))]
            if rng.rand() < 0.5:
                w = adjectives[rng.randint(len(adjectives))] + " " + w
            if rng.rand() < 0.2:
                w = f"({w}:{1 + rng.randint(1, 5) / 10:.1f})"
            parts.append(w)
        generated.append(", ".join(parts))
    long_prompts = [
        ", ".join(words * 3),  # ~108 tokens
        " ".join(["masterpiece"] * 80),
        "a " * 100,
        "long prompt " + ", ".join(f"detail {i}" for i in range(60)),
        "🐱" * 50,
        "東京" * 60,
        ", ".join(adjectives * 10),
        "(best quality:1.2), " * 30,
    ]
    prompts = base + generated + long_prompts
    # dedupe, keep order
    seen, out = set(), []
    for p in prompts:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def make_tokenizer():
    import transformers
    vocab, merges = clip_vocab_and_merges()
    assert len(vocab) == 49408, len(vocab)
    assert len(merges) == 48894
    tok = hf_tokenizer()
    assert tok.get_vocab() == vocab, "transformers' vocab differs from the one built from the BPE file"
    # Known ids of the real SD1.5 / openai/clip-vit-large-patch14 tokenizer (transformers docs example).
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]
    prompts = tokenizer_corpus()
    assert len(prompts) >= 200, len(prompts)
    entries = []
    n_differ = 0
    for p in prompts:
        ids = tok(p).input_ids  # no truncation: what diffusers calls untruncated_ids
        # exactly the call in StableDiffusionPipeline.encode_prompt
        padded = tok(p, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
        ref = openai_clip_reference_ids(p, vocab, merges)
        e = {"prompt": p, "ids": ids, "ids_77": padded, "n_tokens": len(ids) - 2,
             "truncated": len(ids) > 77}
        if ref != ids:
            e["openai_clip_ftfy_ids"] = ref
            n_differ += 1
        entries.append(e)
    assert all(len(e["ids_77"]) == 77 for e in entries)
    doc = {
        "description": "CLIP token ids from transformers' CLIPTokenizer for SD1.5 (see README.md)",
        "tokenizer_class": f"{type(tok).__module__}.{type(tok).__name__}",
        "tokenizer_backend": "tokenizers (Rust) BPE; normalizer NFC -> \\s+ to ' ' -> lowercase; no ftfy, no html.unescape",
        "ftfy_used": False,
        "transformers_version": transformers.__version__,
        "model_max_length": tok.model_max_length,
        "bos_id": tok.bos_token_id, "eos_id": tok.eos_token_id, "pad_id": tok.pad_token_id,
        "padded_call": 'tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids',
        "unpadded_call": "tok(prompt).input_ids",
        "vocab_sha256": hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest(),
        "bpe_file_sha256": hashlib.sha256(open(bpe_gz_path(), "rb").read()).hexdigest(),
        "n_prompts": len(entries),
        "n_differ_from_openai_ftfy": n_differ,
        "entries": entries,
    }
    # one entry per line keeps the file small and diffable
    entries_json = ",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in doc.pop("entries"))
    head = json.dumps(doc, ensure_ascii=False, indent=1)[:-2]
    (OUT / "tokenizer").mkdir(parents=True, exist_ok=True)
    with open(OUT / "tokenizer" / "corpus.json", "w", encoding="utf-8") as f:
        f.write(head + ',\n "entries": [\n' + entries_json + "\n ]\n}\n")
    json.load(open(OUT / "tokenizer" / "corpus.json", encoding="utf-8"))
    print(f"tokenizer: {len(entries)} prompts, {n_differ} differ from OpenAI's ftfy tokenizer")


# ---------------------------------------------------------------------------------------------
# 2. Torch RNG
# ---------------------------------------------------------------------------------------------

RNG_SEEDS = [0, 1, 42, 1234, 2**31 - 1, 2**32, 2**63, 2**64 - 1, 3407, 987654321, 123456789012345]
# Large draws, per seed: the block path with a partial last block (100, 1000) and a 512x768 latent
# (24576, a whole number of blocks). Seed 2**64-1 checks the seed reduction at a large size.
RNG_LARGE = {0: [100, 1000, 4 * 64 * 96], 2**64 - 1: [1000]}
RNG_SEQUENCE = [5, 16, 3, 4 * 8 * 8, 17, 1, 15, 33, 4 * 16 * 16]


def make_rng():
    d = OUT / "rng"
    small, large, rand, seq = {}, {}, {}, {}
    lines = {}
    for s in RNG_SEEDS:
        for n in range(1, 41):
            small[f"seed={s}/n={n}"] = torch.randn(n, generator=torch.Generator("cpu").manual_seed(s))
            rand[f"seed={s}/n={n}"] = torch.rand(n, generator=torch.Generator("cpu").manual_seed(s))
    lines["randn_small.safetensors"] = 'torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed))  # key "seed={seed}/n={n}", n = 1...40'
    lines["rand_small.safetensors"] = 'torch.rand(n, generator=torch.Generator("cpu").manual_seed(seed))  # key "seed={seed}/n={n}", n = 1...40'
    for s, sizes in RNG_LARGE.items():
        for n in sizes:
            large[f"seed={s}/n={n}"] = torch.randn(n, generator=torch.Generator("cpu").manual_seed(s))
    # a 512x768 latent; the same stream as the flat draw of the same size
    lat = torch.randn((1, 4, 64, 96), generator=torch.Generator("cpu").manual_seed(0))
    assert torch.equal(lat.flatten(), large[f"seed=0/n={4 * 64 * 96}"])
    lines["randn_large.safetensors"] = 'torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed))  # key "seed={seed}/n={n}" for the sizes of "large" per seed; n=24576 equals torch.randn((1,4,64,96), ...).flatten()'
    for s in [0, 42, 2**64 - 1]:
        g = torch.Generator("cpu").manual_seed(s)
        for i, n in enumerate(RNG_SEQUENCE):
            seq[f"seed={s}/draw={i}/n={n}"] = torch.randn(n, generator=g)
        g = torch.Generator("cpu").manual_seed(s)
        for i, n in enumerate(RNG_SEQUENCE):
            seq[f"seed={s}/mixed/draw={i}/n={n}"] = (torch.randn if i % 2 == 0 else torch.rand)(n, generator=g)
    lines["randn_sequence.safetensors"] = ('g = torch.Generator("cpu").manual_seed(seed); [torch.randn(n, generator=g) for n in sizes]  '
                                           '# key "seed={seed}/draw={i}/n={n}"; "seed/mixed/draw" alternates randn (even i) and rand (odd i) on one generator')
    save_tensors(d / "randn_small.safetensors", small)
    save_tensors(d / "rand_small.safetensors", rand)
    save_tensors(d / "randn_large.safetensors", large)
    save_tensors(d / "randn_sequence.safetensors", seq)
    write_json(d / "manifest.json", {
        "seeds": RNG_SEEDS, "large": [{"seed": s, "sizes": n} for s, n in RNG_LARGE.items()],
        "sequence_sizes": RNG_SEQUENCE, "sequence_seeds": [0, 42, 2**64 - 1],
        "python": lines, "dtype": "float32", "torch_version": torch.__version__})
    print(f"rng: {len(small)} small, {len(large)} large, {len(seq)} sequence draws")


# ---------------------------------------------------------------------------------------------
# 3. Schedulers
# ---------------------------------------------------------------------------------------------

SAMPLERS = ["pndm", "ddim", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras", "lcm", "tcd"]
SCHEDULE_STEPS = [1, 2, 3, 4, 5, 10, 20, 25, 50]


def make_scheduler(name):
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           EulerDiscreteScheduler, LCMScheduler, PNDMScheduler, TCDScheduler)
    cfg = dict(SD15_SCHEDULER_CONFIG)
    table = {
        "pndm": (PNDMScheduler, {}), "ddim": (DDIMScheduler, {}), "euler": (EulerDiscreteScheduler, {}),
        "euler-a": (EulerAncestralDiscreteScheduler, {}), "dpmpp-2m": (DPMSolverMultistepScheduler, {}),
        "dpmpp-2m-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}), "lcm": (LCMScheduler, {}),
        "tcd": (TCDScheduler, {}),
    }
    cls, extra = table[name]
    return cls.from_config(cfg, **extra)


def extra_step_kwargs(sched, generator, eta=0.0):
    """Exactly StableDiffusionPipeline.prepare_extra_step_kwargs."""
    params = set(inspect.signature(sched.step).parameters.keys())
    kw = {}
    if "eta" in params:
        kw["eta"] = eta
    if "generator" in params:
        kw["generator"] = generator
    return kw


def synthetic_eps(x_in, t):
    """The synthetic 'UNet' of the sampler fixtures (documented in README.md)."""
    return 0.8 * x_in + 0.05 * (t.float() / 1000)


def make_schedulers():
    d = OUT / "schedulers"
    tensors, meta = {}, {"config": SD15_SCHEDULER_CONFIG, "samplers": {}}
    ref = make_scheduler("pndm")
    tensors["common/betas"] = ref.betas.float()
    tensors["common/alphas_cumprod"] = ref.alphas_cumprod.float()
    for name in SAMPLERS:
        s0 = make_scheduler(name)
        cfg = dict(s0.config)
        if "_use_default_values" in cfg:  # built from a set: sort for reproducible output
            cfg["_use_default_values"] = sorted(cfg["_use_default_values"])
        m = {"class": type(s0).__name__, "config": cfg, "schedules": {}}
        for n in SCHEDULE_STEPS:
            s = make_scheduler(name)
            s.set_timesteps(n)
            ts = s.timesteps
            entry = {"timesteps": ts.tolist(), "timesteps_dtype": str(ts.dtype),
                     "init_noise_sigma": float(s.init_noise_sigma)}
            tensors[f"{name}/steps={n}/timesteps"] = ts.to(torch.float32)
            if getattr(s, "sigmas", None) is not None:
                sig = s.sigmas
                tensors[f"{name}/steps={n}/sigmas"] = sig.to(torch.float32)
                entry["sigmas_dtype"] = str(sig.dtype)
            m["schedules"][str(n)] = entry
        meta["samplers"][name] = m
    write_json(d / "schedules.json", meta)
    save_tensors(d / "schedules.safetensors", tensors)

    # Short sampling runs with the synthetic model.
    runs, run_meta = {}, {}
    for name in SAMPLERS:
        for n in (5, 10):
            seed = 1000 + n
            s = make_scheduler(name)
            s.set_timesteps(n)
            g = torch.Generator("cpu").manual_seed(seed)
            latents = torch.randn((1, 4, 8, 8), generator=g, dtype=torch.float32) * s.init_noise_sigma
            key = f"{name}/steps={n}"
            runs[f"{key}/init"] = latents
            kw = extra_step_kwargs(s, g)
            for i, t in enumerate(s.timesteps):
                x_in = s.scale_model_input(latents, t)
                eps = synthetic_eps(x_in, t)
                out = s.step(eps, t, latents, **kw)
                latents = out.prev_sample
                runs[f"{key}/step={i}/latents"] = latents
                if getattr(out, "denoised", None) is not None:
                    runs[f"{key}/step={i}/denoised"] = out.denoised
            run_meta[key] = {"seed": seed, "steps": n, "timesteps": s.timesteps.tolist(),
                             "init_noise_sigma": float(s.init_noise_sigma),
                             "step_kwargs": sorted(kw.keys())}
    save_tensors(d / "synthetic_runs.safetensors", runs)
    write_json(d / "synthetic_runs.json", {
        "model": "eps = 0.8 * sched.scale_model_input(latents, t) + 0.05 * (t.float() / 1000)",
        "python": [
            "s = Cls.from_config(SD15_SCHEDULER_CONFIG); s.set_timesteps(steps)",
            'g = torch.Generator("cpu").manual_seed(seed)',
            "latents = torch.randn((1, 4, 8, 8), generator=g) * s.init_noise_sigma",
            "kw = {'eta': 0.0} if step accepts eta; kw['generator'] = g if step accepts generator",
            "for t in s.timesteps: x_in = s.scale_model_input(latents, t); eps = 0.8 * x_in + 0.05 * (t.float() / 1000); latents = s.step(eps, t, latents, **kw).prev_sample",
        ],
        "runs": run_meta})
    print(f"schedulers: {len(tensors)} schedule tensors, {len(runs)} run tensors")


# ---------------------------------------------------------------------------------------------
# 4. Tiny models with SD1.5's topology
# ---------------------------------------------------------------------------------------------

# Widths are the smallest that keep 32-group GroupNorm and 8 attention heads, within the 25 MB budget
# (fp32 folder + fp16 variant + fp16 single file ~ 8 bytes per parameter; the CLIP token embedding
# alone is 49408 x width).
CLIP_WIDTH, CLIP_HEADS, CLIP_LAYERS = 8, 2, 3
UNET_CHANNELS = (32, 32, 32, 64)
VAE_CHANNELS = (32, 32, 32, 32)
MODEL_DIR = "models/tiny-sd15-diffusers"
SINGLE_FILE = "models/tiny-sd15.safetensors"

# Re-initialisation (see README "Weights"): fan-in scaled normal weights everywhere, so that no block is
# near identity or near zero; the two output convolutions are scaled so that eps and pixels are O(1).
INIT = {"weight_gain": 1.0, "bias_std": 0.1, "norm_std": 0.2, "token_std": 1.0, "position_std": 0.5,
        "unet_conv_out_gain": 1.0, "vae_conv_out_gain": 0.5, "vae_post_quant_conv_gain": 0.03}


# The deepest level (64 channels, 2x2 at 128 px) sits behind many residual additions and skip
# concatenations; larger resnet output and time projections there keep its blocks visible in the image.
UNET_DEEP_GAINS = {"down_blocks.3.resnets.*.conv2": 6.0, "mid_block.resnets.*.conv2": 6.0,
                   "up_blocks.0.resnets.*.conv2": 4.0, "*time_emb_proj": 2.0}


def unet_config():
    return dict(sample_size=8, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
                freq_shift=0, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, block_out_channels=UNET_CHANNELS,
                layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1, act_fn="silu",
                norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=CLIP_WIDTH, attention_head_dim=8)


def vae_config():
    return dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=VAE_CHANNELS, layers_per_block=2,
                act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=64, scaling_factor=0.18215)


def clip_config():
    from transformers import CLIPTextConfig
    # bos/eos/pad ids 0/2/1 are the (legacy, wrong) values in SD1.5's text_encoder/config.json; they only
    # affect pooler_output, which SD does not use.
    return CLIPTextConfig(vocab_size=49408, hidden_size=CLIP_WIDTH, intermediate_size=4 * CLIP_WIDTH,
                          num_hidden_layers=CLIP_LAYERS, num_attention_heads=CLIP_HEADS, max_position_embeddings=77,
                          hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=CLIP_WIDTH,
                          bos_token_id=0, eos_token_id=2, pad_token_id=1, attention_dropout=0.0, dropout=0.0)


@torch.no_grad()
def reinit(model, seed, gains=None):
    g = torch.Generator("cpu").manual_seed(seed)
    nn = torch.nn

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=g) * std)

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            gain = INIT["weight_gain"] * next((v for k, v in (gains or {}).items() if fnmatch(name, k)), 1.0)
            normal(m.weight, gain / fan_in**0.5)
            if m.bias is not None:
                normal(m.bias, INIT["bias_std"])
        elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=g) * INIT["norm_std"])
                normal(m.bias, INIT["norm_std"])
        elif isinstance(m, nn.Embedding):
            normal(m.weight, INIT["position_std"] if "position" in name else INIT["token_std"])
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name


def build_models():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet_config()).eval()
    vae = AutoencoderKL(**vae_config()).eval()
    te = CLIPTextModel(clip_config()).eval()
    reinit(unet, 1, {"conv_out": INIT["unet_conv_out_gain"], **UNET_DEEP_GAINS})
    # The sampled latents of a random UNet are far larger than a trained one's (std ~10-25, not ~1), so
    # post_quant_conv is scaled down to keep the decoder's residual stream O(1) and its blocks visible.
    reinit(vae, 2, {"decoder.conv_out": INIT["vae_conv_out_gain"], "post_quant_conv": INIT["vae_post_quant_conv_gain"]})
    reinit(te, 3)
    return unet, vae, te


def fp16_rounded(model):
    import copy
    return copy.deepcopy(model).half().float()


def make_pipeline(unet, vae, te, scheduler_name="pndm"):
    from diffusers import StableDiffusionPipeline
    tok = hf_tokenizer()
    return StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                                   scheduler=make_scheduler(scheduler_name), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def te_state_dict_prefixed(te):
    sd = te.state_dict()
    return {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in sd.items()}


def diffusers_to_ldm(unet, vae, te):
    """Our own diffusers -> original LDM (v1-5-pruned-emaonly) key mapping, generic in the block counts."""
    out = {}
    cfg = unet.config
    L = cfg.layers_per_block
    res_map = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
               ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]

    def unet_key(k):
        parts = k.split(".")
        if k.startswith("time_embedding.linear_1."):
            return "time_embed.0." + parts[-1]
        if k.startswith("time_embedding.linear_2."):
            return "time_embed.2." + parts[-1]
        if k.startswith("conv_in."):
            return "input_blocks.0.0." + parts[-1]
        if k.startswith("conv_norm_out."):
            return "out.0." + parts[-1]
        if k.startswith("conv_out."):
            return "out.2." + parts[-1]

        def resnet(rest):
            for a, b in res_map:
                if rest.startswith(a + "."):
                    return b + rest[len(a):]
            raise KeyError(k)

        if parts[0] == "down_blocks":
            b = int(parts[1])
            if parts[2] == "resnets":
                return f"input_blocks.{1 + b * (L + 1) + int(parts[3])}.0." + resnet(".".join(parts[4:]))
            if parts[2] == "attentions":
                return f"input_blocks.{1 + b * (L + 1) + int(parts[3])}.1." + ".".join(parts[4:])
            if parts[2] == "downsamplers":
                return f"input_blocks.{(b + 1) * (L + 1)}.0.op." + parts[-1]
        if parts[0] == "mid_block":
            if parts[1] == "resnets":
                return f"middle_block.{2 * int(parts[2])}." + resnet(".".join(parts[3:]))
            if parts[1] == "attentions":
                return "middle_block.1." + ".".join(parts[3:])
        if parts[0] == "up_blocks":
            b = int(parts[1])
            has_attn = "CrossAttn" in cfg.up_block_types[b]
            if parts[2] == "resnets":
                return f"output_blocks.{b * (L + 1) + int(parts[3])}.0." + resnet(".".join(parts[4:]))
            if parts[2] == "attentions":
                return f"output_blocks.{b * (L + 1) + int(parts[3])}.1." + ".".join(parts[4:])
            if parts[2] == "upsamplers":
                return f"output_blocks.{b * (L + 1) + L}.{2 if has_attn else 1}.conv." + parts[-1]
        raise KeyError(k)

    for k, v in unet.state_dict().items():
        out["model.diffusion_model." + unet_key(k)] = v

    n_up = len(vae.config.up_block_types)

    def vae_key(k):
        parts = k.split(".")
        side = parts[0]
        rest = parts[1:]
        if rest[0] == "conv_norm_out":
            return f"{side}.norm_out.{rest[-1]}"
        if rest[0] in ("conv_in", "conv_out"):
            return k
        if rest[0] == "mid_block":
            if rest[1] == "resnets":
                return f"{side}.mid.block_{int(rest[2]) + 1}." + ".".join(rest[3:]).replace("conv_shortcut", "nin_shortcut")
            if rest[1] == "attentions":
                name = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}[rest[3]]
                return f"{side}.mid.attn_1.{name}.{rest[-1]}"
        if rest[0] == "down_blocks":
            i = int(rest[1])
            if rest[2] == "resnets":
                return f"encoder.down.{i}.block.{rest[3]}." + ".".join(rest[4:]).replace("conv_shortcut", "nin_shortcut")
            if rest[2] == "downsamplers":
                return f"encoder.down.{i}.downsample.conv.{rest[-1]}"
        if rest[0] == "up_blocks":
            i = n_up - 1 - int(rest[1])
            if rest[2] == "resnets":
                return f"decoder.up.{i}.block.{rest[3]}." + ".".join(rest[4:]).replace("conv_shortcut", "nin_shortcut")
            if rest[2] == "upsamplers":
                return f"decoder.up.{i}.upsample.conv.{rest[-1]}"
        raise KeyError(k)

    for k, v in vae.state_dict().items():
        if k.startswith(("quant_conv.", "post_quant_conv.")):
            nk = k
        else:
            nk = vae_key(k)
            if ".mid.attn_1." in nk and nk.endswith(".weight") and v.ndim == 2:
                v = v[:, :, None, None]  # LDM's attention uses 1x1 convolutions
        out["first_stage_model." + nk] = v

    for k, v in te_state_dict_prefixed(te).items():
        out["cond_stage_model.transformer." + k] = v
    assert len(set(out)) == len(out)
    return out


def ldm_extra_tensors(ref_sched):
    """Non-weight tensors that v1-5-pruned-emaonly.safetensors also holds (LatentDiffusion buffers,
    the CLIP position_ids buffer, the EMA counters); a loader must skip them."""
    betas = ref_sched.betas.double()
    alphas = 1 - betas
    ac = torch.cumprod(alphas, 0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    post_var = betas * (1 - ac_prev) / (1 - ac)
    t = {
        "betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": ac.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - ac).log(), "sqrt_recip_alphas_cumprod": (1 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / ac - 1).sqrt(), "posterior_variance": post_var,
        "posterior_log_variance_clipped": torch.log(torch.clamp(post_var, min=1e-20)),
        "posterior_mean_coef1": betas * ac_prev.sqrt() / (1 - ac),
        "posterior_mean_coef2": (1 - ac_prev) * alphas.sqrt() / (1 - ac),
    }
    t = {k: v.float() for k, v in t.items()}
    t["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    t["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    t["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    return t


MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
    "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


@lru_cache(None)
def models():
    return build_models()


def make_models():
    import copy
    unet, vae, te = models()
    root = OUT / MODEL_DIR
    write_tokenizer_folder(root / "tokenizer")
    write_json(root / "model_index.json", MODEL_INDEX)
    write_json(root / "scheduler" / "scheduler_config.json", SD15_SCHEDULER_CONFIG)
    for m, sub in ((unet, "unet"), (vae, "vae")):
        m.save_pretrained(root / sub, safe_serialization=True)
        copy.deepcopy(m).half().save_pretrained(root / sub, safe_serialization=True, variant="fp16")
    te.config.save_pretrained(root / "text_encoder")
    # model.safetensors: keys with the "text_model." prefix, as in real SD1.5 folders (and single files).
    save_tensors(root / "text_encoder" / "model.safetensors", te_state_dict_prefixed(te), {"format": "pt"})
    # model.fp16.safetensors: as transformers 5.x's save_pretrained writes it (no "text_model." prefix),
    # so that both spellings a loader meets are covered.
    tmp = OUT / "models" / ".tmp_te16"
    copy.deepcopy(te).half().save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp / "model.safetensors", root / "text_encoder" / "model.fp16.safetensors")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    # normalise configs: drop fields that name this machine's paths
    for sub in ("unet", "vae", "text_encoder"):
        p = root / sub / "config.json"
        cfg = json.load(open(p))
        cfg.pop("_name_or_path", None)
        write_json(p, cfg)

    # Format (b): single file, original LDM layout, fp16 weights (budget); extra buffers fp32/int.
    ldm = {k: v.half() for k, v in diffusers_to_ldm(unet, vae, te).items()}
    ldm.update(ldm_extra_tensors(make_scheduler("pndm")))
    save_tensors(OUT / SINGLE_FILE, ldm, {"format": "pt"})
    verify_models()


@torch.no_grad()
def verify_models():
    """Both formats load through diffusers and give the same outputs as the in-memory models."""
    from diffusers import StableDiffusionPipeline
    root = OUT / MODEL_DIR
    unet, vae, te = models()
    a32 = StableDiffusionPipeline.from_pretrained(str(root), local_files_only=True, safety_checker=None)
    a16 = StableDiffusionPipeline.from_pretrained(str(root), local_files_only=True, safety_checker=None,
                                                  variant="fp16", torch_dtype=torch.float16)
    b = StableDiffusionPipeline.from_single_file(str(OUT / SINGLE_FILE), config=str(root), local_files_only=True,
                                                 safety_checker=None, torch_dtype=torch.float16)
    for name, ref in (("unet", unet), ("vae", vae), ("text_encoder", te)):
        sd_ref = ref.state_dict()
        for tag, pipe, half in (("a32", a32, False), ("a16", a16, True), ("b16", b, True)):
            sd = getattr(pipe, name).state_dict()
            assert set(sd) == set(sd_ref), (tag, name, set(sd) ^ set(sd_ref))
            for k, v in sd_ref.items():
                want = v.half() if half else v
                assert torch.equal(sd[k].to(want.dtype), want), (tag, name, k)
    assert type(a32.tokenizer).__name__ == "CLIPTokenizer"
    assert a32.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert type(a32.scheduler).__name__ == "PNDMScheduler"
    # outputs: single file (fp16 weights, computed in fp32) == fp16 variant == fp16-rounded models
    ids = torch.tensor([hf_tokenizer()("a photo of a cat", padding="max_length", max_length=77).input_ids])
    lat = torch.randn((1, 4, 16, 16), generator=torch.Generator("cpu").manual_seed(5))
    outs = []
    for tag, pipe in (("a16", a16), ("b16", b)):
        for name in ("unet", "vae", "text_encoder"):
            if getattr(pipe, name).training:
                print(f"note: {tag} {name} was loaded in training mode")
            getattr(pipe, name).eval()
        pte, pun, pva = pipe.text_encoder.float(), pipe.unet.float(), pipe.vae.float()
        ctx = pte(ids).last_hidden_state
        eps = pun(lat, 500, encoder_hidden_states=ctx).sample
        img = pva.decode(lat / 0.18215).sample
        outs.append((ctx, eps, img))
    for x, y in zip(*outs):
        assert torch.equal(x, y)
    print("models: format (a) fp32, (a) fp16 variant and (b) single file load through diffusers and agree")


# ---------------------------------------------------------------------------------------------
# 5. Intermediate references
# ---------------------------------------------------------------------------------------------

REF_PROMPTS = ["", "a photo of a cat", "an astronaut riding a horse on mars, highly detailed",
               "Hello, World! It's 4k & HDR", "東京タワー 🐱"]


@torch.no_grad()
def component_references(unet, vae, te, tag):
    tok = hf_tokenizer()
    t = {}
    for i, p in enumerate(REF_PROMPTS):
        ids = torch.tensor([tok(p, padding="max_length", max_length=77, truncation=True).input_ids])
        o = te(ids, output_hidden_states=True)
        t[f"text/{i}/ids"] = ids.to(torch.int64)
        t[f"text/{i}/last_hidden_state"] = o.last_hidden_state
        t[f"text/{i}/penultimate_raw"] = o.hidden_states[-2]
        t[f"text/{i}/penultimate_final_ln"] = getattr(te, "text_model", te).final_layer_norm(o.hidden_states[-2])
    # A1111 clip skip 1 is last_hidden_state; diffusers' clip_skip=1 is penultimate_final_ln.
    g = torch.Generator("cpu").manual_seed(7)
    unet_cases = [("square", (2, 4, 16, 16), 999), ("square_t1", (1, 4, 16, 16), 1),
                  ("square_float_t", (1, 4, 16, 16), 749.25), ("nonsquare", (1, 4, 16, 24), 500),
                  ("odd", (1, 4, 14, 10), 300)]
    for name, shape, ts in unet_cases:
        lat = torch.randn(shape, generator=g)
        ctx = torch.randn((shape[0], 77, CLIP_WIDTH), generator=g)
        tt = torch.tensor(ts, dtype=torch.float32 if isinstance(ts, float) else torch.int64)
        t[f"unet/{name}/sample"] = lat
        t[f"unet/{name}/timestep"] = tt.to(torch.float32).reshape(1)
        t[f"unet/{name}/encoder_hidden_states"] = ctx
        t[f"unet/{name}/out"] = unet(lat, tt, encoder_hidden_states=ctx).sample
    for name, shape in (("square", (1, 4, 8, 8)), ("nonsquare", (1, 4, 6, 10))):
        lat = torch.randn(shape, generator=g) * 3
        t[f"vae/{name}/latents"] = lat
        dec = vae.decode(lat / vae.config.scaling_factor).sample
        t[f"vae/{name}/decoded"] = dec
    img = torch.rand((1, 3, 32, 48), generator=g) * 2 - 1
    dist = vae.encode(img).latent_dist
    t["vae_encoder/image"] = img
    t["vae_encoder/mean"] = dist.mean
    t["vae_encoder/std"] = dist.std
    save_tensors(OUT / "reference" / f"components_{tag}.safetensors", t)
    return t


def make_reference():
    unet, vae, te = models()
    component_references(unet, vae, te, "fp32")
    component_references(fp16_rounded(unet), fp16_rounded(vae), fp16_rounded(te), "fp16weights")
    write_json(OUT / "reference" / "components.json", {
        "prompts": REF_PROMPTS,
        "python": {
            "text/{i}/last_hidden_state": "te(ids, output_hidden_states=True).last_hidden_state",
            "text/{i}/penultimate_raw": "te(ids, output_hidden_states=True).hidden_states[-2]",
            "text/{i}/penultimate_final_ln": "te.final_layer_norm(hidden_states[-2])  # A1111 clip skip 2 (= diffusers clip_skip=1)",
            "unet/{case}/out": "unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample",
            "vae/{case}/decoded": "vae.decode(latents / 0.18215).sample",
            "vae_encoder/mean|std": "vae.encode(image).latent_dist.mean / .std",
        },
        "unet_timestep_dtypes": {"square": "int64 999", "square_t1": "int64 1", "square_float_t": "float32 749.25",
                                 "nonsquare": "int64 500", "odd": "int64 300 (14x10 latent: 14->7->4->2, upsample_size path)"},
        "files": {"components_fp32.safetensors": "fp32 weights (format a, model.safetensors etc.)",
                  "components_fp16weights.safetensors": "fp16 weights (format a .fp16. variant = format b single file), upcast to fp32 and computed in fp32"},
    })
    print("reference: components written")


# ---------------------------------------------------------------------------------------------
# 6. Pipeline outputs
# ---------------------------------------------------------------------------------------------

PIPELINE_CASES = [
    dict(name="pndm_cfg", sampler="pndm", prompt="a photo of a cat", negative_prompt="blurry, low quality",
         seed=42, steps=10, guidance=7.5, height=128, width=128),
    dict(name="ddim_nonsquare", sampler="ddim", prompt="an astronaut riding a horse on mars",
         negative_prompt="", seed=1, steps=8, guidance=7.5, height=96, width=160),
    dict(name="euler_cfg_96", sampler="euler", prompt="a lighthouse in a storm, oil painting",
         negative_prompt="ugly", seed=0, steps=10, guidance=5.0, height=96, width=96),
    dict(name="euler-a_g1_nonsquare", sampler="euler-a", prompt="cyberpunk city at night, neon lights",
         negative_prompt=None, seed=2**31 - 1, steps=10, guidance=1.0, height=160, width=96),
    dict(name="dpmpp-2m_cfg", sampler="dpmpp-2m", prompt="a red apple on a wooden table",
         negative_prompt="", seed=7, steps=12, guidance=7.5, height=128, width=96),
    dict(name="dpmpp-2m-karras_cfg", sampler="dpmpp-2m-karras", prompt="portrait of an old fisherman, 85mm",
         negative_prompt="cartoon", seed=2**32 + 5, steps=12, guidance=6.0, height=96, width=128),
    dict(name="lcm_g1", sampler="lcm", prompt="a cozy cabin in the woods", negative_prompt=None,
         seed=9, steps=4, guidance=1.0, height=96, width=96),
    # TCD's stochasticity, eta (the paper's gamma), at 0.3 as its authors recommend.
    dict(name="tcd_g1_eta", sampler="tcd", prompt="a cozy cabin in the woods", negative_prompt=None,
         seed=9, steps=4, guidance=1.0, height=96, width=96, eta=0.3),
]


@torch.no_grad()
def run_case(case, unet, vae, te, record=True):
    pipe = make_pipeline(unet, vae, te, case["sampler"])
    pipe.set_progress_bar_config(disable=True)
    steps_latents = []

    def on_step(p, i, t, kw):
        steps_latents.append(kw["latents"].clone())
        return kw

    g = torch.Generator("cpu").manual_seed(case["seed"])
    out = pipe(case["prompt"], negative_prompt=case["negative_prompt"], num_inference_steps=case["steps"],
               guidance_scale=case["guidance"], height=case["height"], width=case["width"], generator=g,
               output_type="np", callback_on_step_end=on_step if record else None, eta=case.get("eta", 0.0))
    img = torch.from_numpy(out.images[0].copy())
    if not record:
        return img
    t = {"image": img}
    t["timesteps"] = pipe.scheduler.timesteps.to(torch.float32)
    if not TRACE:
        return t
    # FIXTURES_TRACE=1: also the intermediates, to find where a port diverges (not committed: budget).
    # what prepare_latents drew: the first draw of a fresh generator with this seed
    shape = (1, 4, case["height"] // 8, case["width"] // 8)
    t["initial_latents"] = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(case["seed"])) * pipe.scheduler.init_noise_sigma
    for i, l in enumerate(steps_latents):
        t[f"latents_after_step/{i}"] = l
    cfg = case["guidance"] > 1
    pe, ne = pipe.encode_prompt(case["prompt"], "cpu", 1, cfg, case["negative_prompt"])
    t["prompt_embeds"] = pe
    if ne is not None:
        t["negative_prompt_embeds"] = ne
    return t


def make_pipeline_outputs():
    import diffusers
    unet, vae, te = models()
    u16, v16, t16 = fp16_rounded(unet), fp16_rounded(vae), fp16_rounded(te)
    manifest = []
    for case in PIPELINE_CASES:
        ws = (u16, v16, t16) if case.get("weights") == "fp16" else (unet, vae, te)
        t = run_case(case, *ws)
        save_tensors(OUT / "pipeline" / f"{case['name']}.safetensors", t)
        entry = dict(case)
        entry.setdefault("weights", "fp32")
        entry["file"] = f"{case['name']}.safetensors"
        entry["scheduler_class"] = type(make_scheduler(case["sampler"])).__name__
        karras = ", use_karras_sigmas=True" if case["sampler"] == "dpmpp-2m-karras" else ""
        entry["unet_evaluations"] = len(t["timesteps"]) * (2 if case["guidance"] > 1 else 1)
        entry["python"] = (f'pipe = StableDiffusionPipeline(..., scheduler={entry["scheduler_class"]}.from_config(SD15_SCHEDULER_CONFIG{karras})); '
                           f'pipe({case["prompt"]!r}, negative_prompt={case["negative_prompt"]!r}, num_inference_steps={case["steps"]}, '
                           f'guidance_scale={case["guidance"]}, height={case["height"]}, width={case["width"]}, '
                           f'generator=torch.Generator("cpu").manual_seed({case["seed"]})'
                           + (f', eta={case["eta"]}' if "eta" in case else "") + ', output_type="np").images[0]')
        manifest.append(entry)
        print(f"pipeline: {case['name']} mean {t['image'].mean():.3f}")
    write_json(OUT / "pipeline" / "manifest.json", {"diffusers_version": diffusers.__version__, "cases": manifest})


# ---------------------------------------------------------------------------------------------
# 7. Perturbation check: every block matters
# ---------------------------------------------------------------------------------------------

PERTURB_SCALES = [0.1, 1.0]  # 10% noise (a subtle bug) and 100% (a wrong weight, transpose, ...)
PERTURB_CASE = dict(name="perturb", sampler="euler", prompt="a photo of a cat", negative_prompt="blurry",
                    seed=3, steps=8, guidance=7.5, height=128, width=128)


def perturb_blocks(unet, vae, te):
    tp = "text_model." if hasattr(te, "text_model") else ""  # transformers 5 flattened CLIPTextModel
    blocks = [("text_encoder", te, f"{tp}embeddings.token_embedding"),
              ("text_encoder", te, f"{tp}embeddings.position_embedding")]
    blocks += [("text_encoder", te, f"{tp}encoder.layers.{i}") for i in range(CLIP_LAYERS)]
    blocks += [("text_encoder", te, f"{tp}encoder.layers.0.self_attn"),
               ("text_encoder", te, f"{tp}encoder.layers.0.mlp"),
               ("text_encoder", te, f"{tp}final_layer_norm")]
    un = ["conv_in", "time_embedding"]
    for b, bt in enumerate(unet.config.down_block_types):
        un += [f"down_blocks.{b}.resnets.{j}" for j in range(2)]
        if "CrossAttn" in bt:
            un += [f"down_blocks.{b}.attentions.{j}" for j in range(2)]
        if b < 3:
            un.append(f"down_blocks.{b}.downsamplers")
    un += ["mid_block.resnets.0", "mid_block.attentions.0", "mid_block.resnets.1"]
    for b, bt in enumerate(unet.config.up_block_types):
        un += [f"up_blocks.{b}.resnets.{j}" for j in range(3)]
        if "CrossAttn" in bt:
            un += [f"up_blocks.{b}.attentions.{j}" for j in range(3)]
        if b < 3:
            un.append(f"up_blocks.{b}.upsamplers")
    tb = "down_blocks.1.attentions.0"
    un += [f"{tb}.norm", f"{tb}.proj_in", f"{tb}.transformer_blocks.0.attn1", f"{tb}.transformer_blocks.0.attn2",
           f"{tb}.transformer_blocks.0.ff", f"{tb}.transformer_blocks.0.norm1", f"{tb}.transformer_blocks.0.norm2",
           f"{tb}.transformer_blocks.0.norm3", f"{tb}.proj_out", "conv_norm_out", "conv_out"]
    blocks += [("unet", unet, n) for n in un]
    va = ["post_quant_conv", "decoder.conv_in", "decoder.mid_block.resnets.0", "decoder.mid_block.attentions.0",
          "decoder.mid_block.resnets.1"]
    for b in range(4):
        va += [f"decoder.up_blocks.{b}.resnets.{j}" for j in range(3)]
        if b < 3:
            va.append(f"decoder.up_blocks.{b}.upsamplers")
    va += ["decoder.conv_norm_out", "decoder.conv_out"]
    blocks += [("vae", vae, n) for n in va]
    return blocks


@torch.no_grad()
def make_perturbation():
    unet, vae, te = models()
    base = run_case(PERTURB_CASE, unet, vae, te, record=False)
    # component-level probes: the output of the perturbed component alone on fixed inputs
    g = torch.Generator("cpu").manual_seed(11)
    ids = torch.tensor([hf_tokenizer()("a photo of a cat", padding="max_length", max_length=77).input_ids])
    lat = torch.randn((1, 4, 16, 16), generator=g)
    ctx = torch.randn((1, 77, CLIP_WIDTH), generator=g)
    zlat = torch.randn((1, 4, 8, 8), generator=g) * 3
    probes = {"text_encoder": lambda: te(ids).last_hidden_state,
              "unet": lambda: unet(lat, 500, encoder_hidden_states=ctx).sample,
              "vae": lambda: vae.decode(zlat / 0.18215).sample}
    probe_base = {k: f() for k, f in probes.items()}
    rows = []
    for comp, model, name, scale in [(*b, sc) for sc in PERTURB_SCALES for b in perturb_blocks(unet, vae, te)]:
        mod = model.get_submodule(name)
        saved = {k: v.clone() for k, v in mod.state_dict().items()}
        g = torch.Generator("cpu").manual_seed(99)
        for p in mod.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.std().clamp_min(1e-3) if p.numel() > 1 else scale)
        img = run_case(PERTURB_CASE, unet, vae, te, record=False)
        pb = probe_base[comp]
        rel = float((probes[comp]() - pb).abs().max() / pb.abs().max())
        mod.load_state_dict(saved)
        d = (img - base).abs()
        rows.append({"component": comp, "block": name, "scale": scale, "max_abs_pixel_diff": float(d.max()),
                     "mean_abs_pixel_diff": float(d.mean()), "component_output_rel_change": rel})
        print(f"perturb {scale} {comp:13s} {name:55s} max {d.max():.4f} mean {d.mean():.5f} component {rel:.2e}")
    # numerical stability: the same case in float64 (non-ancestral sampler, so the noise is identical)
    import copy
    u64, v64, t64 = (copy.deepcopy(m).double() for m in (unet, vae, te))
    pipe = make_pipeline(u64, v64, t64, PERTURB_CASE["sampler"])
    pipe.set_progress_bar_config(disable=True)
    lat = torch.randn((1, 4, 16, 16), generator=torch.Generator("cpu").manual_seed(PERTURB_CASE["seed"]))
    img64 = pipe(PERTURB_CASE["prompt"], negative_prompt=PERTURB_CASE["negative_prompt"],
                 num_inference_steps=PERTURB_CASE["steps"], guidance_scale=PERTURB_CASE["guidance"],
                 height=128, width=128, latents=lat.double(),
                 output_type="np").images[0]
    fp64_diff = float(np.abs(img64 - base.numpy().astype(np.float64)).max())
    write_json(OUT / "reference" / "perturbation.json", {
        "case": PERTURB_CASE,
        "perturbation": "every parameter p of the block += scale * p.std() * randn (generator seed 99), scale in PERTURB_SCALES",
        "fp32_vs_fp64_max_abs_pixel_diff": fp64_diff,
        "tolerance": 1 / 255, "rows": rows})
    print(f"perturb: fp32 vs fp64 max pixel diff {fp64_diff:.2e}; min block effect {min(r['max_abs_pixel_diff'] for r in rows if r['scale'] == 1.0):.4f}")


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def main(argv):
    groups = {"tokenizer": make_tokenizer, "rng": make_rng, "schedulers": make_schedulers}
    groups.update({"models": make_models, "reference": make_reference, "pipeline": make_pipeline_outputs,
                   "perturb": make_perturbation})
    wanted = argv or list(groups)
    for g in wanted:
        groups[g]()


if __name__ == "__main__":
    main(sys.argv[1:])
