"""How stable the metrics are on random subsets of a corpus (Wei et al. 2024 Table 7; Matrix Nuclear-Norm
Table 5: 10,000-document subsets under three seeds, and subsets of 15,000 and 20,000).

Every subset is drawn FRESH from the whole corpus of its task: all records of the hub split (the recipe's own
10,000-record sample is not applied), of the local file, or of the built-in data; with --limit N the corpus is
the records up to the N-th usable document. Subset i of size S is
random.Random(f"{sample_seed}:{S}:{i}").sample(range(n_records), S), with --sample_seed (default 1234, or 123
for the _reference recipes; separate from --seed), so subsets of different sizes or indices are independent
draws, not sub-subsets of one pool. A drawn record without usable text (e.g. empty) is dropped from its subset
(n_samples_min shows it). Sizes above the corpus are capped to the corpus (a warning says so; the JSON's
"capped" section records it), and a subset of the whole corpus is drawn once. --sample_size does not apply
(an error). The union of all subsets is measured once, through the engine like `run` (task "<task>", stored,
resumable, data-parallel), and each subset's values are aggregated from its documents' per-sample records
with the same function a run uses (matrixeval.results.task_results): exactly the numbers a run over only
that subset would report. Default --tasks: pydoc_topics (built in, 555 documents).

A progress bar counts the subsets as they are aggregated, and one line says when a size asks for far more
subsets than it needs (more than can differ, or more than 1,000: the std is then known to ±2 %).
--sizes takes SIZE or SIZE:N (N subsets of that size; --n_seeds otherwise), e.g. the papers' protocol:
  --tasks wikipedia --sizes 10000:3,15000:1,20000:1

Output columns (table .md/.csv next to sampling_<timestamp>.json, and the "table" key of the JSON):
  task            the task
  size            documents drawn per subset (after any cap)
  n_seeds         subsets drawn of that size
  n_samples_min   the fewest samples with a defined value in any of these subsets
  <metric>_mean   mean over the subsets of the metric's data-set value (e.g. matrix_entropy_mean)
  <metric>_std    standard deviation over the subsets (ddof=1; empty for a single subset)
The JSON's "subsets" section lists every subset: size, seed index, the seed string, its doc_ids and values;
"results" holds each task's values on the union of its subsets, and "corpus" the number of records drawn
from. Plot: <stem>.png, the first metric's mean ± std against subset size per task; further metrics in
<stem>_<metric>.png.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from ..data import DEFAULT_TASK, open_corpus, parse_task_specs, sample_seed_for
from ..errors import MatrixEvalError
from ..results import task_results
from . import _common as common

logger = logging.getLogger(__name__)

DESCRIPTION = ("mean and std of the metrics over fresh random subsets of several sizes "
               "(entropy paper Table 7, nuclear-norm paper Table 5)")
DEFAULT_SIZES = "10,50,100"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help=f"comma-separated subset sizes, SIZE or SIZE:N for N subsets (default: {DEFAULT_SIZES}); "
                             "sizes above the corpus are capped to it")
    parser.add_argument("--n_seeds", type=int, default=5, help="subsets drawn per size without :N (default: 5)")
    common.add_metrics_arg(parser)
    common.add_log_samples_arg(parser)


def run(args: argparse.Namespace) -> int:
    out = sampling_experiment(args.model_args, args.tasks, sizes=args.sizes, n_seeds=args.n_seeds,
                              metrics=args.metrics, **common.options_from_args(args))
    return common.print_report(out)


def draw_subset(n_records: int, size: int, seed: int, index: int) -> list[int]:
    """Positions (sorted) of subset `index` of `size` records out of `n_records`, for `seed`."""
    return sorted(random.Random(f"{seed}:{size}:{index}").sample(range(n_records), size))


def parse_sizes(sizes: str | Sequence, n_seeds: int) -> list[tuple[int, int]]:
    """``"10000:3,15000"`` → ``[(10000, 3), (15000, n_seeds)]``, sorted by size; duplicates are an error."""
    if not isinstance(n_seeds, int) or isinstance(n_seeds, bool) or n_seeds < 1:
        raise MatrixEvalError(f"n_seeds must be a positive integer, got {n_seeds!r}")
    out: dict[int, int] = {}
    for item in common.parse_list(sizes, str, "sizes"):
        size, _, count = str(item).partition(":")
        try:
            pair = int(size), int(count) if count else n_seeds
        except ValueError:
            raise MatrixEvalError(f"sizes must be SIZE or SIZE:N with positive integers, got {item!r}") from None
        if pair[0] < 1 or pair[1] < 1:
            raise MatrixEvalError(f"sizes must be SIZE or SIZE:N with positive integers, got {item!r}")
        if pair[0] in out:
            raise MatrixEvalError(f"size {pair[0]} is given twice in --sizes; give each size once "
                                  "(SIZE:N for N subsets)")
        out[pair[0]] = pair[1]
    return sorted(out.items())


def sampling_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    sizes: str | Sequence = DEFAULT_SIZES,
    n_seeds: int = 5,
    metrics: str | Sequence[str] | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Draw fresh subsets of every size from each task's whole corpus, measure their union once and aggregate
    each subset; see the module docstring.

    Returns the results dict (``results[task]`` on the union, ``table``, ``subsets``, ``capped``) on rank 0,
    None elsewhere.
    """
    opts = common.options(common_options)
    plan = parse_sizes(sizes, n_seeds)
    if opts.sample_size is not None:
        raise MatrixEvalError("experiment sampling draws its own subsets (--sizes) from the whole corpus; "
                              "drop --sample_size")
    # Data first (a bad file or a missing hub data set fails before a large model loads), and every draw too.
    specs = parse_task_specs(DEFAULT_TASK if tasks is None else tasks, opts.include_path)
    prepared, capped, seeds = [], {}, {}
    for spec in specs:
        corpus = open_corpus(spec, text_field=opts.text_field, txt_split=opts.txt_split, limit=opts.limit,
                             on_error=opts.on_error)
        seed = sample_seed_for(corpus.recipe, opts.sample_seed)
        seeds[spec.name] = seed
        task_plan = _capped(plan, len(corpus), spec.name, capped)
        _say_if_far_too_many(task_plan, len(corpus), spec.name)
        draws = [(size, i, draw_subset(len(corpus), size, seed, i)) for size, count in task_plan for i in range(count)]
        union = corpus.take(j for *_, chosen in draws for j in chosen)
        if not union.documents:
            raise MatrixEvalError(f"no drawn record of task {spec.name!r} has usable text; "
                                  "check the data or --text_field")
        prepared.append((union, len(corpus), draws, seed))
    session = common.open_session(model_args, metrics, opts)
    results: dict[str, Any] = {}
    per_sample: dict[str, list] = {}
    subsets: dict[str, list[dict[str, Any]]] = {}
    rows: list[dict[str, Any]] = []
    for task, n_corpus, draws, seed in prepared:
        entry, records = session.run(task.name, task.documents, load_skipped=task.skipped, source=task.source)
        if entry is None:
            continue
        results[task.name], per_sample[task.name] = entry, records
        by_id = {r["doc_id"]: r for r in records}
        subsets[task.name] = []
        bar = tqdm(draws, desc=f"{task.name}: subsets", unit="subset", leave=False,
                   disable=len(draws) < 2 or os.environ.get("TQDM_DISABLE") == "1")
        for size, i, chosen in bar:
            mine = [by_id[j] for j in chosen if j in by_id]
            sub = task_results(mine, layers=session.layers, metrics=session.metrics, hidden_size=session.lm.hidden_size,
                               seed=opts.seed, load_skipped={}, n_resumed=0) if mine else {"n_samples": 0}
            subsets[task.name].append({"size": size, "seed_index": i, "seed": f"{seed}:{size}:{i}", "doc_ids": chosen,
                                       "n_samples": sub["n_samples"], **{m: sub.get(m) for m in session.metrics}})
        for size in dict.fromkeys(size for size, *_ in draws):
            mine = [s for s in subsets[task.name] if s["size"] == size]
            row: dict[str, Any] = {"task": task.name, "size": size, "n_seeds": len(mine),
                                   "n_samples_min": min(s["n_samples"] for s in mine)}
            for m in session.metrics:
                mean, std = common.mean_std([s[m] for s in mine])
                row.update({f"{m}_mean": mean, f"{m}_std": std})
            rows.append(row)
    model = common.short_name(session.lm.name)
    plots = {("" if i == 0 else m): _plotter(rows, m, model) for i, m in enumerate(session.metrics)}
    return common.finish(session, "sampling", results, rows, opts=opts, per_sample=per_sample,
                         extra_config={"sizes": [list(p) for p in plan], "n_seeds": n_seeds, "tasks": tasks,
                                       "sample_seeds": seeds},
                         plots=plots, subsets=subsets, capped=capped,
                         corpus={task.name: n for task, n, *_ in prepared})


