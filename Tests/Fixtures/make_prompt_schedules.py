#!/usr/bin/env python3
"""Reference prompt schedules for sdrepl's prompt-editing parser, computed by AUTOMATIC1111.

The oracle is A1111's own `get_learned_conditioning_prompt_schedules` (the modern one, with
`[from:to:when]`, `[to:when]`, `[from::when]` and `[a|b|c]`), loaded from a copy of
`modules/prompt_parser.py` kept OUTSIDE this repo. This script holds none of A1111's code: it
only imports that file and records what it returns for a fixed corpus of (prompt, steps) cases.

Setup (outside the repo; only lark is needed, torch is replaced by an empty stub module):

    python3 -m venv /tmp/oracle-venv && /tmp/oracle-venv/bin/pip install lark==1.3.1
    python3 -m venv /tmp/oracle-venv-112 && /tmp/oracle-venv-112/bin/pip install lark==1.1.2
    # save A1111's modules/prompt_parser.py as /tmp/a1111/prompt_parser.py

Run from the repo root (about a minute on 2 cores):

    /tmp/oracle-venv/bin/python Tests/Fixtures/make_prompt_schedules.py \
        --a1111 /tmp/a1111/prompt_parser.py \
        --check-python /tmp/oracle-venv-112/bin/python \
        --out Tests/Fixtures/prompt_schedule/a1111_schedules.json

Each case is called as `get_learned_conditioning_prompt_schedules([prompt], steps)[0]`
(hires_steps=None, use_old_scheduling=False). Output:

    {"source": "...",
     "cases": [{"prompt": str, "steps": int, "schedule": [[end_at_step, text], ...]}, ...],
     "errors": [{"prompt": str, "steps": int, "error": "OverflowError: ..."}, ...]}

`schedule` is what the interpreter running this script returns (lark 1.3.1 for the committed file).
The grammar is ambiguous: any `[ ] ( ) :` may also be read as a literal top-level character, and
lark picks one reading. Where lark's pick is not stable, the corpus is re-run under this
interpreter and each --check-python one (A1111 and Forge pin lark==1.1.2, whose pick depends on
the string hash seed) with PYTHONHASHSEED 0..N-1, and a case whose result differs in any run gets
`"unstable": true` and `"other_results": [{"run": "lark 1.1.2, PYTHONHASHSEED=0", "result": [...]}]`.
`errors` holds the cases where A1111 raises instead of returning a schedule.

The output is deterministic: fixed corpus order, random prompts from a fixed seed, duplicates of
(prompt, steps) dropped keeping the first, one case per line.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import types
from pathlib import Path

DEFAULT_SOURCE = ("AUTOMATIC1111/stable-diffusion-webui modules/prompt_parser.py "
                  "@ 28bd8e142d5f77b71ae8d7d7140b5da1b3a49906")
SEED = 20240611
RANDOM_COUNT = 400

# --- corpus -------------------------------------------------------------------------------------
# (prompt, [steps, ...]). Backslashes are written as raw strings; non-ASCII as \u escapes so that
# this file stays ASCII.

# The prompts of the function's own doctests (which use steps=10).
DOCTEST_PROMPTS = [
    "test",
    "a [b:3]",
    "a [b: 3]",
    "a [[[b]]:2]",
    "[(a:2):3]",
    "a [b : c : 1] d",
    "a[b:[c:d:2]:1]e",
    "a [unbalanced",
    "a [b:.5] c",
    "a [{b|d{:.5] c",
    "((a][:b:c [d:3]",
    "[a|(b:1.1)]",
    "[fe|]male",
    "[fe|||]male",
]

FANTASY = ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
           "[ in foreground::0.6][: in background:0.25] [shoddy:masterful:0.5]")

S = [20]
S13 = [20, 1, 3]

REALISTIC = [
    # the README-style examples
    (FANTASY, [20, 100, 10, 1, 3]),
    (FANTASY.replace("[: in background:0.25]", "[ in background:0.25]"), [100, 20]),
    ("a [dog:cat:10] in a park", [20, 10, 5, 1, 3]),
    ("a [dog:cat:0.5] in a park", [20, 25, 1, 3]),
    ("a [dog:cat:10.0] in a park", [20]),
    ("[fe|]male portrait", [20, 1, 2, 3]),
    ("a [red|blue|green] ball", [20, 1, 2, 3, 10]),
    ("a [red|blue|green] ball, [day:night:0.5]", [10, 3]),
    ("[a|b] [c|d|e]", [10]),
    ("[a|b][c|d]", [10]),
    ("[a|[b|c]]", [10]),
    ("[[a|b]|c]", [10]),
    ("[a|b|c|d]", [10, 3]),
    ("[a|(b:1.2)|c]", [10]),
    ("[(a|b)]", S),
    ("[(a|b):c:3]", S),
    # nesting
    ("[a:[b:c:0.7]:0.3]", [20, 10, 3]),
    ("[[a:b:0.3]:c:0.7]", [20, 10, 3]),
    ("[a:[b:[c:d:15]:10]:5]", [20]),
    ("[[a:b:5]:[c:d:15]:10]", [20]),
    ("[a:b:5] [c:d:5]", S),
    ("[a:b:3][c:d:7]", S),
    ("[a:b:7][c:d:3]", S),
    # weights / emphasis with schedules
    ("[(red:1.3):blue:0.5] car", S13),
    ("([cat:dog:5])", S13),
    ("(a [cat:dog:5] photo:1.2)", S),
    ("((a [cat:dog:5] photo))", S),
    ("[cat:(dog:1.5):0.5]", S),
    ("[(a):b:3]", S),
    ("[a:(b):3]", S),
    ("[(a:b):3]", S),
    ("[a (b:1.2) c:d:5]", S),
    ("(a:1.2) [b:c:5]", S),
    ("((masterpiece)), [(best quality:1.2)::10]", S),
    ("[(a:[b:c:5]):d:10]", S),
    ("([a|b]:1.2)", [4]),
    ("([a:b:5]:1.2)", S),
    ("([a:b:5]:[c:d:5])", S),
    ("(a:[b:c:5])", S),
    ("(a:(b:1.1))", S),
    ("(a:b:c)", S),
    ("(a:1.2:3)", S),
    ("[a]", S),
    ("[[a]]", S),
    ("[[a]] [b:c:5]", S),
    ("[a] [b:c:5]", S),
    ("[a:b]", S),
    ("[a:b] [c:d:5]", S),
    ("(a:b) [c:d:5]", S),
    # BREAK
    ("a [b:c:5] BREAK d", S),
    ("[a BREAK b:c:5]", S),
    ("[a|b BREAK c]", [4]),
    ("cat BREAK [dog:fox:0.5]", S),
    ("[BREAK::5]", S),
    ("a BREAK b", S),
    # escapes
    (r"\[not scheduled:0.5\]", S),
    (r"\(not emphasis\) [a:b:5]", S),
    (r"\(", S),
    (r"\)", S),
    (r"a \\[b:3]", S),
    (r"a \[b:3]", S),
    (r"a [b\:c:3]", S),
    (r"a [b:c\]:3]", S),
    (r"[a\|b]", S),
    (r"[a|b\]]", [4]),
    (r"a \| b", S),
    (r"a \| b [c:d:3]", S),
    (r"[a:b:\3]", S),
    (r"\a\b\c [d:e:3]", S),
    (r"[\[a\]:b:3]", S),
    # trailing backslash
    ("a [b:c:3] \\", S),
    ("a\\", S),
    ("\\", S),
    ("[a:b:3\\]", S),
    # colons in text
    ("style: anime, [a:b:0.5]", S13),
    ("a: b", S),
    ("a:b:c", S),
    ("time: 3", S),
    ("a [b]: c", S),
    ("ratio 16:9, [day:night:0.5]", S),
    ("a:b [c:d:3]", S),
    ("[a:b:c:3]", S),
    ("[a:b:c:d:3]", S),
    ("[a:b:c] [d:e:3]", S),
    # stray | outside brackets
    ("a | b [c:d:3]", S13),
    ("a | b", S),
    ("|", S),
    ("a|b", S),
    ("(a|b)", S),
    ("(a|b) [c:d:3]", S),
    ("[a]|[b]", S),
    ("[a|b] | c", [4]),
    # numbers
    ("[a:b:0]", S13),
    ("[a:b:1]", S13),
    ("[a:b:1.0]", S13),
    ("[a:b:1.]", S13),
    ("[a:b:.5]", S13),
    ("[a:b:0.5]", S13),
    ("[a:b:-1]", S13),
    ("[a:b:+2]", S13),
    ("[a:b:1e1]", S13),
    ("[a:b:1E1]", S),
    ("[a:b:1e-1]", S),
    ("[a:b:1.5e0]", S),
    ("[a:b:100]", S13),
    ("[a:b:100.0]", S),
    ("[a:b:19]", S),
    ("[a:b:20]", S),
    ("[a:b:21]", S),
    ("[a:b:2.5]", [20, 10, 3]),
    ("[a:b:1.5]", [20, 10]),
    ("[a:b:0.05]", S),
    ("[a:b:0.04]", S),
    ("[a:b:0.99]", S),
    ("[a:b:0.999]", S),
    ("[a:b:0.33]", [3, 20]),
    ("[a:b:0.34]", [3]),
    ("[a:b:-0.5]", S),
    ("[a:b:+.5]", S),
    ("[a:b:-.5]", S),
    ("[a:b:5.5]", S),
    ("[a:b:03]", S),
    ("[a:b:00.5]", S),
    ("[a:b:.]", S),
    ("[a:b:-]", S),
    ("[a:b:+]", S),
    ("[a:b:3x]", S),
    ("[a:b:x3]", S),
    ("[a:b:0x10]", S),
    ("[a:b:1_0]", S),
    ("[a:b:inf]", S),
    ("[a:b:nan]", S),
    ("[a:b:3:4]", S),
    ("[a:b: 3 ]", S13),
    ("[a:b:3 ]", S),
    ("[a:b:  3  ]", S),
    ("[a:b:\t3\t]", S),
    ("[a:b:\n3]", S),
    ("[a:b: 3\n]", S),
    ("[a:b:- 1]", S),
    ("[a :b: 3]", S13),
    ("[ a : b : 3 ]", S),
    ("[a: b :3]", S),
    ("[:b:3]", S13),
    ("[a::3]", S13),
    ("[::3]", S13),
    ("[ :b:3]", S),
    ("[a: :3]", S),
    ("[b:3]", S),
    ("[b:0.5]", S),
    ("[b:0]", S),
    ("[:3]", S),
    ("[ :3]", S),
    ("[::]", S),
    ("[:]", S),
    ("[:a:]", S),
    # alternation edge cases
    ("[a|]", S13),
    ("[|a]", S13),
    ("[a||b]", S13),
    ("[|]", [4]),
    ("[||]", [4]),
    ("[a|b:0.5]", S13),
    ("[[a|b]:c:5]", S13),
    ("[a|[b:c:5]]", S13),
    ("[a|b]", [1, 2, 3, 20]),
    ("[a |b]", [4]),
    ("[ a | b ]", [4]),
    ("[a|b|]", [4]),
    ("[a:b|c:3]", S),
    ("[a|b:c|d]", S),
    ("[(a:1.2)|b]", [4]),
    ("[a|(b]", S),
    ("[a|b)]", S),
    ("[a|b][:c:3]", [4]),
    # unbalanced / stray brackets
    ("[a:b:5", S13),
    ("a]", S13),
    ("((a][:b:c [d:3]", S13),
    ("a [b:c:5]]", S),
    ("[[a:b:5]", S),
    ("a ( [b:c:5]", S),
    ("a ) [b:c:5]", S),
    ("(a [b:c:5]", S),
    ("a [b:c:5))", S),
    ("a [b:c:5] (", S),
    ("a [b:c:5] )", S),
    ("a [b:c:5] :", S),
    ("a [b:c:5] [", S),
    ("a [b:c:5] ]", S),
    ("] [a:b:5]", S),
    (": [a:b:5]", S),
    ("]a[", S),
    ("][", S),
    ("[", S),
    ("]", S),
    ("(", S),
    (")", S),
    (":", S),
    ("", S),
    (" ", S),
    ("[]", S),
    ("()", S),
    ("(:)", S),
    ("[]a[b:c:5]", S),
    ("()a[b:c:5]", S),
    ("a [b (c:d:5]", S),
    ("a [b) c:d:5]", S),
    ("[a:b:5] ]]]", S),
    ("[a:b:5] ((( :::", S),
    ("((( [a:b:5]", S),
    ("a | ]", S),
    # non-ASCII
    ("caf\u00e9 [cr\u00e8me:br\u00fbl\u00e9e:0.5]", S13),
    ("\u65e5\u672c [\u732b|\u72ac]", [4]),
    ("\u65e5\u672c\u306e[\u5c71:\u6d77:0.5]", S),
    ("emoji \U0001F600 [\U0001F431:\U0001F436:3]", S13),
    ("[\u00e9::5]", S),
    ("[a:b:\uff15]", S),
    ("a\u3000[b:c:5]", S),
    ("a\u00a0[b:c:5]", S),
    ("[a:b:\u00a05]", S),
    # newlines and tabs
    ("line one\n[a:b:5]\nline three", S13),
    ("[a\n:b:5]", S),
    ("[a:\nb:5]", S),
    ("tab\t[a|b]\tend", [4]),
    ("[a:b:\t5]", S),
    ("\n", S),
    ("\t[a::5]\t", S),
    ("a\r\n[b:c:5]", S),
    # long prompts with several schedules
    ("masterpiece, best quality, (a [young:old:0.4] woman:1.1) standing in a [forest|desert], "
     "[sunrise:sunset:12], [[detailed::0.3]:intricate:0.8] background, (sharp focus:1.2), "
     "[ bokeh::0.6], 8k", [20, 50, 3, 1]),
    ("portrait of [a knight:a wizard:8] wearing [silver|golden] armor, (dramatic lighting:1.3), "
     "[cloudy sky:starry night:0.75], [: lens flare:15], highly detailed BREAK "
     "[oil painting:photograph:0.5], [sharp::5]", [25, 2]),
    ("[a:b:1] [c:d:2] [e:f:3] [g:h:4] [i:j:5] [k:l:6] [m:n:7] [o:p:8] [q:r:9] [s:t:10]", [10, 20]),
    ("[[[[a:b:1]:c:2]:d:3]:e:4] [f|g|h]", [6]),
    ("(((best quality))), [[worst quality]], (photo:1.2), [dog:cat:0.5], [red|green], "
     "\\(parenthesized\\) text, [a:b:1.], [c:d:1.0]", [20, 3]),

    # a schedule directly followed by stray []():  characters: lark's choice between the
    # structured and the all-literal reading (see "unstable" in the output)
    ("[a:b:3]]", [4]),
    ("[a:b:3]]]", [4]),
    ("[a:b:3]]]]", [4]),
    ("[a:b:3]]]]]", [4]),
    ("[a:b:3]] ]", [4]),
    ("[a:b:3]]x", [4]),
    ("[a:b:3]]]x", [4]),
    ("x[a:b:3]]", [4]),
    ("[a:b:3](", [4]),
    ("[a:b:3])", [4]),
    ("[a:b:3]:", [4]),
    ("[a:b:3]::", [4]),
    ("[a:b:3][", [4]),
    ("[a:b:3][[", [4]),
    ("[a:b:3][x", [4]),
    ("[a:b:3][[a]", [4]),
    ("[a:b:3]()", [4]),
    ("[a:b:3]()]", [4]),
    ("[a:b:3]([)", [4]),
    ("[b:3]]]", [4]),
    ("([a:b:3])", [4]),
    ("([a:b:3]))", [4]),
    ("([a:b:3])]", [4]),
    ("(([a:b:3])))", [4]),
    ("[[a:b:3]]", [4]),
    ("[[a:b:3]]]", [4]),
    ("[a|b]]", [4]),
    ("[a|b]]]", [4]),
    ("[a|b]:(", [4]),
    ("[[a|b]]", [4]),
    ("]][a:b:3]", [4]),
    ("::[a:b:3]", [4]),
    ("[c:d:1] [a:b:3]]]", [4]),
    ("[a:b:3]]] [c:d:1]", [4]),
    ("[a:b:3][c:d:2]]]", [4]),
    ("[a:b:3]]][c:d:2]", [4]),
    ("(a:1.2)[a:b:3]]]", [4]),
    # brackets that cannot close as written
    ("[a:[b:3]", [4]),
    ("[a:b:[c:3]]", [4]),
    ("[[a]:b:3]", [4]),
    ("[a:[b]:3]", [4]),
    ("[a [b:c:3]", [4]),
    ("[(a:b:3]", [4]),
    ("([a:b:3]", [4]),
    ("(a:[b:c:3]", [4]),
    ("([a:b:3]:1.2", [4]),
    ("[a:(b:3)]", [4]),
    ("[a:b:(3)]", [4]),
    ("[(a:b:3)]", [4]),
    ("((a:b:3))", [4]),
    ("((a:1.2):b:3)", [4]),
    ("[a:b:5]:[c:d:3]", [10]),
    ("[a:b:3]|", [4]),
    ("|[a:b:3]", [4]),
    ("a [b c:d e:3] f", [5]),
    (r"[a\:b:3]", [5]),
    ("[a:b: ]", [5]),
    ("[a:b:3 3]", [5]),
    ("[a:b:3.5.5]", [5]),
    ("[ ]", [5]),
    ("a\\\nb [c:d:3]", [4]),
    ("a\\\tb [c:d:3]", [4]),
    # alternation uses the global step, also when nested
    ("[a|b|c]", [7]),
    ("[a|[b|c]]", [8]),
    ("[a|[b|c|d]]", [12]),
    ("[[a:b:2]|c]", [6]),
    ("[a:b:3] BREAK [c|d]", [2]),
    # number forms and float truncation
    ("[a:b:0.29]", [100]),
    ("[a:b:0.57]", [100]),
    ("[a:b:0.58]", [100]),
    ("[a:b:0.1]", [30]),
    ("[a:b:0.7]", [10]),
    ("[a:b:0.5e1]", S),
    ("[a:b:5e-1]", S),
    ("[a:b:.5e1]", S),
    ("[a:b:1.e1]", S),
    ("[a:b:1e+1]", S),
    ("[a:b:1e]", S),
    ("[a:b:+-1]", S),
    ("[a:b:-0]", [4]),
    ("[a:b:-0.0]", [4]),
    ("[a:b:99999999999999999999]", [4]),
    ("[a:b:1e400]", [4]),
    ("[a:b:-1e400]", [4]),
    ("[a::0.5]", [1]),
    ("[a:b:1]", [2]),
    ("[a:b:1.5]", [1]),
    ("[a:b:3][b:c:3]", [5]),
    # which characters count as the whitespace around the number (Python's \s)
    ("[a:b:\x1c3]", S),
    ("[a:b:\x853]", S),
    ("[a:b:\u200b3]", S),
    ("[a:b:\u20283]", S),
    ("[a:b:\ufeff3]", S),
    ("[a:b:\x0b3\x0c]", S),
]


def random_corpus(count, seed):
    pieces = ["a", "b c", " ", "[", "]", "(", ")", ":", "|", "0.5", "3", ".5", "\\", "\\[",
              "x:1.2)", "BREAK", "\u00e9", "[a:b:3]", "1.", "-1", "\\]", "\n"]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = rng.randint(1, 12)
        prompt = "".join(rng.choice(pieces) for _ in range(n))
        out.append((prompt, [rng.choice([1, 4, 10, 20])]))
    return out


def corpus():
    cases = [(p, [10]) for p in DOCTEST_PROMPTS] + REALISTIC + random_corpus(RANDOM_COUNT, SEED)
    seen = set()
    for prompt, steps_list in cases:
        for steps in steps_list:
            key = (prompt, steps)
            if key not in seen:
                seen.add(key)
                yield prompt, steps


# --- oracle -------------------------------------------------------------------------------------

def load_a1111(path):
    # prompt_parser.py does `import torch` at import time but the schedule function never uses it.
    sys.modules.setdefault("torch", types.ModuleType("torch"))
    spec = importlib.util.spec_from_file_location("a1111_prompt_parser", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_oracle(a1111_path):
    """[(prompt, steps, result)] where result is a schedule list or the text of the exception."""
    pp = load_a1111(a1111_path)
    out = []
    for prompt, steps in corpus():
        try:
            schedule = pp.get_learned_conditioning_prompt_schedules([prompt], steps)[0]
            result = [[int(end), str(txt)] for end, txt in schedule]
        except Exception as e:  # A1111 itself raises here (e.g. OverflowError for 1e400)
            result = f"{type(e).__name__}: {e}"
        out.append((prompt, steps, result))
    return out


def other_runs(a1111_path, pythons, seeds):
    """The same corpus under other interpreters (other lark versions) and hash seeds."""
    runs = []
    for py in pythons:
        for seed in seeds:
            env = dict(os.environ, PYTHONHASHSEED=str(seed))
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "raw.json"
                subprocess.run([py, __file__, "--worker", "--a1111", str(a1111_path), "--out", str(raw)],
                               env=env, check=True)
                data = json.loads(raw.read_text(encoding="utf-8"))
            runs.append((f"lark {data['lark']}, PYTHONHASHSEED={seed}", data["results"]))
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a1111", required=True, type=Path, help="path to A1111's modules/prompt_parser.py")
    ap.add_argument("--out", required=True, type=Path, help="JSON file to write")
    ap.add_argument("--source-label", default=DEFAULT_SOURCE,
                    help="which upstream file/commit the --a1111 copy is (recorded in the JSON)")
    ap.add_argument("--check-python", action="append", default=[], metavar="PY",
                    help="another interpreter (e.g. a venv with A1111's pinned lark==1.1.2) to re-run "
                         "the corpus with; cases whose result differs get \"unstable\": true")
    ap.add_argument("--hash-seeds", type=int, default=4,
                    help="PYTHONHASHSEED values 0..N-1 used for this and each --check-python interpreter")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    import lark
    results = run_oracle(args.a1111)
    if args.worker:
        args.out.write_text(json.dumps({"lark": lark.__version__, "results": [r for _, _, r in results]}),
                            encoding="utf-8")
        return

    runs = other_runs(args.a1111, [sys.executable] + args.check_python, range(args.hash_seeds))
    text = args.a1111.read_bytes().replace(b"\r\n", b"\n")
    digest = hashlib.sha256(text).hexdigest()

    cases, errors = [], []
    for k, (prompt, steps, result) in enumerate(results):
        others = []
        for label, res in runs:
            if res[k] != result and res[k] not in [o["result"] for o in others]:
                others.append({"run": label, "result": res[k]})
        if isinstance(result, str):
            errors.append({"prompt": prompt, "steps": steps, "error": result})
            continue
        case = {"prompt": prompt, "steps": steps, "schedule": result}
        if others:
            case["unstable"] = True
            case["other_results"] = others
        cases.append(case)

    checked = ", ".join(sorted({label.split(",")[0] for label, _ in runs}))
    doc = {
        "source": (f"{args.source_label} (sha256 of the file with LF line endings: {digest}); "
                   f"get_learned_conditioning_prompt_schedules([prompt], steps)[0] with "
                   f"hires_steps=None, use_old_scheduling=False; lark {lark.__version__}; "
                   f"random cases from seed {SEED}; generated by Tests/Fixtures/make_prompt_schedules.py. "
                   f"\"unstable\": the result differs under {checked} with PYTHONHASHSEED "
                   f"0..{args.hash_seeds - 1} (other_results lists them). \"errors\": cases where "
                   f"A1111 raises instead of returning a schedule."),
        "cases": cases,
        "errors": errors,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        # One case per line: compact, and readable in a diff.
        dump = lambda x: json.dumps(x, ensure_ascii=False, separators=(",", ":"))
        f.write('{"source":' + dump(doc["source"]) + ',\n"cases":[\n')
        f.write(",\n".join(dump(c) for c in doc["cases"]))
        f.write('\n],\n"errors":[\n')
        f.write(",\n".join(dump(c) for c in doc["errors"]))
        f.write("\n]}\n")
    unstable = sum(1 for c in cases if c.get("unstable"))
    print(f"{len(cases)} cases ({unstable} unstable), {len(errors)} errors -> {args.out} "
          f"({args.out.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
