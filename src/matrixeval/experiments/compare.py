"""Compare models from their results files: every metric side by side, scaling fits, a ranking and the
correlation with accuracy (Wei et al. 2024 Tables 1, 8, 9; Matrix Nuclear-Norm Table 4).

Reads results JSON files written by `matrixeval run` or an experiment (one per model); recomputes nothing.
  table         one row per model and task: the model, its --x (default n_params, from the file's config;
                n_params_non_embedding = parameters without the embeddings, Kaplan's N), the task, n_samples
                and every metric (the CSV also has standard errors and 95% intervals)
  --fit powerlaw  per metric and task, the least-squares fit metric = L0 + k·x^α across models (scipy):
                L0 the asymptote, k the scale, alpha the exponent, each with its standard error from the fit's
                covariance (L0_stderr, k_stderr, alpha_stderr), r2 the coefficient of determination, n the
                models fitted; "note" says when a fit is ill-posed (fewer than 4 models, constant values, no
                convergence, ...; then L0, k, alpha may be NaN) or means little (R² < 0.9, |alpha| > 2,
                |log10 k| > 30, a standard error above its value)
  --plot PNG    the --plot_metric (default: the first of --metrics) against x on a log axis, one series per
                task, with the fitted curve when --fit is given; a folder (existing, or ending in /) gets
                FOLDER/<output stem name>.png
  --rank METRIC models ranked by METRIC, best first (rank 1): within --task, or over the tasks every model
                has: by default by the metric's mean over them ("average", the Matrix Nuclear-Norm paper's
                Table 4 "Avg Score"), with each task's value; --rank_by mean_rank ranks by the mean of the
                per-task ranks instead. Direction: matrixeval's own for its metrics (nuclear_norm: lower is
                better), else the files' higher_is_better; --higher_is_better METRIC=true|false overrides
  correlations  when the files hold "accuracy" (e.g. from `experiment benchmark`): Spearman and Kendall
                correlation of each metric with accuracy across models, per task (spearman, spearman_p,
                kendall, kendall_p, n models; "note" says when undefined)
  --by_layer    layer profiles overlaid: every per-layer metric (of --metrics) against relative depth
                (layer / num_layers, so models of different depth line up), one line per model, 95% bands;
                rows model, task, layer, relative_depth, <metric>, _stderr, _lo, _hi (the 95% interval), from
                each file's by_layer (run with --layers all)
Files: STEM.md (every table), STEM.csv (the table), STEM_fit.csv, STEM_rank.csv, STEM_correlations.csv,
STEM_by_layer.csv and .png, and STEM.json (all of them), STEM from --output (default results/compare_<timestamp>).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..engine.files import write_text_atomic
from ..errors import MatrixEvalError

DESCRIPTION = "compare results files across models: metric table, power-law fits, plot, ranking, correlations"
SHARED_ARGS = False
ACCURACY = ("accuracy", "acc_norm")
DUPLICATES = ("keep-newest", "error", "keep-all")  # as matrixeval.report.compare.DUPLICATES
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
RANK_BY = ("mean", "mean_rank")  # as matrixeval.report.compare.RANK_BY, without importing scipy to build --help


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS.json", help="results files, one per model run")
    parser.add_argument("--x", default="n_params",
                        help="numeric config key to order, fit and plot by, e.g. n_params_non_embedding "
                             "(default: n_params)")
    parser.add_argument("--fit", choices=("powerlaw",), default=None,
                        help="fit metric = L0 + k·x^alpha per metric and task")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metrics to fit, plot and correlate (default: every metric the files "
                             "declare in higher_is_better, accuracy excluded)")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="draw the plot metric against x (log x) to this file; a folder (existing, or ending "
                             "in /) gets FOLDER/<output stem name>.png")
    parser.add_argument("--plot_metric", default=None, help="metric to plot (default: the first of --metrics)")
    parser.add_argument("--rank", default=None, metavar="METRIC", help="rank the models by this metric")
    parser.add_argument("--task", default=None, help="rank within this task (default: over the tasks every model has)")
    parser.add_argument("--rank_by", choices=RANK_BY, default="mean",
                        help="across tasks: 'mean' ranks by the metric's mean over the tasks (the paper's Avg Score), "
                             "'mean_rank' by the mean of per-task ranks (default: mean)")
    parser.add_argument("--higher_is_better", action="append", default=None, metavar="METRIC=true|false",
                        help="direction of a metric for --rank (repeat or comma-separate; default: matrixeval's "
                             "own for its metrics, else the files' higher_is_better)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="resamples of the paired bootstrap behind every ranking's 95%% rank intervals and "
                             "neighbour flip rates (over the documents all models share, from the files' samples; "
                             "0: none; default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the ranking bootstrap (default: 0)")
    parser.add_argument("--layer", type=int, default=None, help="read metrics of this layer from by_layer")
    parser.add_argument("--by_layer", action="store_true",
                        help="overlay the models' layer profiles (metric vs relative depth): STEM_by_layer.png/.csv")
    parser.add_argument("--duplicates", choices=DUPLICATES, default="keep-newest",
                        help="files of one model identity (model_args, dtype, checkpoint fingerprint): keep-newest "
                             "keeps the newest by the results' date and says which it dropped, error refuses, "
                             "keep-all keeps every file as its own row (default: keep-newest)")
    parser.add_argument("--output", default=None, metavar="STEM", help="stem of the files written "
                                                                       "(default: results/compare_<timestamp>)")


def run(args: argparse.Namespace) -> int:
    out = compare(args.results, x=args.x, fit=args.fit, metrics=args.metrics, plot=args.plot,
                  plot_metric=args.plot_metric, rank=args.rank, task=args.task, layer=args.layer,
                  output=args.output or _default_stem(), rank_by=args.rank_by,
                  higher_is_better=parse_directions(args.higher_is_better), by_layer=args.by_layer,
                  duplicates=args.duplicates, n_resamples=args.bootstrap, seed=args.seed)
    for note in out.get("notes", []):
        print(f"matrixeval: note: {note}", file=sys.stderr)
    print(out["markdown"])
    print("\nwritten: " + ", ".join(out["outputs"].values()), file=sys.stderr)
    return 0


def _default_stem() -> str:
    return str(Path("results") / f"compare_{datetime.now().strftime('%Y-%m-%dT%H-%M-%S')}")


def compare(
    results: Sequence[str | Path | dict],
    *,
    x: str = "n_params",
    fit: str | None = None,
    metrics: str | Sequence[str] | None = None,
    plot: str | Path | None = None,
    plot_metric: str | None = None,
    rank: str | None = None,
    task: str | None = None,
    layer: int | None = None,
    output: str | Path | None = None,
    rank_by: str = "mean",
    higher_is_better: dict[str, bool] | None = None,
    by_layer: bool = False,
    duplicates: str = "keep-newest",
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Tables, fits, plot, ranking and correlations from results files (paths or loaded dicts).

    Returns ``{"table", "fits", "ranking", "correlations", "markdown", "outputs"}``; ``fits`` / ``ranking`` /
    ``correlations`` are empty lists when not asked for or not applicable. Files are written only under
    `output` (a path stem) and `plot`. `rank_by` ("mean" or "mean_rank") and `higher_is_better`
    (``{metric: bool}``, overriding any direction) shape the ranking. Files of one model identity are handled
    by `duplicates` (:func:`matrixeval.report.compare.dedupe`); ``notes`` says which files were dropped, which
    caveats concern the ranking, and when its intervals are unavailable. With `rank` and `n_resamples` > 0 each
    ranking row gets ``rank_lo``/``rank_hi`` (95 % interval) and ``flip_next`` from
    :func:`matrixeval.report.compare.bootstrap_ranking` (``bootstrap`` in the result).
    """
    from ..report.compare import bootstrap_ranking, dedupe, ranking_notes, unique_names
    from ..report import compare_table, correlations, fit_scaling, fit_table, load_results, plot_scaling, rank_models
    from ..report.tables import to_markdown, write_csv
    from ..results import json_safe

    if fit not in (None, "powerlaw"):
        raise MatrixEvalError(f"unknown fit {fit!r}; the only fit is 'powerlaw'")
    if n_resamples < 0:
        raise MatrixEvalError(f"--bootstrap must be 0 or more (got {n_resamples})")
    if plot is not None:
        plot = _plot_path(plot, output, plot_metric or "plot")
        _check_plot_path(plot)
    loaded = [r if isinstance(r, dict) else None for r in results]
    paths = [r for r in results if not isinstance(r, dict)]
    files = iter(load_results(paths)) if paths else iter(())
    loaded = [r if r is not None else next(files) for r in loaded]
    if not loaded:
        raise MatrixEvalError("compare needs at least one results file")
    loaded, notes = dedupe(loaded, duplicates)
    loaded = unique_names(loaded)
    table = compare_table(loaded, x, layer)
    metric_names = _metrics(loaded, metrics, table)

    fits = fit_table(loaded, x, metric_names, layer) if fit else []
    ranking = rank_models(loaded, rank, task, layer, (higher_is_better or {}).get(rank), by=rank_by) if rank else []
    boot: dict[str, Any] = {}
    if ranking:
        direction = (higher_is_better or {}).get(rank)
        notes += ranking_notes(loaded, rank, task, layer)
        if n_resamples:
            boot = bootstrap_ranking(loaded, rank, task, layer, direction, by=rank_by, n_resamples=n_resamples,
                                     seed=seed)
        if "unavailable" in boot:
            notes.append(f"ranking by {rank}: {boot['unavailable']}")
        elif boot:
            flips = {f["better"]: f["flip_rate"] for f in boot["flips"]}
            for row in ranking:
                row["rank_lo"], row["rank_hi"] = boot["intervals"][row["model"]]
                row["flip_next"] = flips.get(row["model"], "")
    has_accuracy = [t for t in sorted({t for r in loaded for t in r["results"]})
                    if any("accuracy" in r["results"].get(t, {}) for r in loaded)]
    corr = [row for row in correlations(loaded, [m for m in metric_names if m not in ACCURACY], "accuracy", layer=layer)
            if row["task"] in has_accuracy] if has_accuracy else []

    shown = ["model", x, "task", "n_samples", *[m for m in _present(table, metric_names + list(ACCURACY))]]
    sections = [("Metrics", to_markdown(table, [c for c in dict.fromkeys(shown) if any(c in r for r in table)]))]
    if fits:
        sections.append((f"Power-law fits: metric = L0 + k·{x}^alpha", to_markdown(fits)))
    if ranking:
        how = {"mean": " (mean over the tasks every model has)", "mean_rank": " (mean rank over the tasks)"}
        sections.append((f"Ranking by {rank}" + (f" on {task}" if task else how[rank_by]),
                         to_markdown(ranking)))
        if boot and "unavailable" not in boot:
            docs = ", ".join(f"{t}: {n}" for t, n in boot["n_docs"].items())
            sections[-1] = (sections[-1][0], sections[-1][1] + (
                f"\n\nrank_lo–rank_hi: 95 % interval of the rank in a paired bootstrap over the documents all models "
                f"share ({docs}; {boot['n_resamples']} resamples, seed {boot['seed']}); flip_next: share of resamples "
                "that rank the next model ahead of this one"))
    if notes:
        sections.append(("Notes", "\n".join(f"- {n}" for n in notes)))
    if corr:
        sections.append(("Correlation with accuracy across models", to_markdown(corr)))
    profiles, profile_metrics = _layer_profiles(loaded, metric_names) if by_layer else ([], [])
    markdown = "\n\n".join(f"## {title}\n\n{body}" for title, body in sections)

    outputs: dict[str, str] = {}
    if plot is not None:
        metric = plot_metric or (metric_names[0] if metric_names else None)
        if metric is None:
            raise MatrixEvalError("no metric to plot; pass --plot_metric")
        curves = fit_scaling(loaded, metric, x, layer) if fit else None
        outputs["plot"] = str(plot_scaling(loaded, metric, x, curves, plot, layer=layer))
    if output is not None:
        stem = str(output)
        write_text_atomic(f"{stem}.md", markdown + "\n")
        outputs["markdown"] = f"{stem}.md"
        outputs["csv"] = str(write_csv(f"{stem}.csv", table))
        for name, rows in (("fit", fits), ("rank", ranking), ("correlations", corr), ("by_layer", profiles)):
            if rows:
                outputs[name] = str(write_csv(f"{stem}_{name}.csv", rows))
        if profiles:
            outputs["by_layer_plot"] = str(_plot_profiles(loaded, profiles, profile_metrics, f"{stem}_by_layer.png",
                                                        higher_is_better or {}))
        body = {"table": table, "fits": fits, "ranking": ranking, "correlations": corr,
                "config": {"x": x, "fit": fit, "metrics": metric_names, "rank": rank, "rank_by": rank_by,
                           "higher_is_better": higher_is_better or {}, "task": task, "layer": layer,
                           "files": [str(p) for p in paths], "duplicates": duplicates,
                           "bootstrap": n_resamples, "seed": seed}, "notes": notes, "bootstrap": boot}
        write_text_atomic(f"{stem}.json", json.dumps(json_safe(body), indent=2, allow_nan=False))
        outputs["json"] = f"{stem}.json"
    out = {"table": table, "fits": fits, "ranking": ranking, "correlations": corr, "markdown": markdown,
           "outputs": outputs, "notes": notes, "bootstrap": boot}
    if by_layer:
        out["by_layer"] = profiles
    return out


