"""Time of matrix entropy as the reference code computes it, of matrixeval's exact entropy and of the Matrix
Nuclear-Norm: on the same hidden states and, with --end_to_end, over whole pipelines (Matrix Nuclear-Norm Tables
1 and 6).

The model is loaded like `run`; the last requested layer's hidden states of the first --limit documents of each
task (default 32; default task pydoc_topics) are captured one document at a time (batch size 1, no padding,
truncated at --max_length, default 2048 and the model's own limit) and kept. Then, on those very tensors, each
method runs once per document, timed with time.perf_counter (CUDA synchronised), --repeats passes (default 3;
the fastest is reported, with the spread (slowest − fastest) / fastest; above 20 %, ``--caveat
max_timing_spread=F``, the task gets the ``timing_spread`` warning, also written on the plot). Every contender
runs with the same number of torch threads, --threads (default: torch's current setting), pinned for the whole
experiment and recorded in the config:
  reference       the papers' formulation: centre, L2-normalise tokens, d×d covariance, full float32
                  torch.svd, entropy / log d, per document
  matrix_entropy  matrixeval.matrix_entropy (float64 eigensolver on the smaller Gram matrix)
  nuclear_norm    matrixeval.matrix_nuclear_norm, the paper's column-norm approximation (no SVD)
Nothing is stored: this experiment measures time, not data. With --exclude_bos a leading special token is
left out, as in a run.

--end_to_end also times three whole pipelines over the same documents (those with 2+ tokens), each from
loading the model to the last metric (the documents are read once beforehand, untimed), as the paper's hours
are; the three alternate in each of the --repeats rounds and each keeps its best:
  reference entropy  the reference code (MLGroupJLU/MatrixNuclearNorm, code/compute_entropy_time.py):
                     AutoModel.from_pretrained and its tokenizer, each document tokenised alone (truncated at
                     the same max_length), one forward per document (batch 1, no padding), the final hidden
                     states through the d×d float32 SVD above
  reference nuclear  the same pipeline with the Matrix Nuclear-Norm approximation instead of the SVD
                     (code/compute_mnn_time.py; it divides by len(id(0)), which would raise, read here as
                     the token count)
  matrixeval         `matrixeval run` through the normal Session and engine (batching by --batch_size,
                     default 8, a durable store in a fresh temporary folder, aggregation), final layer,
                     computing both exactly: matrix_entropy and nuclear_norm_exact
The model loads with the same --model_args (dtype, revision) in all three, on the same device.

Output columns (table .md/.csv next to timing_<timestamp>.json, and the "table" key of the JSON):
  task                      the task
  n_docs                    documents timed
  mean_tokens               mean tokens per document
  hidden_size               d
  reference_s               total seconds of the reference formulation over all documents
  matrix_entropy_s          total seconds of matrixeval's exact entropy
  nuclear_norm_s            total seconds of the nuclear-norm approximation
  <method>_spread           (slowest − fastest) / fastest of that method's repeats (reference, matrix_entropy,
                            nuclear_norm; end_to_end_* too)
  reference_over_entropy    reference_s / matrix_entropy_s (how much faster matrixeval's exact entropy is)
  reference_over_nuclear    reference_s / nuclear_norm_s (the papers' speed-up of MNN over matrix entropy)
  entropy_over_nuclear      matrix_entropy_s / nuclear_norm_s
  max_abs_diff              largest |reference − matrix_entropy| over the documents (same normalisation)
  matrix_entropy            mean matrix entropy of the documents (lower is better)
  nuclear_norm              mean Matrix Nuclear-Norm of the documents (lower is better)
With --end_to_end, also:
  end_to_end_reference_entropy_s   seconds of the reference entropy pipeline
  end_to_end_reference_nuclear_s   seconds of the reference nuclear-norm pipeline
  end_to_end_matrixeval_s          seconds of matrixeval computing the exact entropy and nuclear norm
  end_to_end_entropy_over_nuclear  reference entropy / reference nuclear (the paper's end-to-end speed-up)
  end_to_end_entropy_over_matrixeval  reference entropy / matrixeval
  end_to_end_nuclear_over_matrixeval  reference nuclear / matrixeval (above 1: matrixeval's exact values come
                                   faster than the reference's approximation)
  end_to_end_max_abs_diff          largest |reference pipeline's entropy − matrixeval's| over the documents
Plot: <stem>.png, seconds of each method per task on a log axis (the end-to-end pipelines too, with
--end_to_end): bars the fastest repeat, whiskers up to the slowest.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..caveats import report as report_caveats
from ..caveats import timing_spread
from ..data import Document
from ..engine.batching import encode
from ..errors import MatrixEvalError
from ..metrics import matrix_entropy, matrix_nuclear_norm
from ..models import forward
from ..session import Session
from . import _common as common

DESCRIPTION = ("seconds of reference matrix entropy vs matrixeval's entropy vs nuclear norm, per metric and "
               "end to end (nuclear-norm paper Tables 1, 6)")
DEFAULT_DOCS = 32
DEFAULT_REPEATS = 3
END_TO_END_METRICS = "matrix_entropy,nuclear_norm_exact"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"time each method this many times, report the fastest and the spread (default: "
                             f"{DEFAULT_REPEATS})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for every contender, pinned for the whole experiment (default: torch's "
                             "current setting)")
    parser.add_argument("--end_to_end", action="store_true",
                        help="also time the reference pipelines and `matrixeval run` from model load to the last "
                             "metric (default: off)")
    common.set_help(parser, "--limit", f"time the first N documents of each task (default: {DEFAULT_DOCS})")


def run(args: argparse.Namespace) -> int:
    out = timing_experiment(args.model_args, args.tasks, repeats=args.repeats, end_to_end=args.end_to_end,
                            threads=args.threads, **common.options_from_args(args))
    return common.print_report(out)


def reference_entropy(h: torch.Tensor) -> float:
    """Matrix entropy as the reference code computes it: d×d covariance, full float32 SVD, per sample."""
    r = h.float()
    r = r - r.mean(dim=0)
    z = torch.nn.functional.normalize(r, dim=1)
    a = z.T @ z / z.shape[0]
    eig = torch.svd(a / torch.trace(a))[1]
    return float(-(eig * torch.log(eig)).nansum() / math.log(a.shape[0]))


def reference_nuclear_norm(h: torch.Tensor) -> float:
    """Matrix Nuclear-Norm as the reference code computes it: centre, L2-normalise tokens, the largest
    min(N, d) column norms summed, divided by N (float32)."""
    r = h.float()
    r = r - r.mean(dim=0)
    r = r / torch.norm(r, p=2, dim=1, keepdim=True)
    norms = torch.sort(torch.sqrt(torch.sum(r**2, dim=0)), descending=True).values
    return float(norms[: min(r.shape)].sum()) / r.shape[0]


def timing_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    repeats: int = DEFAULT_REPEATS,
    end_to_end: bool = False,
    threads: int | None = None,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Time the three computations on the same hidden states and, with `end_to_end`, the three pipelines over
    the same documents; see the module docstring.

    Returns the results dict (``results[task]`` = the task's timing row, ``table``) on rank 0, None elsewhere.
    With `end_to_end`, ``end_to_end_values[task]`` holds each document's entropy from the reference pipeline
    and from matrixeval.
    """
    opts = common.options(common_options)
    if not isinstance(repeats, int) or repeats < 1:
        raise MatrixEvalError(f"repeats must be a positive integer, got {repeats!r}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise MatrixEvalError(f"threads must be a positive integer, got {threads!r}")
    if opts.min_tokens is not None or opts.fixed_tokens is not None:
        raise MatrixEvalError("experiment timing times the documents as they are read (truncated at --max_length); "
                              "--min_tokens and --fixed_tokens do not apply: pick the documents with --tasks/--limit")
    if opts.limit is None:
        opts = dataclasses.replace(opts, limit=DEFAULT_DOCS)
    before = torch.get_num_threads()
    threads = threads or before
    torch.set_num_threads(threads)  # the same for every contender, the model load and pipelines included
    try:
        return _timing(model_args, tasks, repeats, end_to_end, threads, opts)
    finally:
        torch.set_num_threads(before)


def _timing(model_args, tasks, repeats: int, end_to_end: bool, threads: int, opts) -> dict[str, Any] | None:
    session = common.open_session(model_args, "matrix_entropy,nuclear_norm", opts)
    if end_to_end and session.world.size > 1:
        raise MatrixEvalError("--end_to_end times whole pipelines in one process; run it without torchrun")
    rows: list[dict[str, Any]] = []
    values: dict[str, dict[str, list]] = {}
    times: dict[str, dict[str, list[float]]] = {}
    if session.world.is_main:  # a timing, not a data-parallel measurement: rank 0 does it all
        for task in common.load_tasks(tasks, opts):
            hidden, docs = _hidden_states(session, task.documents, opts.exclude_bos)
            if not hidden:
                raise MatrixEvalError(f"task {task.name!r} has no document with 2+ tokens to time; use longer texts")
            repeats_s: dict[str, list[float]] = {}
            row = {"task": task.name, **_time_methods(hidden, repeats, session.lm.device, repeats_s)}
            if end_to_end:
                cells, values[task.name] = _time_pipelines(session, model_args, task.name, docs, repeats, opts,
                                                           repeats_s)
                row.update(cells)
            if torch.get_num_threads() != threads:
                raise MatrixEvalError(f"torch threads changed from {threads} to {torch.get_num_threads()} while timing; "
                                      "the contenders are not comparable: pass --threads")
            rows.append(row)
            times[task.name] = repeats_s
    results = {r["task"]: {k: v for k, v in r.items() if k != "task"} for r in rows}
    for task, repeats_s in times.items():
        report_caveats(results[task], task,
                       [timing_spread(method, seconds, opts.thresholds) for method, seconds in repeats_s.items()])
    model = common.short_name(session.lm.name)
    from ..report.plots import caveat_notes

    notes = caveat_notes(results, ["timing_spread"])
    return common.finish(session, "timing", results, rows, opts=opts,
                         plots={"": _plotter(rows, model, times, repeats, threads, notes)},
                         extra_config={"repeats": repeats, "tasks": tasks, "threads": threads,
                                       "interop_threads": torch.get_num_interop_threads(),
                                       "end_to_end": end_to_end},
                         repeat_seconds=times,
                         **({"end_to_end_values": values} if end_to_end else {}))


_PLOTTED = {"reference_s": "reference (d×d SVD)", "matrix_entropy_s": "matrix_entropy", "nuclear_norm_s": "nuclear_norm",
            "end_to_end_reference_entropy_s": "end to end: reference entropy",
            "end_to_end_reference_nuclear_s": "end to end: reference nuclear",
            "end_to_end_matrixeval_s": "end to end: matrixeval (exact)"}


def _plotter(rows: list[dict[str, Any]], model: str, times: Mapping[str, Mapping[str, list[float]]], repeats: int,
             threads: int, notes: Sequence[str]):
    def draw(path):
        from ..report.plots import plot_bars

        groups: dict[str, dict[str, float]] = {}
        errors: dict[str, dict[str, tuple[float, float]]] = {}
        for r in rows:
            for column, label in _PLOTTED.items():
                if column in r:
                    groups.setdefault(r["task"], {})[label] = r[column]
                    seconds = times.get(r["task"], {}).get(column.removesuffix("_s"), [])
                    if seconds:
                        errors.setdefault(r["task"], {})[label] = (min(seconds), max(seconds))
        plot_bars(groups, path, ylabel="seconds, all documents (log scale; lower is faster)",
                  title=f"{model}: time per method", errors=errors, logy=True, legend_inside=True, notes=notes,
                  error_label=f"Bars: fastest of {repeats} repeats; whiskers: from the fastest to the slowest repeat. "
                              f"torch threads: {threads}, the same for every method.")

    return draw


def _hidden_states(session, documents, exclude_bos: bool) -> tuple[list[torch.Tensor], list[Document]]:
    """(N, d) hidden states of the last requested layer, one per document with at least 2 tokens, and those
    documents."""
    lm, layer = session.lm, max(session.layers)
    special = set(lm.tokenizer.all_special_ids)
    out, kept = [], []
    for doc, item in zip(documents, encode(lm.tokenizer, documents, session.max_length)):
        ids = list(item.input_ids)
        ids_t = torch.tensor([ids], dtype=torch.long)
        h = forward(lm, ids_t, torch.ones_like(ids_t), [layer], need_loss=False).hidden[layer][0]
        if exclude_bos and ids and ids[0] in special:
            h = h[1:]
        if h.shape[0] >= 2:
            out.append(h.clone())
            kept.append(doc)
    return out, kept


def _time_pipelines(session, model_args, name: str, docs: list[Document], repeats: int, opts,
                    repeats_s: dict[str, list[float]]) -> tuple[dict, dict]:
    """Seconds of the two reference pipelines and of matrixeval over `docs`, alternating, best of `repeats`
    (every repeat's seconds go into `repeats_s`, under ``end_to_end_<arm>``)."""
    lm = session.lm
    texts = [d.text for d in docs]
    best = {"reference_entropy": math.inf, "reference_nuclear": math.inf, "matrixeval": math.inf}
    values: dict[str, list] = {}
    for _ in range(repeats):
        for arm in best:
            _sync(lm.device)
            t0 = time.perf_counter()
            if arm == "matrixeval":
                with tempfile.TemporaryDirectory(prefix="matrixeval-timing-") as store:
                    values[arm] = _matrixeval_pipeline(model_args, name, docs, opts, str(lm.device), store)
            else:
                values[arm] = _reference_pipeline(lm.args, texts, session.max_length, lm.device, opts.exclude_bos,
                                                  reference_entropy if arm == "reference_entropy"
                                                  else reference_nuclear_norm)
            _sync(lm.device)
            elapsed = time.perf_counter() - t0
            repeats_s.setdefault(f"end_to_end_{arm}", []).append(elapsed)
            best[arm] = min(best[arm], elapsed)
    ref, ours = values["reference_entropy"], values["matrixeval"]
    diffs = [abs(a - b) for a, b in zip(ref, ours) if math.isfinite(a) and math.isfinite(b)]
    cells = {
        "end_to_end_reference_entropy_s": best["reference_entropy"],
        "end_to_end_reference_nuclear_s": best["reference_nuclear"],
        "end_to_end_matrixeval_s": best["matrixeval"],
        "end_to_end_entropy_over_nuclear": _ratio(best["reference_entropy"], best["reference_nuclear"]),
        "end_to_end_entropy_over_matrixeval": _ratio(best["reference_entropy"], best["matrixeval"]),
        "end_to_end_nuclear_over_matrixeval": _ratio(best["reference_nuclear"], best["matrixeval"]),
        "end_to_end_max_abs_diff": max(diffs) if diffs else math.nan,
        **{f"end_to_end_{arm}_spread": _spread(repeats_s[f"end_to_end_{arm}"]) for arm in best},
    }
    return cells, {"doc_id": [d.doc_id for d in docs], "reference_entropy": ref, "matrixeval_entropy": ours}


def _reference_pipeline(args, texts: list[str], max_length: int, device: torch.device, exclude_bos: bool,
                        metric: Callable[[torch.Tensor], float]) -> list[float]:
    """The reference code's loop: load, tokenise each text alone, one forward per text, the metric per text."""
    from transformers import AutoModel, AutoTokenizer

    from ..models.loading import dtype_key

    dtype = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
    model = AutoModel.from_pretrained(args.pretrained, revision=args.revision, trust_remote_code=args.trust_remote_code,
                                      **{dtype_key(): dtype}).eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(args.pretrained, revision=args.revision,
                                              trust_remote_code=args.trust_remote_code)
    input_ids = [tokenizer(t, return_tensors="pt", truncation=True, max_length=max_length).input_ids for t in texts]
    special = set(tokenizer.all_special_ids)
    out = []
    for ids in input_ids:
        with torch.no_grad():
            r = model(ids.to(device))[0][0, :, :]
            if exclude_bos and int(ids[0, 0]) in special:
                r = r[1:]
            out.append(metric(r))
        if device.type == "cuda":
            torch.cuda.empty_cache()  # as the reference loop does after every document
    del model
    return out


def _matrixeval_pipeline(model_args, name: str, docs: list[Document], opts, device: str, store: str) -> list[float]:
    """`matrixeval run` on `docs`: load through Session, measure through the engine; each document's entropy."""
    session = Session(model_args, metrics=END_TO_END_METRICS, layers="last", batch_size=opts.batch_size,
                      max_length=opts.max_length, seed=opts.seed, device=device, output_path=None, store=store,
                      exclude_bos=opts.exclude_bos)
    entry, records = session.run(name, docs)
    layer = str(max(session.layers))
    by_id = {r["doc_id"]: r["layers"][layer]["matrix_entropy"] for r in records}
    return [by_id[d.doc_id] for d in docs]


def _time_methods(hidden: list[torch.Tensor], repeats: int, device: torch.device,
                  repeats_s: dict[str, list[float]]) -> dict[str, Any]:
    ref_values = [reference_entropy(h) for h in hidden]  # warm-up, and the values compared below
    ours_values = [float(matrix_entropy(h)) for h in hidden]
    mnn_values = [float(matrix_nuclear_norm(h)) for h in hidden]
    repeats_s["reference"] = _repeat(lambda: [reference_entropy(h) for h in hidden], repeats, device)
    repeats_s["matrix_entropy"] = _repeat(lambda: [matrix_entropy(h) for h in hidden], repeats, device)
    repeats_s["nuclear_norm"] = _repeat(lambda: [matrix_nuclear_norm(h) for h in hidden], repeats, device)
    seconds = {f"{m}_s": min(repeats_s[m]) for m in ("reference", "matrix_entropy", "nuclear_norm")}
    diffs = [abs(a - b) for a, b in zip(ref_values, ours_values) if math.isfinite(a) and math.isfinite(b)]
    return {
        "n_docs": len(hidden),
        "mean_tokens": sum(h.shape[0] for h in hidden) / len(hidden),
        "hidden_size": int(hidden[0].shape[1]),
        **seconds,
        **{f"{m}_spread": _spread(repeats_s[m]) for m in ("reference", "matrix_entropy", "nuclear_norm")},
        "reference_over_entropy": _ratio(seconds["reference_s"], seconds["matrix_entropy_s"]),
        "reference_over_nuclear": _ratio(seconds["reference_s"], seconds["nuclear_norm_s"]),
        "entropy_over_nuclear": _ratio(seconds["matrix_entropy_s"], seconds["nuclear_norm_s"]),
        "max_abs_diff": max(diffs) if diffs else math.nan,
        "matrix_entropy": _mean(ours_values),
        "nuclear_norm": _mean(mnn_values),
    }


def _repeat(fn: Callable[[], Any], repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of `repeats` calls of `fn` (CUDA synchronised around each)."""
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def _spread(seconds: Sequence[float]) -> float:
    """(slowest − fastest) / fastest; NaN for one repeat."""
    return (max(seconds) - min(seconds)) / min(seconds) if len(seconds) > 1 and min(seconds) > 0 else math.nan


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
