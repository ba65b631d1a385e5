"""Time of matrix entropy as the reference code computes it, of matrixeval's exact entropy and of the Matrix
Nuclear-Norm, on the same hidden states (Matrix Nuclear-Norm Tables 1 and 6).

The model is loaded like `run`; the last requested layer's hidden states of the first --limit documents
(default 32) are captured one document at a time (batch size 1, no padding, truncated at --max_length) and
kept. Then, on those very tensors, each method runs once per document, timed with time.perf_counter (CUDA
synchronised), best of --repeats passes:
  reference       the papers' formulation: centre, L2-normalise tokens, d×d covariance, full float32
                  torch.svd, entropy / log d, per document
  matrix_entropy  matrixeval.matrix_entropy (float64 eigensolver on the smaller Gram matrix)
  nuclear_norm    matrixeval.matrix_nuclear_norm, the paper's column-norm approximation (no SVD)
Nothing is stored: this experiment measures time, not data. With --exclude_bos a leading special token is
left out, as in a run.

Output columns (table .md/.csv next to timing_<timestamp>.json, and the "table" key of the JSON):
  task                      the task
  n_docs                    documents timed
  mean_tokens               mean tokens per document
  hidden_size               d
  reference_s               total seconds of the reference formulation over all documents
  matrix_entropy_s          total seconds of matrixeval's exact entropy
  nuclear_norm_s            total seconds of the nuclear-norm approximation
  reference_over_entropy    reference_s / matrix_entropy_s (how much faster matrixeval's exact entropy is)
  reference_over_nuclear    reference_s / nuclear_norm_s (the papers' speed-up of MNN over matrix entropy)
  entropy_over_nuclear      matrix_entropy_s / nuclear_norm_s
  max_abs_diff              largest |reference − matrix_entropy| over the documents (same normalisation)
  matrix_entropy            mean matrix entropy of the documents (lower is better)
  nuclear_norm              mean Matrix Nuclear-Norm of the documents (higher is better)
Plot: <stem>.png, seconds of each method per task.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..engine.batching import encode
from ..errors import MatrixEvalError
from ..metrics import matrix_entropy, matrix_nuclear_norm
from ..models import forward
from . import _common as common

DESCRIPTION = "seconds of reference matrix entropy vs matrixeval's entropy vs nuclear norm (seed 003 Tables 1, 6)"
DEFAULT_DOCS = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=1,
                        help="time each method this many times, keep the best (default: 1)")


def run(args: argparse.Namespace) -> int:
    out = timing_experiment(args.model_args, args.tasks, repeats=args.repeats, **common.options_from_args(args))
    return common.print_report(out)


def reference_entropy(h: torch.Tensor) -> float:
    """Matrix entropy as the reference code computes it: d×d covariance, full float32 SVD, per sample."""
    r = h.float()
    r = r - r.mean(dim=0)
    z = torch.nn.functional.normalize(r, dim=1)
    a = z.T @ z / z.shape[0]
    eig = torch.svd(a / torch.trace(a))[1]
    return float(-(eig * torch.log(eig)).nansum() / math.log(a.shape[0]))


def timing_experiment(
    model_args: str | Mapping[str, Any] | None = None,
    tasks: str | Sequence[str] | None = None,
    *,
    repeats: int = 1,
    **common_options: Any,
) -> dict[str, Any] | None:
    """Time the three computations on the same hidden states; see the module docstring.

    Returns the results dict (``results[task]`` = the task's timing row, ``table``) on rank 0, None elsewhere.
    """
    opts = common.options(common_options)
    if not isinstance(repeats, int) or repeats < 1:
        raise MatrixEvalError(f"repeats must be a positive integer, got {repeats!r}")
    if opts.limit is None:
        opts = dataclasses.replace(opts, limit=DEFAULT_DOCS)
    session = common.open_session(model_args, "matrix_entropy,nuclear_norm", opts)
    rows: list[dict[str, Any]] = []
    if session.world.is_main:  # a timing, not a data-parallel measurement: rank 0 does it all
        for task in common.load_tasks(tasks, opts):
            hidden = _hidden_states(session, task.documents, opts.exclude_bos)
            if not hidden:
                raise MatrixEvalError(f"task {task.name!r} has no document with 2+ tokens to time; use longer texts")
            rows.append({"task": task.name, **_time_methods(hidden, repeats, session.lm.device)})
    results = {r["task"]: {k: v for k, v in r.items() if k != "task"} for r in rows}
    model = common.short_name(session.lm.name)
    return common.finish(session, "timing", results, rows, opts=opts, plots={"": _plotter(rows, model)},
                         extra_config={"repeats": repeats, "tasks": tasks, "threads": torch.get_num_threads()})


def _plotter(rows: list[dict[str, Any]], model: str):
    def draw(path):
        from ..report.plots import plot_bars

        groups = {r["task"]: {"reference (d×d SVD)": r["reference_s"], "matrix_entropy": r["matrix_entropy_s"],
                              "nuclear_norm": r["nuclear_norm_s"]} for r in rows}
        plot_bars(groups, path, ylabel="seconds, all documents (lower is faster)", title=f"{model}: time per method")

    return draw


def _hidden_states(session, documents, exclude_bos: bool) -> list[torch.Tensor]:
    """(N, d) hidden states of the last requested layer, one per document with at least 2 tokens."""
    lm, layer = session.lm, max(session.layers)
    special = set(lm.tokenizer.all_special_ids)
    out = []
    for item in encode(lm.tokenizer, documents, session.max_length):
        ids = list(item.input_ids)
        ids_t = torch.tensor([ids], dtype=torch.long)
        h = forward(lm, ids_t, torch.ones_like(ids_t), [layer], need_loss=False).hidden[layer][0]
        if exclude_bos and ids and ids[0] in special:
            h = h[1:]
        if h.shape[0] >= 2:
            out.append(h.clone())
    return out


def _time_methods(hidden: list[torch.Tensor], repeats: int, device: torch.device) -> dict[str, Any]:
    ref_values = [reference_entropy(h) for h in hidden]  # warm-up, and the values compared below
    ours_values = [float(matrix_entropy(h)) for h in hidden]
    mnn_values = [float(matrix_nuclear_norm(h)) for h in hidden]
    seconds = {
        "reference_s": _best(lambda: [reference_entropy(h) for h in hidden], repeats, device),
        "matrix_entropy_s": _best(lambda: [matrix_entropy(h) for h in hidden], repeats, device),
        "nuclear_norm_s": _best(lambda: [matrix_nuclear_norm(h) for h in hidden], repeats, device),
    }
    diffs = [abs(a - b) for a, b in zip(ref_values, ours_values) if math.isfinite(a) and math.isfinite(b)]
    return {
        "n_docs": len(hidden),
        "mean_tokens": sum(h.shape[0] for h in hidden) / len(hidden),
        "hidden_size": int(hidden[0].shape[1]),
        **seconds,
        "reference_over_entropy": _ratio(seconds["reference_s"], seconds["matrix_entropy_s"]),
        "reference_over_nuclear": _ratio(seconds["reference_s"], seconds["nuclear_norm_s"]),
        "entropy_over_nuclear": _ratio(seconds["matrix_entropy_s"], seconds["nuclear_norm_s"]),
        "max_abs_diff": max(diffs) if diffs else math.nan,
        "matrix_entropy": _mean(ours_values),
        "nuclear_norm": _mean(mnn_values),
    }


def _best(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