def _layer_profiles(results: Sequence[dict], metric_names: Sequence[str]) -> tuple[list[dict], list[str]]:
    """Layer-profile rows of the per-layer metrics among the requested (or declared) ones, and those metrics."""
    from ..report.compare import layer_profiles

    rows = layer_profiles(results)
    names = [m for m in metric_names if any(m in r for r in rows)]
    if not names:
        wanted = ", ".join(metric_names) or "none"
        raise MatrixEvalError(f"none of the metrics ({wanted}) has per-layer values in the files' by_layer; "
                              "--by_layer draws spectral metrics such as matrix_entropy")
    return layer_profiles(results, names), names


def _plot_profiles(results: Sequence[dict], rows: list[dict], metrics: Sequence[str], path: str,
                   overrides: dict[str, bool]) -> Path:
    from ..report.compare import metric_direction
    from ..report.plots import plot_layer_profiles

    directions = {}
    for m in metrics:
        try:
            directions[m] = overrides[m] if m in overrides else metric_direction(results, m)
        except MatrixEvalError:
            pass  # an undeclared direction only loses its arrow on the axis label
    return plot_layer_profiles(rows, path, metrics=metrics, higher_is_better=directions,
                               title="layer profiles (relative depth)")


def parse_directions(specs: Sequence[str] | None) -> dict[str, bool]:
    """``["nuclear_norm=false", "bleu=true,acc=true"]`` → ``{"nuclear_norm": False, "bleu": True, "acc": True}``."""
    out: dict[str, bool] = {}
    for spec in specs or ():
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, value = item.partition("=")
            flag = {"true": True, "false": False}.get(value.strip().lower())
            if not name.strip() or flag is None:
                raise MatrixEvalError(f"--higher_is_better expects METRIC=true|false, got {item!r}")
            out[name.strip()] = flag
    return out


