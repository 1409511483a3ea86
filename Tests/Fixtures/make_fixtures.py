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
        json.dump(vocab, f, ensure_ascii=False)
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
    write_json(OUT / "tokenizer" / "corpus.json", doc)
    print(f"tokenizer: {len(entries)} prompts, {n_differ} differ from OpenAI's ftfy tokenizer")


# ---------------------------------------------------------------------------------------------
# 2. Torch RNG
# ---------------------------------------------------------------------------------------------

RNG_SEEDS = [0, 1, 42, 1234, 2**31 - 1, 2**32, 2**63, 2**64 - 1, 3407, 987654321, 123456789012345]
RNG_LARGE = [100, 1000, 16383, 16384, 4 * 64 * 96]
RNG_LARGE_SEEDS = [0, 42, 2**32, 2**64 - 1]
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
    for s in RNG_LARGE_SEEDS:
        for n in RNG_LARGE:
            large[f"seed={s}/n={n}"] = torch.randn(n, generator=torch.Generator("cpu").manual_seed(s))
        # the same stream as a latent shape: must equal the flat draw of the same size
        lat = torch.randn((1, 4, 64, 96), generator=torch.Generator("cpu").manual_seed(s))
        assert torch.equal(lat.flatten(), large[f"seed={s}/n={4 * 64 * 96}"])
    lines["randn_large.safetensors"] = 'torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed))  # key "seed={seed}/n={n}"; equals torch.randn((1,4,64,96), ...).flatten() for n=24576'
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
        "seeds": RNG_SEEDS, "large_sizes": RNG_LARGE, "large_seeds": RNG_LARGE_SEEDS,
        "sequence_sizes": RNG_SEQUENCE, "sequence_seeds": [0, 42, 2**64 - 1],
        "python": lines, "dtype": "float32", "torch_version": torch.__version__})
    print(f"rng: {len(small)} small, {len(large)} large, {len(seq)} sequence draws")


# ---------------------------------------------------------------------------------------------
# 3. Schedulers
# ---------------------------------------------------------------------------------------------

SAMPLERS = ["pndm", "ddim", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras", "lcm"]
SCHEDULE_STEPS = [1, 2, 3, 4, 5, 10, 20, 25, 50]


def make_scheduler(name):
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           EulerDiscreteScheduler, LCMScheduler, PNDMScheduler)
    cfg = dict(SD15_SCHEDULER_CONFIG)
    table = {
        "pndm": (PNDMScheduler, {}), "ddim": (DDIMScheduler, {}), "euler": (EulerDiscreteScheduler, {}),
        "euler-a": (EulerAncestralDiscreteScheduler, {}), "dpmpp-2m": (DPMSolverMultistepScheduler, {}),
        "dpmpp-2m-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}), "lcm": (LCMScheduler, {}),
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
        m = {"class": type(s0).__name__, "config": dict(s0.config), "schedules": {}}
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
                entry["sigmas"] = sig.tolist()
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
                runs[f"{key}/step={i}/x_in"] = x_in
                runs[f"{key}/step={i}/eps"] = eps
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
# main
# ---------------------------------------------------------------------------------------------

def main(argv):
    groups = {"tokenizer": make_tokenizer, "rng": make_rng, "schedulers": make_schedulers}
    groups.update({k: v for k, v in globals().items() if False})
    wanted = argv or list(groups)
    for g in wanted:
        groups[g]()


if __name__ == "__main__":
    main(sys.argv[1:])
