"""matrixeval's pipeline vs a bare loop of forward passes over the same batches, measured in one run.

Run: .venv/bin/python benchmarks/bench_pipeline.py [--docs 64] [--batch_size 8] [--max_length 256]
Models: the packaged all-MiniLM-L6-v2 (real, 22M) and a randomly initialised GPT-2-shaped model (~45M).
The pipeline side is matrixeval's engine on the loaded model: forward with layer hooks, loss, metrics on
every batch, the durable per-sample store (fsync per batch) and the data-set aggregation. Model loading
and tokenisation are outside both timers. Prints wall times and ratios; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from matrixeval.data import TaskSpec, load_task  # noqa: E402
from matrixeval.engine.batching import collate, encode, plan_batches  # noqa: E402
from matrixeval.engine.dist import World  # noqa: E402
from matrixeval.engine.measure import MeasureConfig  # noqa: E402
from matrixeval.engine.runner import BatchSizer, run_task  # noqa: E402
from matrixeval.engine.store import ShardStore  # noqa: E402
from matrixeval.models import LoadedModel, default_model_path, load_model, parse_model_args, resolve_layers  # noqa: E402
from matrixeval.results import task_results  # noqa: E402


def gpt2_45m(root: Path) -> Path:
    """A GPT-2-shaped model of ~45M parameters with the MiniLM (BERT) tokenizer, randomly initialised."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(default_model_path())
    config = GPT2Config(vocab_size=tok.vocab_size, n_positions=1024, n_embd=512, n_layer=9, n_head=8,
                        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(root)
    tok.save_pretrained(root)
    return root


def bare_loop(lm: LoadedModel, encoded, batch_size: int) -> float:
    """Forward passes only (logits for a causal LM), over the batches matrixeval forms."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        for batch in plan_batches(encoded, batch_size):
            ids, mask, _ = collate([encoded[j] for j in batch], lm.tokenizer.pad_token_id, lm.device)
            lm.model(input_ids=ids, attention_mask=mask)
    return time.perf_counter() - t0


def pipeline(lm: LoadedModel, encoded, metrics: list[str], layers: str, batch_size: int, store_dir: Path) -> float:
    """matrixeval's loop on the same model and samples: hooks, loss, metrics, durable store, aggregation."""
    layer_ids = resolve_layers(layers, lm.num_hidden_layers)
    cfg = MeasureConfig(tuple(layer_ids), "loss" in metrics, False, frozenset(lm.tokenizer.all_special_ids))
    t0 = time.perf_counter()
    store = ShardStore(Path(tempfile.mkdtemp(dir=store_dir)), {})
    run = run_task(lm, encoded, cfg, store, World(), BatchSizer.parse(batch_size))
    task_results(run.records, layers=layer_ids, metrics=metrics, hidden_size=lm.hidden_size, seed=0,
                 load_skipped={}, n_resumed=0)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    docs = load_task(TaskSpec("pydoc_topics"), limit=args.docs).documents
    models = {
        "all-MiniLM-L6-v2 (real)": (f"pretrained={default_model_path()}", ["matrix_entropy", "nuclear_norm"]),
        "GPT-2 shaped (random)": (f"pretrained={gpt2_45m(tmp / 'gpt2')}", ["matrix_entropy", "nuclear_norm", "loss"]),
    }
    print(f"torch threads={torch.get_num_threads()}, {len(docs)} pydoc_topics docs, batch_size={args.batch_size}, "
          f"max_length={args.max_length}; best of {args.repeats} after a warm-up, interleaved")
    for name, (model_args, metrics) in models.items():
        lm = load_model(parse_model_args(model_args), "cpu")
        n_params = sum(p.numel() for p in lm.model.parameters())
        encoded = encode(lm.tokenizer, docs, min(args.max_length, lm.max_positions or args.max_length))
        n_tokens = sum(len(e.input_ids) for e in encoded)
        for layers in ("last", "all"):
            bare_loop(lm, encoded, args.batch_size)
            pipeline(lm, encoded, metrics, layers, args.batch_size, tmp)
            bare, ours = float("inf"), float("inf")
            for _ in range(args.repeats):
                bare = min(bare, bare_loop(lm, encoded, args.batch_size))
                ours = min(ours, pipeline(lm, encoded, metrics, layers, args.batch_size, tmp))
            print(f"{name:<24} {n_params / 1e6:5.1f}M {n_tokens:>6} tok  layers={layers:<4} {','.join(metrics):<32} "
                  f"bare {bare:6.2f} s  matrixeval {ours:6.2f} s  ratio {ours / bare:.3f}x")


if __name__ == "__main__":
    main()