def _capped(plan: list[tuple[int, int]], n_records: int, task: str, capped: dict) -> list[tuple[int, int]]:
    """The plan with sizes above the corpus capped to it, noted in `capped`; a subset of the whole corpus is drawn
    once (every draw would be the same documents)."""
    out: dict[int, int] = {}
    for size, count in plan:
        if size > n_records:
            capped.setdefault(task, {})[str(size)] = n_records
            logger.warning("task %s: subset size %d exceeds its corpus of %d records; using %d (the whole corpus, one "
                           "subset)", task, size, n_records, n_records)
            size = n_records
        out[size] = 1 if size == n_records else max(out.get(size, 0), count)
    return sorted(out.items())


ENOUGH_SUBSETS = 1000  # the std over N subsets is known to about 1/sqrt(2(N-1)): ±2 % at 1,000


def _say_if_far_too_many(plan: list[tuple[int, int]], n_records: int, task: str) -> None:
    """One line when a size asks for far more subsets than can differ or than its std needs."""
    notes = []
    for size, count in plan:
        distinct = math.comb(n_records, size)
        if count > distinct:
            notes.append(f"{count:,} subsets of {size} from {n_records:,} records, but only {distinct:,} distinct "
                         "ones exist (draws repeat)")
        elif count > ENOUGH_SUBSETS:
            notes.append(f"{count:,} subsets of {size}: the std is known to ±{1 / math.sqrt(2 * (count - 1)):.1%} "
                         f"already at {ENOUGH_SUBSETS:,} subsets ±{1 / math.sqrt(2 * (ENOUGH_SUBSETS - 1)):.1%}")
    if notes:
        logger.warning("task %s: far more than needed: %s; each subset is aggregated (a progress bar shows them)",
                       task, "; ".join(notes))


def _plotter(rows: list[dict[str, Any]], metric: str, model: str):
    def draw(path):
        from ..report.plots import plot_series

        series, errors, counts = {}, {}, {}
        for task in dict.fromkeys(r["task"] for r in rows):
            mine = [r for r in rows if r["task"] == task]
            series[task] = ([r["size"] for r in mine], [r[f"{metric}_mean"] for r in mine])
            errors[task] = [r[f"{metric}_std"] for r in mine]
            counts[task] = [r["n_seeds"] for r in mine]
        plot_series(series, path, xlabel="documents per subset", ylabel=common.metric_label(metric),
                    title=f"{model}: {metric} of random subsets (mean ± std)", logx=True, errors=errors,
                    xticks=sorted({r["size"] for r in rows}), counts=counts,
                    error_label="error bars: ± 1 std over the subsets (ddof=1); n = subsets per point")

    return draw