def _plot_path(plot: str | Path, output: str | Path | None, metric: str) -> Path:
    """`plot` itself, or FOLDER/<output stem name>.png when it names a folder (existing, or ending in a separator)."""
    text = str(plot)
    if Path(text).is_dir() or text.endswith(("/", os.sep)):
        return Path(text) / f"{Path(str(output)).name if output is not None else f'compare_{metric}'}.png"
    return Path(text)


def _check_plot_path(plot: Path) -> None:
    """Before any work: the plot's format is one matplotlib writes, and its folder exists (or can be made) and is
    writable — not a file, not read-only."""
    if plot.suffix.lower() not in PLOT_SUFFIXES:
        raise MatrixEvalError(f"--plot {plot}: unknown image type {plot.suffix or '(none)'!r}; "
                              f"use one of: {', '.join(PLOT_SUFFIXES)}")
    folder = plot.parent
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                raise MatrixEvalError(f"--plot {plot}: {above} is a file, not a folder")
            if not os.access(above, os.W_OK | os.X_OK):
                raise MatrixEvalError(f"--plot {plot}: folder {above} is not writable")
            break
    if plot.is_dir():
        raise MatrixEvalError(f"--plot {plot} is a folder")


def _metrics(results: Sequence[dict], metrics: str | Sequence[str] | None, table: list[dict]) -> list[str]:
    """The requested metrics, or every declared (higher_is_better) metric that the table has, accuracy excluded."""
    if metrics:
        names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
        return [m for m in names if m]
    declared = dict.fromkeys(m for r in results for m in r.get("higher_is_better", {}))
    return [m for m in _present(table, list(declared)) if m not in ACCURACY]


def _present(table: list[dict], names: Sequence[str]) -> list[str]:
    return [n for n in dict.fromkeys(names) if any(n in row for row in table)]
