"""How stable the metrics are on random subsets of a data set (Wei et al. 2024 Table 7; Matrix Nuclear-Norm
Table 5).

For every size in --sizes and every i < --n_seeds, a subset of that many documents is drawn without
replacement by random.Random(f"{seed}:{size}:{i}"). Every document is measured once, through the engine
like `run` (task "<task>", stored, resumable, data-parallel), and each subset's values are aggregated from
its documents' per-sample records with the same functions a run uses (matrixeval.results.task_results):
exactly the numbers a run over only that subset would report, at the cost of one pass over the data.

Output columns (table .md/.csv next to sampling_<timestamp>.json, and the "table" key of the JSON):
  task            the task
  size            documents per subset
  n_seeds         subsets drawn of that size
  <metric>_mean   mean over the subsets of the metric's data-set value (e.g. matrix_entropy_mean)
  <metric>_std    standard deviation over the subsets (ddof=1)
  <metric>_full   the value on all of the task's documents, for reference
The JSON's "subsets" section lists every subset: size, seed index, its doc_ids and its values. Plot:
<stem>.png, the first metric's mean ± std against subset size per task; further metrics in <stem>_<metric>.png.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import MatrixEvalError
from ..results import task_results
from . import _common as common

DESCRIPTION = "mean and std of the metrics over random subsets of several sizes (seed 000 Table 7, seed 003 Table 5)"
DEFAULT_SIZES = "10,50,100"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help=f"comma-separated subset sizes (default: {DEFAULT_SIZES})")
    parser.add_argument("--n_seeds", type=int, default=5, help="subsets drawn per size (default: 5)")
    common.add_metrics_arg(parser)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    out = sampling_experiment(args.model_args, args.tasks, sizes=args.sizes, n_seeds=args.n_seeds,
                              metrics=args.metrics, **common.options_from_args(args))
    return common.print_report(out)


def draw_subset(n_docs: int, size: int, seed: int, index: int) -> list[int]:
    """Positions (sorted) of subset `index` of `size` documents out of `n_docs`, for `seed`."""
    return sorted(random.Random(f"{seed}:{size}:{index}").sample(range(n_docs), size))


def sampling_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    sizes: str | Sequence[int] = DEFAULT_SIZES,
    n_seeds: int = 5,
    metrics: str | Sequence[str] | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Measure each task once and aggregate random subsets of every size; see the module docstring.

    Returns the results dict (``results[task]`` on all documents, ``table``, ``subsets``) on rank 0, None elsewhere.
    """
    opts = common.options(common_options)
    sizes = sorted(set(common.positive_ints(sizes, "sizes")))
    if not isinstance(n_seeds, int) or n_seeds < 1:
        raise MatrixEvalError(f"n_seeds must be a positive integer, got {n_seeds!r}")
    loaded = common.load_tasks(tasks, opts)  # data first: a bad file fails before a large model loads
    session = common.open_session(model_args, metrics, opts)
    for task in loaded:
        if sizes[-1] > len(task.documents):
            raise MatrixEvalError(f"subset size {sizes[-1]} exceeds the {len(task.documents)} documents of task "
                                  f"{task.name!r}; pass smaller --sizes (or a larger --limit)")
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    subsets: dict[str, list[dict[str, Any]]] = {}
    rows: list[dict[str, Any]] = []
    for task in loaded:
        entry, records = session.run(task.name, task.documents, load_skipped=task.skipped, source=task.source)
        if entry is None:
            continue
        results[task.name], per_sample[task.name] = entry, records
        subsets[task.name] = []
        for size in sizes:
            values: dict[str, list[float]] = {m: [] for m in session.metrics}
            for i in range(n_seeds):
                chosen = [records[j] for j in draw_subset(len(records), size, opts.seed, i)]
                sub = task_results(chosen, layers=session.layers, metrics=session.metrics,
                                   hidden_size=session.lm.hidden_size, seed=opts.seed, load_skipped={}, n_resumed=0)
                cells = {m: sub.get(m) for m in session.metrics}
                subsets[task.name].append({"size": size, "seed_index": i, "doc_ids": [r["doc_id"] for r in chosen],
                                           "n_samples": sub["n_samples"], **cells})
                for m, v in cells.items():
                    values[m].append(v)
            row: dict[str, Any] = {"task": task.name, "size": size, "n_seeds": n_seeds}
            for m in session.metrics:
                mean, std = common.mean_std(values[m])
                row.update({f"{m}_mean": mean, f"{m}_std": std, f"{m}_full": entry.get(m)})
            rows.append(row)
    model = common.short_name(session.lm.name)
    plots = {("" if i == 0 else m): _plotter(rows, m, model) for i, m in enumerate(session.metrics)}
    return common.finish(session, "sampling", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"sizes": sizes, "n_seeds": n_seeds, "tasks": tasks}, plots=plots,
                         subsets=subsets)


def _plotter(rows: list[dict[str, Any]], metric: str, model: str):
    def draw(path):
        from ..report.plots import plot_series

        series, errors = {}, {}
        for task in dict.fromkeys(r["task"] for r in rows):
            mine = [r for r in rows if r["task"] == task]
            series[task] = ([r["size"] for r in mine], [r[f"{metric}_mean"] for r in mine])
            errors[task] = [r[f"{metric}_std"] for r in mine]
        plot_series(series, path, xlabel="documents per subset", ylabel=common.metric_label(metric),
                    title=f"{model}: {metric} of random subsets (mean ± std)", logx=True, errors=errors,
                    xticks=sorted({r["size"] for r in rows}))

    return draw
