"""Metrics of the same documents with their sentences shuffled or reversed (Wei et al. 2024 Fig. 3;
Matrix Nuclear-Norm Fig. 3).

Each document is split into sentences by a rule-based splitter (no model, no download; see
matrixeval.data.transforms) and rebuilt by every operation in --ops:
  base             the sentences in their original order (joined by single spaces, like every operation)
  shuffle          the sentences in a random order, seeded by --seed and the text itself
  reverse          the sentences in reverse order, each sentence unchanged
  shuffle_reverse  the shuffle order, then the words of each sentence in reverse order
The same --seed gives the same texts, and so the same numbers; another seed gives other shuffles. Each
operation is measured as its own variant "<task>/<op>" (stored, resumable, data-parallel like `run`).

Output columns (table .md/.csv next to sentence-ops_<timestamp>.json, and the "table" key of the JSON):
  task             the task
  op               the sentence operation
  n_samples        samples with a defined value
  <metric>         the metric's data-set value on the rebuilt texts (e.g. matrix_entropy, loss)
  <metric>_stderr  its standard error over samples
  <metric>_delta   value minus the value of base (present when base is among --ops)
The JSON's "documents" section counts, per task, the documents and those with a single sentence (which no
operation changes). Plot: <stem>.png, grouped bars of the first metric per task and operation with standard
errors; further metrics in <stem>_<metric>.png.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from ..data import Document
from ..data.transforms import SENTENCE_OPS, apply_sentence_op, split_sentences
from ..errors import MatrixEvalError
from . import _common as common

DESCRIPTION = "metrics of texts with shuffled / reversed sentences (seed 000 Fig. 3, seed 003 Fig. 3)"
DEFAULT_OPS = ",".join(SENTENCE_OPS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", default=DEFAULT_OPS, help=f"comma-separated operations (default: {DEFAULT_OPS})")
    parser.add_argument("--hard_breaks", action="store_true", help="also end a sentence at every line break")
    common.add_metrics_arg(parser)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    out = sentence_ops_experiment(args.model_args, args.tasks, ops=args.ops, hard_breaks=args.hard_breaks,
                                  metrics=args.metrics, **common.options_from_args(args))
    return common.print_report(out)


def sentence_ops_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    ops: str | Sequence[str] = DEFAULT_OPS,
    hard_breaks: bool = False,
    metrics: str | Sequence[str] | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Measure each task's documents rebuilt by every sentence operation in `ops`; see the module docstring.

    Returns the results dict (``results["<task>/<op>"]`` entries, ``table`` rows) on rank 0, None elsewhere.
    """
    opts = common.options(common_options)
    ops = list(dict.fromkeys(common.parse_list(ops, str, "ops")))
    unknown = [op for op in ops if op not in SENTENCE_OPS]
    if unknown:
        raise MatrixEvalError(f"unknown sentence operation {unknown[0]!r}; use some of: {', '.join(SENTENCE_OPS)}")
    session = common.open_session(model_args, metrics, opts)
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    documents: dict[str, dict[str, int]] = {}
    rows: list[dict[str, Any]] = []
    for task in common.load_tasks(tasks, opts):
        single = sum(len(split_sentences(d.text, hard_breaks=hard_breaks)) < 2 for d in task.documents)
        documents[task.name] = {"n_docs": len(task.documents), "n_single_sentence": single}
        task_rows = []
        for op in ops:
            docs = [Document(d.doc_id, apply_sentence_op(d.text, op, opts.seed, hard_breaks=hard_breaks), d.record)
                    for d in task.documents]
            name = f"{task.name}/{op}"
            entry, records = session.run(name, docs, load_skipped=task.skipped, source=task.source)
            if entry is None:
                continue
            results[name], per_sample[name] = entry, records
            task_rows.append({"task": task.name, "op": op, "n_samples": entry["n_samples"],
                              **common.metric_cells(entry, session.metrics)})
        rows.extend(_with_deltas(task_rows, session.metrics))
    model = common.short_name(session.lm.name)
    plots = {
        ("" if i == 0 else m): common.bar_plotter(rows, m, "op", ylabel=common.metric_label(m),
                                                  title=f"{model}: {m} by sentence operation")
        for i, m in enumerate(session.metrics)
    }
    return common.finish(session, "sentence-ops", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"ops": ops, "hard_breaks": hard_breaks, "tasks": tasks},
                         plots=plots, documents=documents)


def _with_deltas(rows: list[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    base = next((r for r in rows if r["op"] == "base"), None)
    if base is None:
        return rows
    for r in rows:
        for m in metrics:
            if r.get(m) is not None and base.get(m) is not None:
                r[f"{m}_delta"] = r[m] - base[m]
    return rows
