"""Metrics against sequence length (Wei et al. 2024 Fig. 2: dolly contexts of more than 512 tokens, cut to each
length; Matrix Nuclear-Norm Table 13).

Keeps the documents with at least --min_tokens tokens (default 512; special tokens included; pass 513 for the
paper's "more than 512"), independent of the lengths asked: a length L up to --min_tokens uses all of them, a
length above it only those with at least L tokens, so the table says per length how many documents it holds.
Each kept document is cut to every length L it reaches: the text is cut at the end of its token L (character
offsets of the tokenizer, or decoding the first token ids for tokenizers without offsets) and re-encoded, and a
document whose re-encoded prefix is not exactly L tokens at one of its lengths is left out (counted), so each
model input is exactly L tokens and a longer length's documents are among every shorter length's. --limit
keeps the first N such documents (at least --min_tokens tokens, exact cuts). Lengths above what the model reads
(--max_length and its position limit; 512 for the default MiniLM) are dropped with a warning, as are lengths
no kept document reaches; the JSON's "documents" section records both. Each length is measured as its own
variant "<task>/len<L>" (stored, resumable, data-parallel like `run`). Default --tasks: pydoc_topics (built
in; 12 of its paragraphs have 512+ MiniLM tokens); the paper's data: --tasks dolly=FILE.

Output columns (table .md/.csv next to <experiment>_<timestamp>.json, and the "table" key of the JSON):
  task           the task
  length         L, tokens per model input (special tokens such as BOS included)
  n_docs         documents measured at this length: at least max(L, --min_tokens) tokens and exact cuts
  n_samples      of those, samples with a defined value at this length
  <metric>       the metric's data-set value at this length (e.g. matrix_entropy, loss)
  <metric>_stderr  its standard error over samples
The JSON's "documents" section counts, per task, the documents loaded, those with at least --min_tokens
tokens, those left out because a cut was not exact, those used, the documents per length, and the lengths
dropped (above the model's limit or beyond every kept document). Plot: <stem>.png, the first metric against
length (log x), one line per task, each point with its n and ± 1 s.e.; further metrics in <stem>_<metric>.png.
A curve with points of fewer than 30 samples (``--caveat min_samples=N``) gets the ``few_samples_point``
warning, and those points are drawn hollow and crossed.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..caveats import curve_few_samples
from ..caveats import report as report_caveats
from ..data import Document
from ..errors import MatrixEvalError
from . import _common as common

logger = logging.getLogger(__name__)

DESCRIPTION = "metrics of the same documents cut to several token lengths (entropy paper Fig. 2, nuclear-norm paper Table 13)"
DEFAULT_LENGTHS = "64,128,256,512,1024"
DEFAULT_MIN_TOKENS = 512


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", default=DEFAULT_LENGTHS,
                        help=f"comma-separated token lengths (default: {DEFAULT_LENGTHS}); lengths above the model's "
                             "limit are dropped with a warning")
    # --min_tokens is a shared flag; here it has its own default and meaning for the cut documents
    parser.set_defaults(min_tokens=DEFAULT_MIN_TOKENS)
    common.set_help(parser, "--min_tokens", f"keep documents with at least this many tokens (default: "
                    f"{DEFAULT_MIN_TOKENS}); a length above it uses only the documents that reach it")
    common.add_metrics_arg(parser)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    shared = common.options_from_args(args)
    min_tokens = shared.pop("min_tokens")
    out = length_experiment(args.model_args, args.tasks, lengths=args.lengths, min_tokens=min_tokens,
                            metrics=args.metrics, **shared)
    return common.print_report(out)


def cut_to_tokens(tokenizer, text: str, length: int) -> str | None:
    """The prefix of `text` that the tokenizer encodes as exactly `length` tokens (special tokens included),
    or None when the text is shorter or no prefix re-encodes to exactly that many tokens."""
    n_special = _n_tokens(tokenizer, text)
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
        if _n_tokens(tokenizer, prefix) == length:
            return prefix
    return None


def _plain_encoding(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return enc["input_ids"], enc["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"], None


def length_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    lengths: str | Sequence[int] = DEFAULT_LENGTHS,
    min_tokens: int = DEFAULT_MIN_TOKENS,
    metrics: str | Sequence[str] | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Measure each task's documents of at least `min_tokens` tokens cut to every length in `lengths` they
    reach; see the module docstring.

    Returns the results dict (``results["<task>/len<L>"]`` entries, ``table`` rows, ``documents`` counts) on
    rank 0 and None elsewhere.
    """
    opts = common.options(common_options)
    if opts.fixed_tokens is not None:
        raise MatrixEvalError("--fixed_tokens does not apply to experiment length, which cuts every document to "
                              "each of --lengths; give the lengths there")
    asked = sorted(set(common.positive_ints(lengths, "lengths")))
    if not isinstance(min_tokens, int) or isinstance(min_tokens, bool) or min_tokens < 1:
        raise MatrixEvalError(f"min_tokens must be a positive number of tokens, got {min_tokens!r}")
    loaded = common.load_tasks(tasks, opts, limit=None)  # data first: a bad file fails before a large model loads
    session = common.open_session(model_args, metrics, opts)
    lengths = [n for n in asked if n <= session.max_length]
    too_long = [n for n in asked if n > session.max_length]
    if not lengths:
        raise MatrixEvalError(
            f"every length in {asked} exceeds max_length {session.max_length} of {session.lm.name} "
            "(--max_length and the model's position limit); use shorter --lengths"
        )
    if too_long:
        logger.warning("lengths %s exceed max_length %d of %s (--max_length and the model's position limit); "
                       "measuring %s only", too_long, session.max_length, session.lm.name, lengths)
    tokenizer = session.lm.tokenizer
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    documents: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for task in loaded:
        variants, counts = _variants(task, tokenizer, lengths, min_tokens, opts.limit)
        counts["lengths_above_model_limit"] = too_long
        documents[task.name] = counts
        for length, docs in variants.items():
            name = f"{task.name}/len{length}"
            entry, records = session.run(name, docs, load_skipped=task.skipped, source=task.source)
            if entry is None:
                continue
            results[name], per_sample[name] = entry, records
            rows.append({"task": task.name, "length": length, "n_docs": len(docs),
                         "n_samples": entry["n_samples"], **common.metric_cells(entry, session.metrics)})
        points = {r["length"]: r["n_samples"] for r in rows if r["task"] == task.name}
        sparse = [n for n, c in points.items() if c < opts.thresholds.min_samples]
        if sparse:  # one warning for the curve, on its first sparse point's entry
            report_caveats(results[f"{task.name}/len{sparse[0]}"], task.name,
                           [curve_few_samples(f"curve {task.name}", points, opts.thresholds)])
    model = common.short_name(session.lm.name)
    from ..report.plots import caveat_notes

    notes = caveat_notes(results, ["few_samples_point"])
    plots = {("" if i == 0 else m): _plotter(rows, m, model, opts.thresholds.min_samples, notes)
             for i, m in enumerate(session.metrics)}
    return common.finish(session, "length", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"lengths": lengths, "lengths_asked": asked, "min_tokens": min_tokens,
                                       "tasks": tasks},
                         plots=plots, documents=documents)


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])


