"""Metrics against sequence length (Wei et al. 2024 Fig. 2; Matrix Nuclear-Norm Table 13).

Keeps the documents with at least max(--lengths) tokens (special tokens included), then cuts every kept
document to each length L: the text is cut at the end of its token L (character offsets of the tokenizer, or
decoding the first token ids for tokenizers without offsets) and re-encoded, and a document whose re-encoded
prefix is not exactly L tokens for every length is left out (counted), so every variant holds the same
documents and each model input is exactly L tokens. --limit keeps the first N qualifying documents. Each
length is measured as its own variant "<task>/len<L>" (stored, resumable, data-parallel like `run`).

Output columns (table .md/.csv next to <experiment>_<timestamp>.json, and the "table" key of the JSON):
  task           the task
  length         L, tokens per model input (special tokens such as BOS included)
  n_docs         documents with at least max(--lengths) tokens and an exact cut at every length
  n_samples      of those, samples with a defined value at this length
  <metric>       the metric's data-set value at this length (e.g. matrix_entropy, loss)
  <metric>_stderr  its standard error over samples
The JSON's "documents" section counts, per task, the documents loaded, long enough, and left out because a
cut was not exact. Plot: <stem>.png, the first metric against length (log x), one line per task; further
metrics in <stem>_<metric>.png.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from ..data import Document
from ..errors import MatrixEvalError
from . import _common as common

DESCRIPTION = "metrics of the same documents cut to several token lengths (seed 000 Fig. 2, seed 003 Table 13)"
DEFAULT_LENGTHS = "64,128,256,512,1024"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", default=DEFAULT_LENGTHS,
                        help=f"comma-separated token lengths (default: {DEFAULT_LENGTHS}); documents need max(lengths)")
    common.add_metrics_arg(parser)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    out = length_experiment(args.model_args, args.tasks, lengths=args.lengths, metrics=args.metrics,
                            **common.options_from_args(args))
    return common.print_report(out)


def cut_to_tokens(tokenizer, text: str, length: int) -> str | None:
    """The prefix of `text` that the tokenizer encodes as exactly `length` tokens (special tokens included),
    or None when the text is shorter or no prefix re-encodes to exactly that many tokens."""
    n_special = len(tokenizer(text, add_special_tokens=True)["input_ids"])
    plain = _plain_encoding(tokenizer, text)
    n_special -= len(plain[0])
    keep = length - n_special
    if keep < 1 or keep > len(plain[0]):
        return None
    ids, offsets = plain
    candidates = []
    if offsets is not None:
        candidates.append(text[: offsets[keep - 1][1]])
    candidates.append(tokenizer.decode(ids[:keep]))
    for prefix in candidates:
        if len(tokenizer(prefix, add_special_tokens=True)["input_ids"]) == length:
            return prefix
    return None


def _plain_encoding(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], enc["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        return tokenizer(text, add_special_tokens=False)["input_ids"], None


def length_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    lengths: str | Sequence[int] = DEFAULT_LENGTHS,
    metrics: str | Sequence[str] | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Measure each task's long-enough documents cut to every length in `lengths`; see the module docstring.

    Returns the results dict (``results["<task>/len<L>"]`` entries, ``table`` rows, ``documents`` counts) on
    rank 0 and None elsewhere.
    """
    opts = common.options(common_options)
    lengths = sorted(set(common.positive_ints(lengths, "lengths")))
    loaded = common.load_tasks(tasks, opts, limit=None)  # data first: a bad file fails before a large model loads
    session = common.open_session(model_args, metrics, opts)
    if lengths[-1] > session.max_length:
        raise MatrixEvalError(
            f"length {lengths[-1]} exceeds max_length {session.max_length} of {session.lm.name} "
            "(--max_length and the model's position limit); drop it from --lengths"
        )
    tokenizer = session.lm.tokenizer
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    documents: dict[str, dict[str, int]] = {}
    rows: list[dict[str, Any]] = []
    for task in loaded:
        variants, counts = _variants(task, tokenizer, lengths, opts.limit)
        documents[task.name] = counts
        for length in lengths:
            name = f"{task.name}/len{length}"
            entry, records = session.run(name, variants[length], load_skipped=task.skipped, source=task.source)
            if entry is None:
                continue
            results[name], per_sample[name] = entry, records
            rows.append({"task": task.name, "length": length, "n_docs": counts["n_used"],
                         "n_samples": entry["n_samples"], **common.metric_cells(entry, session.metrics)})
    model = common.short_name(session.lm.name)
    plots = {("" if i == 0 else m): _plotter(rows, m, model) for i, m in enumerate(session.metrics)}
    return common.finish(session, "length", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"lengths": lengths, "tasks": tasks}, plots=plots, documents=documents)


def _variants(task, tokenizer, lengths: list[int], limit: int | None) -> tuple[dict[int, list[Document]], dict]:
    """Each length's documents (the same qualifying documents, cut) and the counts of what qualified."""
    longest = lengths[-1]
    variants: dict[int, list[Document]] = {length: [] for length in lengths}
    n_long = n_inexact = 0
    max_seen = 0
    for doc in task.documents:
        if limit is not None and len(variants[longest]) >= limit:
            break
        n_tokens = len(tokenizer(doc.text, add_special_tokens=True)["input_ids"])
        max_seen = max(max_seen, n_tokens)
        if n_tokens < longest:
            continue
        n_long += 1
        cuts = {length: cut_to_tokens(tokenizer, doc.text, length) for length in lengths}
        if any(c is None for c in cuts.values()):
            n_inexact += 1
            continue
        for length, text in cuts.items():
            variants[length].append(Document(doc.doc_id, text, doc.record))
    if not variants[longest]:
        raise MatrixEvalError(
            f"no document of task {task.name!r} has {longest} tokens with an exact cut at every length "
            f"(longest seen: {max_seen} tokens, {n_inexact} not cut exactly); use shorter --lengths or longer texts"
        )
    counts = {"n_loaded": len(task.documents), "n_long_enough": n_long, "n_inexact": n_inexact,
              "n_used": len(variants[longest])}
    return variants, counts


def _plotter(rows: list[dict[str, Any]], metric: str, model: str):
    def draw(path):
        from ..report.plots import plot_series

        series, errors = {}, {}
        for task in dict.fromkeys(r["task"] for r in rows):
            mine = [r for r in rows if r["task"] == task and r.get(metric) is not None]
            if mine:
                series[task] = ([r["length"] for r in mine], [r[metric] for r in mine])
                errors[task] = [r.get(f"{metric}_stderr") for r in mine]
        lengths = sorted({r["length"] for r in rows})
        plot_series(series, path, xlabel="sequence length (tokens)", ylabel=common.metric_label(metric),
                    title=f"{model}: {metric} vs sequence length", logx=True, errors=errors, xticks=lengths)

    return draw
