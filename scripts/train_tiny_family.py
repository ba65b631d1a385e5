"""Train a family of tiny GPT-2-style causal LMs on CPU, offline, and watch them learn to compress.

Not part of the installed package. The corpus is Python's own help topics (`pydoc_data.topics`, in every
Python install): every 8th topic (sorted by name) is held out, and its paragraphs of 40+ words become the
evaluation set ``<out>/heldout.jsonl``; the other topics are the training text. A byte-level BPE tokenizer
is trained on the training text. Each member (``--sizes WIDTHxLAYERS,...``) is trained from a seeded init with
AdamW on random windows of the token stream, and saved as a Hugging Face checkpoint every ``--save_every``
steps (``<out>/<member>/checkpoint-<step>/``, with a ``trainer_state.json`` holding ``global_step``).

Then, unless ``--no_eval``: ``matrixeval experiment checkpoints`` on every member (with the seeded random init
as step 0), one picture of every member's metrics against step (``<out>/results/family_vs_step.png``), a plain
``matrixeval run`` of every member's last checkpoint (copied to ``<out>/final/<member>``), and ``matrixeval
compare --fit powerlaw`` across the members (``<out>/results/scaling_<metric>.png``); tables are printed and the
files written under ``<out>/results``.

    python scripts/train_tiny_family.py --out results/tiny_family     # ~6 min on 2 shared CPU cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

DEFAULT_SIZES = "32x1,64x2,96x3,128x4"
HELDOUT_EVERY = 8
EOS = "<|endoftext|>"


def corpus(heldout_every: int = HELDOUT_EVERY) -> tuple[list[str], list[dict]]:
    """(training topic texts, held-out paragraph records ``{"id", "topic", "text"}``): every `heldout_every`-th
    topic, sorted by name, is held out, and its paragraphs of MIN_WORDS+ words (the built-in task's) are kept."""
    from pydoc_data.topics import topics

    from matrixeval.data.builtin import pydoc_topic_records

    names = sorted(topics)
    held = set(names[::heldout_every])
    heldout = [{"id": f"{r['topic']}/{r['paragraph']}", "topic": r["topic"], "text": r["text"]}
               for r in pydoc_topic_records() if r["topic"] in held]
    return [topics[n] for n in names if n not in held], heldout


def train_tokenizer(texts: list[str], vocab_size: int, max_length: int):
    """A byte-level BPE tokenizer trained on `texts` (seconds), as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   model_max_length=max_length)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"32x1,64x2"`` → [(32, 1), (64, 2)] (width × layers)."""
    sizes = []
    for item in text.split(","):
        width, _, layers = item.strip().partition("x")
        sizes.append((int(width), int(layers)))
    return sizes


def train_member(out: Path, tokenizer, stream: torch.Tensor, *, width: int, layers: int, steps: int,
                 save_every: int, seq_len: int = 128, batch: int = 8, lr: float = 3e-3, seed: int = 0) -> list[Path]:
    """Train one GPT-2-style member from a seeded init; save ``checkpoint-<step>`` every `save_every` steps (and
    at the last step). Returns the checkpoint folders. Deterministic given the seed (single-threaded CPU)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=seq_len, n_embd=width, n_layer=layers,
                        n_head=max(1, width // 32), n_inner=4 * width, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    rng = torch.Generator().manual_seed(seed)
    saved = []
    losses = []
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(stream) - seq_len, (batch,), generator=rng)
        ids = torch.stack([stream[s: s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % save_every == 0 or step == steps:
            folder = out / f"checkpoint-{step}"
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            recent = losses[-save_every:]
            (folder / "trainer_state.json").write_text(json.dumps(
                {"global_step": step, "train_loss": sum(recent) / len(recent), "seed": seed}, indent=2))
            saved.append(folder)
    return saved


def tokenize_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer.backend_tokenizer.encode(text).ids)  # the whole text: no length warning
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def train_family(out: Path, *, sizes: list[tuple[int, int]], steps: int, save_every: int, vocab_size: int,
                 seq_len: int, batch: int, seed: int) -> dict[str, list[Path]]:
    """Build the corpus and tokenizer, write ``heldout.jsonl``, and train every member. Returns member → folders."""
    out.mkdir(parents=True, exist_ok=True)
    train, heldout = corpus()
    with open(out / "heldout.jsonl", "w", encoding="utf-8") as f:
        for record in heldout:
            f.write(json.dumps(record) + "\n")
    tokenizer = train_tokenizer(train, vocab_size, seq_len)
    stream = tokenize_stream(tokenizer, train)
    print(f"corpus: {len(train)} training topics, {len(stream):,} tokens (vocab {len(tokenizer)}); "
          f"{len(heldout)} held-out paragraphs in {out / 'heldout.jsonl'}")
    family = {}
    for width, layers in sizes:
        name = f"gpt2-d{width}-l{layers}"
        started = time.perf_counter()
        family[name] = train_member(out / name, tokenizer, stream, width=width, layers=layers, steps=steps,
                                    save_every=save_every, seq_len=seq_len, batch=batch, seed=seed)
        state = json.loads((family[name][-1] / "trainer_state.json").read_text())
        print(f"{name}: {steps} steps in {time.perf_counter() - started:.0f} s, "
              f"train loss over the last {save_every} steps {state['train_loss']:.3f}")
    return family


def evaluate_family(out: Path, family: dict[str, list[Path]], *, limit: int | None, seq_len: int, seed: int) -> None:
    """`experiment checkpoints` on every member, `run` on every last checkpoint, `compare --fit powerlaw`."""
    import matrixeval
    from matrixeval.experiments.checkpoints import checkpoints_experiment
    from matrixeval.experiments.compare import compare
    from matrixeval.report.tables import to_markdown

    from matrixeval.report.plots import plot_metric_panels
    from matrixeval.results import higher_is_better

    results = out / "results"
    task = str(out / "heldout.jsonl")
    common = dict(limit=limit, max_length=seq_len, seed=seed, output_path=results, batch_size=16)
    finals = []
    panels: dict[str, dict[str, list]] = {}
    shown = ("loss", "matrix_entropy", "effective_rank", "diff_erank")
    for name, folders in family.items():
        sweep = checkpoints_experiment(tasks=task, checkpoints=str(out / name / "checkpoint-*"), include_init=True,
                                       **common)
        print(f"\n## {name}: experiment checkpoints\n")
        print(to_markdown(sweep["table"]))
        print("written: " + ", ".join([sweep["outputs"]["json"], *sweep["outputs"]["plots"]]))
        for row in sweep["table"]:
            for m in shown:
                panels.setdefault(m, {}).setdefault(name, []).append((row["step"], row[m], None, None))
        # The last checkpoint under the member's own name, so `compare` labels its points by member.
        final_dir = out / "final" / name
        if not final_dir.exists():
            shutil.copytree(folders[-1], final_dir)
        final = matrixeval.evaluate(f"pretrained={final_dir}", task,
                                    metrics="matrix_entropy,effective_rank,nuclear_norm,diff_erank,loss,perplexity",
                                    **common)
        finals.append(final["results_path"])
    picture = plot_metric_panels(panels, results / "family_vs_step.png", xlabel="training step",
                                 title="tiny GPT-2 family on held-out pydoc topics",
                                 higher_is_better=higher_is_better(shown))
    print(f"\nwritten: {picture}")
    for metric in ("matrix_entropy", "effective_rank", "diff_erank", "loss"):
        cmp = compare(finals, fit="powerlaw", metrics=metric, plot=results / f"scaling_{metric}.png",
                      output=results / f"compare_{metric}")
        print(f"\n## compare --fit powerlaw: {metric}\n")
        print(cmp["markdown"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/tiny_family", help="output folder (default: results/tiny_family)")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"WIDTHxLAYERS members (default: {DEFAULT_SIZES})")
    p.add_argument("--steps", type=int, default=200, help="training steps per member (default: 200)")
    p.add_argument("--save_every", type=int, default=25, help="checkpoint every K steps (default: 25)")
    p.add_argument("--vocab_size", type=int, default=1024, help="BPE vocabulary size (default: 1024)")
    p.add_argument("--seq_len", type=int, default=128, help="training window and eval max_length (default: 128)")
    p.add_argument("--batch", type=int, default=8, help="windows per step (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of inits, windows and matrixeval (default: 0)")
    p.add_argument("--limit", type=int, default=None, help="held-out paragraphs to evaluate (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1: tiny matrices gain little from more)")
    p.add_argument("--no_eval", action="store_true", help="train only")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    started = time.perf_counter()
    family = train_family(out, sizes=parse_sizes(a.sizes), steps=a.steps, save_every=a.save_every,
                          vocab_size=a.vocab_size, seq_len=a.seq_len, batch=a.batch, seed=a.seed)
    print(f"trained {len(family)} members in {time.perf_counter() - started:.0f} s")
    if not a.no_eval:
        evaluate_family(out, family, limit=a.limit, seq_len=a.seq_len, seed=a.seed)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