def _variants(task, tokenizer, lengths: list[int], min_tokens: int,
              limit: int | None) -> tuple[dict[int, list[Document]], dict[str, Any]]:
    """Each length's documents (cut to it) and the counts of what qualified; lengths no document reaches are left
    out and listed."""
    variants: dict[int, list[Document]] = {length: [] for length in lengths}
    n_long = n_inexact = n_used = max_seen = 0
    for doc in task.documents:
        if limit is not None and n_used >= limit:
            break
        n_tokens = _n_tokens(tokenizer, doc.text)
        max_seen = max(max_seen, n_tokens)
        if n_tokens < min_tokens:
            continue
        n_long += 1
        cuts = {length: cut_to_tokens(tokenizer, doc.text, length) for length in lengths if length <= n_tokens}
        if not cuts:
            continue
        if any(c is None for c in cuts.values()):
            n_inexact += 1
            continue
        n_used += 1
        for length, text in cuts.items():
            variants[length].append(Document(doc.doc_id, text, doc.record))
    if not n_used:
        raise MatrixEvalError(
            f"no document of task {task.name!r} has {min_tokens} tokens and an exact cut at a length in {lengths} "
            f"(longest seen: {max_seen} tokens, {n_inexact} not cut exactly); lower --min_tokens or use longer texts"
        )
    unreached = [length for length, docs in variants.items() if not docs]
    if unreached:
        logger.warning("task %s: no kept document reaches lengths %s (longest: %d tokens); measuring the others",
                       task.name, unreached, max_seen)
    counts = {"n_loaded": len(task.documents), "n_long_enough": n_long, "n_inexact": n_inexact, "n_used": n_used,
              "n_docs_by_length": {str(length): len(docs) for length, docs in variants.items()},
              "lengths_beyond_documents": unreached}
    return {length: docs for length, docs in variants.items() if docs}, counts


def _plotter(rows: list[dict[str, Any]], metric: str, model: str, min_samples: int, notes: list[str]):
    def draw(path):
        from ..report.plots import plot_series

        series, errors, counts = {}, {}, {}
        for task in dict.fromkeys(r["task"] for r in rows):
            mine = [r for r in rows if r["task"] == task and r.get(metric) is not None]
            if mine:
                series[task] = ([r["length"] for r in mine], [r[metric] for r in mine])
                errors[task] = [r.get(f"{metric}_stderr") for r in mine]
                counts[task] = [r["n_samples"] for r in mine]
        lengths = sorted({r["length"] for r in rows})
        plot_series(series, path, xlabel="sequence length (tokens)", ylabel=common.metric_label(metric),
                    title=f"{model}: {metric} vs sequence length", logx=True, errors=errors, xticks=lengths,
                    counts=counts, min_count=min_samples,
                    error_label="error bars: ± 1 s.e. over samples; n = samples per point", notes=notes)

    return draw
