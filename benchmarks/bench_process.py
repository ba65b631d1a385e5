"""Whole-process cost of `matrixeval run` vs a bare forward loop of the same model, each its own subprocess.

Run: .venv/bin/python benchmarks/bench_process.py [--docs 160] [--repeats 5] [--importtime]
The model is a GPT-2 of 6 layers, 512 wide, randomly initialised from a config (seeded) with the packaged
MiniLM tokenizer, saved to disk; the documents are the first `--docs` paragraphs of the built-in
`pydoc_topics` task, written to a JSONL file both sides read. Both sides are whole Python processes:
interpreter start, imports, model load, tokenisation, forward passes (and for matrixeval: hooks, loss,
metrics, the durable store, aggregation, the results file). Runs alternate (bare, matrixeval, bare, ...) and
the best of `--repeats` is kept, so a machine shared with other work disturbs both alike. Nothing is asserted.
`--importtime` also prints the modules a `matrixeval run` imports, slowest first (python -X importtime).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The bare side: what a user would write to run the model over the same documents, nothing more.
BARE = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model_dir, data, batch_size, max_length = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
texts = [json.loads(line)["text"] for line in open(data, encoding="utf-8")]
ids = tok(texts, truncation=True, max_length=max_length)["input_ids"]
order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
with torch.inference_mode():
    for start in range(0, len(order), batch_size):
        rows = [ids[i] for i in order[start:start + batch_size]]
        width = max(len(r) for r in rows)
        x = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        model(input_ids=x, attention_mask=mask, use_cache=False).logits
"""


def build_model(root: Path) -> Path:
    """GPT-2, 6 layers, 512 wide, random init (seed 0), with the packaged MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from matrixeval.models import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    config = GPT2Config(vocab_size=tok.vocab_size, n_positions=1024, n_embd=512, n_layer=6, n_head=8,
                        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(root)
    tok.save_pretrained(root)
    return root


def write_docs(path: Path, n: int) -> Path:
    from matrixeval.data.builtin import pydoc_topic_records

    with open(path, "w", encoding="utf-8") as f:
        for r in pydoc_topic_records()[:n]:
            f.write(json.dumps({"text": r["text"]}) + "\n")
    return path


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system, all its threads) of one whole process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{err[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def import_profile(cmd: list[str], env: dict[str, str], top: int) -> None:
    """The slowest top-level packages a run imports (cumulative µs as python -X importtime reports them)."""
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True)
    totals: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if not cumulative.isdigit():
            continue
        if name == name.lstrip() and "." not in name.strip():  # a top-level package, imported by someone
            totals[name.strip()] = totals.get(name.strip(), 0) + int(cumulative)
    print(f"\nslowest top-level imports of one `matrixeval run` (ms, cumulative):")
    for name, us in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {name:<24} {us / 1e3:8.1f}")
    wanted = ("datasets", "matplotlib", "scipy", "pandas", "pyarrow", "peft", "accelerate", "sklearn")
    seen = [w for w in wanted if w in totals]
    print(f"  of {', '.join(wanted)}: imported {', '.join(seen) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=160)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--metrics", default="matrix_entropy,nuclear_norm,loss")
    parser.add_argument("--layers", default="last")
    parser.add_argument("--importtime", action="store_true", help="also profile the imports of one run")
    parser.add_argument("--before", default=None, metavar="SRC",
                        help="a second matrixeval source tree (the folder holding matrixeval/) run alongside, "
                             "e.g. an earlier commit's src from `git archive`, for before/after ratios")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_process_"))
    model = build_model(tmp / "gpt2-6x512")
    data = write_docs(tmp / "docs.jsonl", args.docs)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               TQDM_DISABLE="1")
    here = str(Path(__file__).resolve().parents[1] / "src")
    py = sys.executable
    runs = iter(range(10**6))

    def ours(src: str):
        def cmd() -> tuple[list[str], dict[str, str]]:  # a fresh output folder: no run resumes another's store
            return ([py, "-m", "matrixeval", "run", "--model_args", f"pretrained={model}", "--tasks", str(data),
                     "--metrics", args.metrics, "--layers", args.layers, "--batch_size", str(args.batch_size),
                     "--max_length", str(args.max_length), "--output_path", str(tmp / f"out{next(runs)}")],
                    dict(env, PYTHONPATH=src))
        return cmd

    variants = {"bare forward": lambda: ([py, "-c", BARE, str(model), str(data), str(args.batch_size),
                                          str(args.max_length)], env),
                "matrixeval run": ours(here)}
    if args.before:
        variants["matrixeval run (before)"] = ours(str(Path(args.before).resolve()))
    print(f"GPT-2 6 layers x 512 (random init), {args.docs} pydoc_topics docs, batch_size={args.batch_size}, "
          f"max_length={args.max_length}, metrics={args.metrics}, layers={args.layers}; torch threads: default\n"
          f"whole processes, alternating, best of {args.repeats} after one warm-up run of each")
    for make in variants.values():
        timed(*make())
    best = {name: (float("inf"), float("inf")) for name in variants}
    for i in range(args.repeats):
        line = []
        for name, make in variants.items():
            wall, cpu = timed(*make())
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
            line.append(f"{name} {wall:6.2f} s")
        print(f"  round {i + 1}: " + "  ".join(line))
    bare_wall, bare_cpu = best["bare forward"]
    print(f"{'':<26} {'best wall s':>11} {'ratio':>7}   {'best CPU s':>10} {'ratio':>7}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<26} {wall:>11.2f} {wall / bare_wall:>6.3f}x   {cpu:>10.2f} {cpu / bare_cpu:>6.3f}x")
    if args.importtime:
        import_profile(*variants["matrixeval run"](), top=15)


if __name__ == "__main__":
    main()
