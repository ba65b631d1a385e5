"""lm-evaluation-harness's rolling perplexity vs `matrixeval run --rolling` on the same documents and model.

Run: .venv/bin/python benchmarks/bench_rolling.py [--docs 8] [--max_length 256] [--batch_size 8] [--rounds 2]

Documents: the first `--docs` articles of the shared wikitext-2 test.txt (../shared/data), cut and detokenised by
matrixeval's `wikitext` recipe (lm-eval's detokeniser); lm-eval reads the very same strings. Model: a randomly
initialised GPT-2 (hidden 256, 4 layers) with the packaged MiniLM's WordPiece tokenizer (30,522 tokens, [CLS] as
BOS and [SEP] as EOS), saved to a temporary folder and loaded by each side with from_pretrained, in float32.

Both timers include loading the model and everything up to the task's numbers:
  lm-eval:    HFLM(pretrained=..., max_length, batch_size) + loglikelihood_rolling + word/byte perplexity and
              bits per byte from lm_eval.api.metrics;
  matrixeval: matrixeval.evaluate(..., rolling) on the file, giving the same three columns *and* matrix entropy,
              effective rank and nuclear norm of the first max_length tokens, the results JSON and the durable
              per-sample store (a fresh one each round: nothing is resumed).
The rounds alternate the two sides; the best time of each is printed, with the ratio and how far the numbers
agree. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEST_TXT = ROOT / ".." / "shared" / "data" / "wikitext-2" / "test.txt"
SPECTRAL = "matrix_entropy,effective_rank,nuclear_norm"


def random_gpt2(root: Path) -> Path:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from matrixeval.models import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    tok.bos_token, tok.eos_token = tok.cls_token, tok.sep_token
    config = GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=256, n_layer=4, n_head=4,
                        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(root)
    tok.save_pretrained(root)
    return root


def run_lm_eval(path: Path, texts: list[str], words: list[int], n_bytes: list[int], args) -> tuple[float, dict]:
    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity
    from lm_eval.models.huggingface import HFLM

    t0 = time.perf_counter()
    lm = HFLM(pretrained=str(path), max_length=args.max_length, batch_size=args.batch_size, device="cpu",
              dtype="float32")
    requests = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i)
                for i, t in enumerate(texts)]
    logliks = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    out = {"word_perplexity": weighted_perplexity(list(zip(logliks, words))),
           "byte_perplexity": weighted_perplexity(list(zip(logliks, n_bytes))),
           "bits_per_byte": bits_per_byte(list(zip(logliks, n_bytes))), "logliks": logliks}
    return time.perf_counter() - t0, out


def run_matrixeval(path: Path, args, work: Path) -> tuple[float, dict, list[float]]:
    import json

    from matrixeval import evaluate

    t0 = time.perf_counter()
    out = evaluate(f"pretrained={path},dtype=float32", f"wikitext={TEST_TXT}", txt_split="wikitext", limit=args.docs,
                   max_length=args.max_length, batch_size=args.batch_size, output_path=str(work), log_samples=True,
                   metrics=f"{SPECTRAL},loss,perplexity")
    seconds = time.perf_counter() - t0
    samples_file = next(Path(work).rglob("samples_wikitext_*.jsonl"))
    samples = sorted((json.loads(line) for line in samples_file.open()), key=lambda r: r["doc_id"])
    return seconds, out["results"]["wikitext"], [r["loglikelihood"] for r in samples]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=8)
    p.add_argument("--max_length", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    if not TEST_TXT.is_file():
        print(f"bench_rolling: {TEST_TXT} not found; nothing measured")
        return

    from matrixeval.data import load_task, parse_task_specs
    from matrixeval.metrics import count_bytes, count_words

    task = load_task(parse_task_specs(f"wikitext={TEST_TXT}")[0], txt_split="wikitext", limit=args.docs)
    texts = [d.text for d in task.documents]
    pages = [d.record["text"] for d in task.documents]  # lm-eval's wikitext counts the page before detokenising
    words, n_bytes = [count_words(p) for p in pages], [count_bytes(p) for p in pages]
    with tempfile.TemporaryDirectory() as tmp:
        path = random_gpt2(Path(tmp) / "gpt2-random")
        from transformers import AutoTokenizer

        n_tokens = sum(len(AutoTokenizer.from_pretrained(path)(t)["input_ids"]) for t in texts)
        best_lm, best_me = math.inf, math.inf
        for r in range(args.rounds):
            t_lm, theirs = run_lm_eval(path, texts, words, n_bytes, args)
            t_me, ours, our_ll = run_matrixeval(path, args, Path(tmp) / f"out{r}")
            best_lm, best_me = min(best_lm, t_lm), min(best_me, t_me)
    print(f"{len(texts)} wikitext-2 test articles, {n_tokens} tokens, max_length {args.max_length}, batch size "
          f"{args.batch_size}, GPT-2 random (hidden 256, 4 layers, vocab {30522}), float32, "
          f"{torch.get_num_threads()} torch threads, best of {args.rounds} rounds")
    print(f"{'':<44}{'seconds':>10}")
    print(f"{'lm-eval HFLM loglikelihood_rolling':<44}{best_lm:>10.2f}")
    print(f"{'matrixeval evaluate(rolling) + ' + 'spectral':<44}{best_me:>10.2f}")
    print(f"ratio matrixeval / lm-eval: {best_me / best_lm:.2f}")
    gap = max(abs(a - b) for a, b in zip(our_ll, theirs["logliks"]))
    print(f"per-document log-likelihood: max |matrixeval - lm-eval| = {gap:.2e}")
    for name in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        rel = abs(ours[name] - theirs[name]) / abs(theirs[name])
        print(f"{name:<16} lm-eval {theirs[name]:.6f}  matrixeval {ours[name]:.6f}  relative difference {rel:.1e}")
    print(f"matrixeval also gave matrix_entropy {ours['matrix_entropy']:.4f}, effective_rank "
          f"{ours['effective_rank']:.2f}, nuclear_norm {ours['nuclear_norm']:.4f} (first {args.max_length} tokens)")


if __name__ == "__main__":
    main()
