"""Metrics of the same documents with their sentences shuffled or reversed (Wei et al. 2024 Fig. 3;
Matrix Nuclear-Norm Fig. 3).

Each document is split into sentences by a rule-based splitter (no model, no download; see
matrixeval.data.transforms) and rebuilt by every operation in --ops (default:
base,shuffle,reverse_words,shuffle_reverse_words):
  base                   the sentences in their original order (joined by single spaces, like every operation)
  shuffle                the sentences in a random order (seeded by --seed and the text), each sentence unchanged
  reverse_order          the sentences in reverse order, each sentence unchanged
  reverse_words          the sentences in their order, the words of each sentence in reverse order
                         ("The cat sat. It left." -> "sat. cat The left. It")
  shuffle_reverse_words  the shuffle order (same seed), then the words of each sentence in reverse order
Words are whitespace-separated and keep their punctuation. The papers' "reverse" is read as reverse_words and
their "shuffle & reverse" as shuffle_reverse_words: neither paper's public code has these operations, and only
this reading fits both papers' findings (see the README); reverse_order measures the other reading. The old
names "reverse" and "shuffle_reverse" are refused as ambiguous. The same --seed gives the same texts, and so
the same numbers; another seed gives other shuffles. Each operation is measured as its own variant
"<task>/<op>" (stored, resumable, data-parallel like `run`). Default --tasks: pydoc_topics (built in); the
papers use dolly (--tasks dolly=FILE offline).

Output columns (table .md/.csv next to sentence-ops_<timestamp>.json, and the "table" key of the JSON):
  task                   the task
  op                     the sentence operation
  n_samples              samples with a defined value
  <metric>               the metric's data-set value on the rebuilt texts (e.g. matrix_entropy, loss)
  <metric>_stderr        its standard error over samples
  <metric>_delta         value minus the value of base (present when base is among --ops)
  <metric>_delta_stderr  standard error of the mean per-document difference to base (paired: same documents)
The JSON's "documents" section counts, per task, the documents, those with a single sentence (which no
reordering changes) and, per operation, those it leaves exactly as base has them (n_unchanged_<op>); above 10 %
(``--caveat max_unchanged_fraction=F``) the operation's variant gets the ``unchanged_by_operation`` warning,
also written on the plot. Plot: <stem>.png, per task a bar per operation of the first metric's Δ against base,
with the 95% bootstrap interval of the paired per-document Δ (the figure says so and gives base's value);
further metrics in <stem>_<metric>.png.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from ..caveats import report as report_caveats
from ..caveats import unchanged_by_operation
from ..data import Document
from ..data.transforms import SENTENCE_OPS, apply_sentence_op, check_sentence_ops, split_sentences
from . import _common as common

DESCRIPTION = "metrics of texts with shuffled / reversed sentences (entropy paper Fig. 3, nuclear-norm paper Fig. 3)"
DEFAULT_OPS = "base,shuffle,reverse_words,shuffle_reverse_words"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", default=DEFAULT_OPS,
                        help=f"comma-separated operations out of {', '.join(SENTENCE_OPS)} (default: {DEFAULT_OPS}; "
                             "each is described above)")
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
    check_sentence_ops(ops)
    session = common.open_session(model_args, metrics, opts)
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    documents: dict[str, dict[str, int]] = {}
    rows: list[dict[str, Any]] = []
    for task in common.load_tasks(tasks, opts):
        single = sum(len(split_sentences(d.text, hard_breaks=hard_breaks)) < 2 for d in task.documents)
        documents[task.name] = {"n_docs": len(task.documents), "n_single_sentence": single}
        task_rows = []
        rebuilt = {op: [apply_sentence_op(d.text, op, opts.seed, hard_breaks=hard_breaks) for d in task.documents]
                   for op in dict.fromkeys(["base", *ops])}
        for op in ops:
            docs = [Document(d.doc_id, text, d.record) for d, text in zip(task.documents, rebuilt[op])]
            name = f"{task.name}/{op}"
            entry, records = session.run(name, docs, load_skipped=task.skipped, source=task.source)
            if entry is None:
                continue
            results[name], per_sample[name] = entry, records
            if op != "base":  # a document the operation leaves as base has it measures nothing about the operation
                same = sum(a == b for a, b in zip(rebuilt[op], rebuilt["base"]))
                documents[task.name][f"n_unchanged_{op}"] = same
                report_caveats(entry, name, [unchanged_by_operation(
                    op, same, len(docs), opts.thresholds, why=f"{single} of {len(docs)} have a single sentence")])
            task_rows.append({"task": task.name, "op": op, "n_samples": entry["n_samples"],
                              **common.metric_cells(entry, session.metrics)})
        rows.extend(_with_deltas(task_rows, per_sample, session, opts.seed))
    model = common.short_name(session.lm.name)
    from ..report.plots import caveat_notes

    notes = caveat_notes(results, ["unchanged_by_operation"])
    plots = {
        ("" if i == 0 else m): common.delta_plotter(rows, per_sample, m, "op", base="base", session=session,
                                                    seed=opts.seed, notes=notes,
                                                    title=f"{model}: {m}, Δ of each sentence operation")
        for i, m in enumerate(session.metrics)
    }
    return common.finish(session, "sentence-ops", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"ops": ops, "hard_breaks": hard_breaks, "tasks": tasks},
                         plots=plots, documents=documents)


def _with_deltas(rows: list[dict[str, Any]], per_sample: Mapping[str, list], session,
                 seed: int) -> list[dict[str, Any]]:
    """Add Δ against base and its paired standard error (the per-document differences) to each row."""
    base = next((r for r in rows if r["op"] == "base"), None)
    if base is None:
        return rows
    layer = str(max(session.layers))
    for m in session.metrics:
        base_values = common.sample_values(per_sample[f"{base['task']}/base"], m, layer, session.lm.hidden_size)
        for r in rows:
            if r.get(m) is None or base.get(m) is None:
                continue
            r[f"{m}_delta"] = r[m] - base[m]
            if base_values is not None:
                values = common.sample_values(per_sample[f"{r['task']}/{r['op']}"], m, layer, session.lm.hidden_size)
                r[f"{m}_delta_stderr"] = common.paired_delta(base_values, [values], seed).stderr
    return rows
